"""Numeric precision of training: float32, or Keras mixed precision where the hardware has it.

``mixed_float16`` pays off on a GPU only (a CPU emulates float16 and is slower); ``mixed_bfloat16``
on a GPU or on a CPU whose flags report ``avx512_bf16`` or ``amx_bf16`` (oneDNN runs bf16
convolutions and matmuls there; on other CPUs it converts and is slower). Variables and the loss
stay float32 in both.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Optional

import tensorflow as tf

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


class PrecisionError(ValueError):
    """A precision setting this machine cannot honour (named in the message)."""


def cpu_flags(path: str = "/proc/cpuinfo") -> frozenset:
    """The CPU feature flags of the first processor in ``path`` (empty if unreadable)."""
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_bf16(flags: Optional[frozenset] = None) -> bool:
    """True if the CPU reports ``avx512_bf16`` or ``amx_bf16``."""
    flags = cpu_flags() if flags is None else flags
    return any(f in flags for f in BF16_CPU_FLAGS)


def check_precision(precision: str, setting: str, on_gpu: Optional[bool] = None,
                    flags: Optional[frozenset] = None) -> str:
    """Returns ``precision`` if this machine can run it; raises PrecisionError otherwise.

    ``setting`` is the gin name shown in messages (e.g. 'train_predictor.precision').
    """
    if precision not in PRECISIONS:
        raise PrecisionError(f"{setting} = {precision!r}; choose one of {PRECISIONS}.")
    if on_gpu is None:
        on_gpu = bool(tf.config.list_logical_devices("GPU"))
    if precision == "mixed_float16" and not on_gpu:
        raise PrecisionError(
            f"{setting} = 'mixed_float16' needs a GPU (float16 is slower than float32 on a CPU) "
            f"and none is visible; pass --gin_param=\"{setting}='float32'\" (or "
            f"'mixed_bfloat16' on a CPU with {' or '.join(BF16_CPU_FLAGS)}).")
    if precision == "mixed_bfloat16" and not on_gpu and not cpu_has_bf16(flags):
        raise PrecisionError(
            f"{setting} = 'mixed_bfloat16' needs a GPU or a CPU with bfloat16 instructions "
            f"(flag {' or '.join(BF16_CPU_FLAGS)} in /proc/cpuinfo); this CPU has neither, and "
            f"would emulate bfloat16 slower than float32. Pass "
            f"--gin_param=\"{setting}='float32'\".")
    return precision


@contextlib.contextmanager
def keras_policy(precision: str) -> Iterator[str]:
    """Sets Keras' global dtype policy to ``precision`` (one of PRECISIONS) for the models built
    inside the block, and restores the previous policy after it. Layers keep the policy they were
    built with: a model built under 'mixed_bfloat16' computes in bfloat16 (variables float32)."""
    if precision not in PRECISIONS:
        raise PrecisionError(f"Unknown precision {precision!r}; choose one of {PRECISIONS}.")
    previous = tf.keras.mixed_precision.global_policy()
    tf.keras.mixed_precision.set_global_policy(precision)
    try:
        yield precision
    finally:
        tf.keras.mixed_precision.set_global_policy(previous)
