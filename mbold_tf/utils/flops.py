"""Count a model's floating-point operations and compare achieved FLOP/s with the CPU's peak.

:func:`graph_flops` traces a function at fixed input shapes and sums TensorFlow's registered
FLOP statistics over the graph (``tf.compat.v1.profiler``; a multiply-add counts 2, as in
convolution and matmul statistics). Python loops (the predictor's horizon) are unrolled in the
graph, so they are counted whole; ``tf.while_loop`` bodies would be counted once.

:func:`cpu_peak_gflops` is this CPU's fp32 peak from its core count and clock: 32 FLOP per cycle
and core (two 256-bit FMA pipes, 8 fp32 lanes, 2 FLOP per FMA: Zen 3 with AVX2, and Zen 4, whose
AVX-512 is double-pumped on the same pipes). About 150 GFLOP/s for 2 cores at 2.45 GHz.
"""
from __future__ import annotations

import os
import re
from typing import Callable, Dict

import tensorflow as tf

FLOP_PER_CYCLE_PER_CORE = 32


def graph_flops(fn: Callable, *input_signature: tf.TensorSpec) -> int:
    """FLOPs (int) of one call of ``fn`` at the fully defined ``input_signature`` shapes."""
    for spec in input_signature:
        if not spec.shape.is_fully_defined():
            raise ValueError(f"graph_flops needs fully defined shapes; got {spec}.")
    concrete = tf.function(fn).get_concrete_function(*input_signature)
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    info = tf.compat.v1.profiler.profile(graph=concrete.graph, options=options)
    return int(info.total_float_ops)


def cpu_peak_gflops() -> Dict[str, float]:
    """dict: cores, ghz (from /proc/cpuinfo's clock), peak_gflops (fp32, see module docstring)."""
    cores = os.cpu_count() or 1
    ghz = 2.45
    try:
        with open("/proc/cpuinfo") as f:
            match = re.search(r"^cpu MHz\s*:\s*([\d.]+)", f.read(), re.M)
        if match:
            ghz = float(match.group(1)) / 1000.0
    except OSError:
        pass
    return {"cores": cores, "ghz": round(ghz, 3),
            "peak_gflops": round(cores * FLOP_PER_CYCLE_PER_CORE * ghz, 1)}


def utilisation(flops: float, seconds: float) -> Dict[str, float]:
    """Achieved GFLOP/s of ``flops`` done in ``seconds`` and its share of the CPU's peak."""
    achieved = flops / max(seconds, 1e-12) / 1e9
    peak = cpu_peak_gflops()["peak_gflops"]
    return {"achieved_gflops": round(achieved, 2), "peak_gflops": peak,
            "fraction_of_peak": round(achieved / peak, 3)}
