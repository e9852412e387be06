"""``python -m launch.benchmark device``: the GPU check that fits a short loan (≤ 8 minutes).

On one accelerator (or the CPU, where it says so), one JSON object with:

* ``replan``: one paper-config CEM replan (N = 200, I = 3, h = 13, the width-32 predictor and the
  paper's critics) through the compiled ``TFPolicy.action`` and through the exported
  ``PolicySaver`` SavedModel (the robot-side runner), median of 3; the goal is ≤ 25 ms on one
  H100/H200 (the paper: about 2 s per action);
* ``predictor_train``: paper-scale predictor training steps/s (batch 16) in float32, with mixed
  precision (``mixed_float16``, GPU only) and with XLA (``jit_compile``), each with its counted
  FLOP/s against the device's peak;
* ``distance_train``: CQL-TD3 training steps/s at batch 64 (paper networks);
* ``peak_memory_mib``: the accelerator's peak memory over the run (``tf.config.experimental.
  get_memory_info``), None on the CPU.

``--quick`` uses the tiny preset's sizes (predictor, planner, distance networks) and 1 repeat: a
smoke check that every part of this script runs, on machines without an accelerator; not for
quoting. Each part stops early if the 8-minute budget is spent
and reports what it skipped.
"""
import os
import time

import gin
import numpy as np
import tensorflow as tf

from mbold_tf.models import video_predictor as vp
from mbold_tf.utils import flops
from launch.benchmarks import distance as distance_benchmark
from launch.benchmarks import planner as planner_benchmark
from launch.benchmarks import predictor as predictor_benchmark

BUDGET_S = 8 * 60
# fp32 (non-tensor-core) and dense fp16/bf16 tensor-core peaks in TFLOP/s, SXM parts (vendor
# datasheets); other devices report no fraction of peak.
GPU_PEAKS_TFLOPS = {"H100": (67.0, 989.0), "H200": (67.0, 989.0), "A100": (19.5, 312.0)}


def _device() -> dict:
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return {"kind": "CPU", "name": "cpu", **flops.cpu_peak_gflops()}
    details = tf.config.experimental.get_device_details(gpus[0])
    name = details.get("device_name", "gpu")
    peaks = next((v for k, v in GPU_PEAKS_TFLOPS.items() if k in name), None)
    return {"kind": "GPU", "name": name, "count": len(gpus),
            "peak_gflops_fp32": peaks[0] * 1e3 if peaks else None,
            "peak_gflops_fp16_tensor": peaks[1] * 1e3 if peaks else None}


def _fraction(flop_count: float, seconds: float, peak_gflops) -> dict:
    achieved = flop_count / max(seconds, 1e-12) / 1e9
    return {"achieved_gflops": round(achieved, 1),
            "fraction_of_peak": round(achieved / peak_gflops, 4) if peak_gflops else None}


def run(quick: bool = False) -> dict:
    t_start = time.time()
    device = _device()
    out = {"device": device, "quick": quick, "budget_s": BUDGET_S, "skipped": []}

    def left() -> float:
        return BUDGET_S - (time.time() - t_start)

    # 1. One paper-config replan, in process and exported.
    name = "tiny" if quick else "paper"
    out["replan"] = {"config": name, **planner_benchmark._one_config(name, 1 if quick else 3)}  # pylint: disable=protected-access
    out["replan"]["target_s_on_h100_h200"] = 0.025

    # 2. Predictor training at paper scale: float32, mixed precision, XLA.
    path = (os.path.join(predictor_benchmark.ROOT, "presets", "tiny", "predictor.gin") if quick
            else predictor_benchmark.SCALES["paper"])
    settings, batch = predictor_benchmark._settings(path)  # pylint: disable=protected-access
    steps = 2 if quick or device["kind"] == "CPU" else 20
    out["predictor_train"] = {}
    # Training ≈ 3× the forward FLOPs (forward, and two for the backward pass).
    train_flops = int(3 * predictor_benchmark.frame_flops(
        vp.VideoPredictor(**settings).build_variables()) * batch * settings["horizon"])
    for label, mixed, jit in (("float32", False, False), ("mixed_precision", True, False),
                              ("xla", False, True)):
        if left() < 60:
            out["skipped"].append(f"predictor_train.{label}")
            continue
        if mixed and device["kind"] == "CPU":
            out["predictor_train"][label] = "GPU only (mixed_float16 is not used on the CPU)"
            continue
        try:
            r = predictor_benchmark.train_rate(settings, batch, steps,
                                               "mixed_float16" if mixed else "float32", jit)
        except (tf.errors.OpError, ValueError) as e:  # e.g. an op XLA cannot compile
            out["predictor_train"][label] = f"failed: {type(e).__name__}: {str(e)[:200]}"
            continue
        r["train_flops_per_step"] = train_flops
        peak = (device.get("peak_gflops_fp16_tensor") if mixed else
                device.get("peak_gflops_fp32", device.get("peak_gflops")))
        r.update(_fraction(r["train_flops_per_step"], r["seconds_per_step"], peak))
        out["predictor_train"][label] = r

    # 3. Distance training at batch 64 (paper networks; tiny ones with --quick).
    if left() > 45:
        from mbold_tf.models import distance_networks as dn  # pylint: disable=g-import-not-at-top
        rng = np.random.default_rng(0)
        gin.clear_config()  # the paper's networks (network_settings' defaults), or the tiny ones
        if quick:
            gin.parse_config_file(os.path.join(predictor_benchmark.ROOT, "presets", "tiny",
                                               "distance.gin"))
        networks = dn.network_settings()
        gin.clear_config()
        out["distance_train"] = {"networks": "tiny" if quick else "paper",
                                 **distance_benchmark._one(networks, True, rng)}  # pylint: disable=protected-access
    else:
        out["skipped"].append("distance_train")

    if device["kind"] == "GPU":
        info = tf.config.experimental.get_memory_info("GPU:0")
        out["peak_memory_mib"] = round(info["peak"] / 2 ** 20, 1)
    else:
        out["peak_memory_mib"] = None
    out["wall_s"] = round(time.time() - t_start, 1)
    return out
