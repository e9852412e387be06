"""Count a model's floating-point operations and compare achieved FLOP/s with the CPU's peak.

:func:`graph_flops` traces a function at fixed input shapes and sums TensorFlow's registered
FLOP statistics over the graph (``tf.compat.v1.profiler``; a multiply-add counts 2, as in
convolution and matmul statistics). Python loops (the predictor's horizon) are unrolled in the
graph, so they are counted whole; ``tf.while_loop`` bodies would be counted once.

:func:`cpu_peak_gflops` is this CPU's fp32 peak from its core count, clock and vector flags
(/proc/cpuinfo): FLOP per cycle and core = FMA pipes × fp32 lanes × 2 (a multiply-add counts 2).
An Intel CPU with ``avx512f`` counts 64 (two 512-bit FMA pipes, 16 lanes: Xeon Scalable; a
one-pipe part would reach half); ``avx2`` + ``fma`` counts 32 (two 256-bit pipes: Haswell on,
and AMD Zen, whose AVX-512 on Zen 4 is double-pumped on the same pipes); ``avx`` without FMA 16;
otherwise 8 (SSE). This 2-core Xeon (avx512f) at 2.6 GHz: 333 GFLOP/s, where the earlier fixed
32 FLOP/cycle (the AVX2 machine's) gave 166.
"""
from __future__ import annotations

import os
import re
from typing import Any, Callable, Dict, Tuple

import tensorflow as tf

# (vector flag, FLOP per cycle and core), first match wins; avx512f counts 64 on Intel only.
FLOP_PER_CYCLE_RULES = (("avx512f", 64), ("fma", 32), ("avx", 16))
SSE_FLOP_PER_CYCLE = 8


def flop_per_cycle(flags: frozenset, vendor: str) -> Tuple[int, str]:
    """(fp32 FLOP per cycle and core, the flag that decided it) from CPU flags and vendor id."""
    for flag, value in FLOP_PER_CYCLE_RULES:
        if flag in flags and (flag != "avx512f" or vendor == "GenuineIntel"):
            if flag == "fma" and "avx2" not in flags:
                continue
            return value, flag
    return SSE_FLOP_PER_CYCLE, "sse"


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


def graph_peak_bytes(fn: Callable, *input_signature: tf.TensorSpec) -> int:
    """Peak bytes (int) of the tensors alive at once in one call of ``fn`` at the fully defined
    ``input_signature`` shapes, executing its ops one at a time in graph order and freeing each
    tensor after its last consumer (an estimate of the call's working memory; TensorFlow's
    executor may overlap independent ops, and its allocator rounds up)."""
    concrete = tf.function(fn).get_concrete_function(*input_signature)
    ops = concrete.graph.get_operations()
    last_use = {}
    for i, op in enumerate(ops):
        for t in op.inputs:
            last_use[t.name] = max(last_use.get(t.name, -1), i)
    frees = {}
    for name, i in last_use.items():
        frees.setdefault(i, []).append(name)
    size, live, peak = {}, 0, 0
    for i, op in enumerate(ops):
        for t in op.outputs:
            if t.shape.is_fully_defined() and t.dtype.is_numpy_compatible:
                size[t.name] = t.shape.num_elements() * t.dtype.size
                live += size[t.name]
                if t.name not in last_use:  # never consumed: freed at once, or a returned
                    last_use[t.name] = len(ops)  # value, which stays alive to the end
                    frees.setdefault(len(ops), []).append(t.name)
        peak = max(peak, live)
        for name in frees.get(i, ()):
            live -= size.pop(name, 0)
    return int(peak)


def cpu_model(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU's model name from ``cpuinfo`` (str; the platform's processor or machine name
    where the file is unreadable or has none)."""
    import platform  # pylint: disable=g-import-not-at-top

    try:
        with open(cpuinfo) as f:
            names = re.findall(r"^model name\s*:\s*(.+)$", f.read(), re.M)
        if names:
            return names[0].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_peak_gflops(cpuinfo: str = "/proc/cpuinfo") -> Dict[str, Any]:
    """dict: cores, ghz (the clock in ``cpuinfo``), flop_per_cycle and the flag that set it
    (:func:`flop_per_cycle`), peak_gflops (fp32; see the module docstring)."""
    cores = os.cpu_count() or 1
    ghz, flags, vendor = 2.45, frozenset(), ""
    try:
        with open(cpuinfo) as f:
            text = f.read()
    except OSError:
        text = ""
    match = re.search(r"^cpu MHz\s*:\s*([\d.]+)", text, re.M)
    if match:
        ghz = float(match.group(1)) / 1000.0
    match = re.search(r"^flags\s*:(.*)$", text, re.M)
    if match:
        flags = frozenset(match.group(1).split())
    match = re.search(r"^vendor_id\s*:\s*(\S+)", text, re.M)
    if match:
        vendor = match.group(1)
    per_cycle, flag = flop_per_cycle(flags, vendor)
    return {"cores": cores, "ghz": round(ghz, 3), "flop_per_cycle": per_cycle,
            "vector_flag": flag, "peak_gflops": round(cores * per_cycle * ghz, 1)}


def utilisation(flops: float, seconds: float) -> Dict[str, float]:
    """Achieved GFLOP/s of ``flops`` done in ``seconds`` and its share of the CPU's peak."""
    achieved = flops / max(seconds, 1e-12) / 1e9
    peak = cpu_peak_gflops()["peak_gflops"]
    return {"achieved_gflops": round(achieved, 2), "peak_gflops": peak,
            "fraction_of_peak": round(achieved / peak, 3)}
