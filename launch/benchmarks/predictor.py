"""``python -m launch.benchmark predictor``: video-predictor training and prediction speed.

For the CPU preset (gin/presets/cpu/predictor.gin) and the paper scale (gin/paper/predictor.gin):
training steps/s at the preset's batch size (random frames and actions, the real train step with
scheduled sampling and Adam) in float32 and, where the CPU has bf16 instructions (or on a GPU),
mixed_bfloat16 with their ratio, for the CPU preset also at batch 4–32 (frames/s and the share of
peak), and closed-loop prediction throughput in predicted frames/s at
B = 200, h = 13 (the planner's batch: 200 CEM samples). Also the XLA (``jit_compile=True``) vs
graph ratio of prediction, measured in the same run, and the trace/compile time of each.
Prediction reports its counted forward FLOPs per frame and the achieved GFLOP/s as a fraction
of this CPU's fp32 peak (:mod:`mbold_tf.utils.flops`).
"""
import os
import tempfile
import time

import gin
import numpy as np
import tensorflow as tf

from mbold_tf.models import video_predictor as vp
from mbold_tf.training import predictor as tp
from mbold_tf.utils import flops
from mbold_tf.utils import precision

ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "gin")
SCALES = {"cpu": os.path.join(ROOT, "presets", "cpu", "predictor.gin"),
          "paper": os.path.join(ROOT, "paper", "predictor.gin")}


def _settings(path: str) -> dict:
    gin.clear_config()
    gin.parse_config_file(path)
    try:
        settings = vp.VideoPredictor().settings()
        batch = gin.query_parameter("train_predictor.batch_size")
    finally:
        gin.clear_config()
    return settings, batch


def _predict_rate(settings, batch: int, repeats: int) -> dict:
    model = vp.VideoPredictor(**settings).build_variables()
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (batch, model.context, 64, 64, 3), dtype=np.uint8)
    actions = rng.uniform(-1, 1, (batch, model.horizon, model.action_dim)).astype(np.float32)
    t0 = time.perf_counter()
    model.predict(frames, actions).numpy()
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(repeats):
        model.predict(frames, actions).numpy()
    seconds = (time.perf_counter() - t0) / repeats
    per_frame = frame_flops(model)
    return {"frames_per_s": round(batch * model.horizon / seconds, 1),
            "seconds_per_call": round(seconds, 3), "first_call_s": round(first, 1),
            "mflop_per_frame": round(per_frame / 1e6, 2),
            **flops.utilisation(per_frame * batch * model.horizon, seconds)}


def frame_flops(model) -> float:
    """Forward FLOPs per predicted frame of ``model`` (counted on a batch-2 graph)."""
    n = flops.graph_flops(model._predict_graph,  # pylint: disable=protected-access
                          tf.TensorSpec([2, model.context, 64, 64, 3], tf.uint8),
                          tf.TensorSpec([2, model.horizon, model.action_dim], tf.float32))
    return n / (2 * model.horizon)


def train_rate(settings, batch: int, steps: int, precision: str = "float32",
               jit: bool = False) -> dict:
    """Steps/s of the real train step on random data (no input pipeline); ``precision``:
    'float32', 'mixed_float16' (GPU only) or 'mixed_bfloat16' (a GPU or a bf16 CPU), ``jit``:
    the step compiled with XLA."""
    with tempfile.TemporaryDirectory() as root:
        gin.clear_config()
        for k, v in settings.items():
            gin.bind_parameter(f"VideoPredictor.{k}", v)
        try:
            trainer = tp.PredictorTrainer(root, "unused", None, steps, batch, 1e-3, "l2", 0,
                                          10 ** 9, 10 ** 9, 10 ** 9, precision)
        finally:
            gin.clear_config()
        m = trainer.model
        rng = np.random.default_rng(0)
        data = {"images": tf.constant(rng.integers(
                    0, 256, (batch, m.context + m.horizon, 64, 64, 3), dtype=np.uint8)),
                "actions": tf.constant(rng.uniform(-1, 1, (batch, m.horizon, m.action_dim)),
                                       tf.float32)}
        step_fn = tf.function(lambda b: trainer._replica_step(b, trainer.step),  # pylint: disable=protected-access
                              jit_compile=jit)
        t0 = time.perf_counter()
        step_fn(data)["loss"].numpy()
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(steps):
            step_fn(data)["loss"].numpy()
        seconds = time.perf_counter() - t0
    return {"batch": batch, "steps_per_s": round(steps / seconds, 3),
            "first_step_s": round(first, 1), "steps_timed": steps,
            "seconds_per_step": round(seconds / steps, 4), "precision": trainer.precision,
            "xla": jit}


def run(quick: bool = False) -> dict:
    out = {"device": "GPU" if tf.config.list_logical_devices("GPU") else "CPU",
           "cpu_threads": os.cpu_count()}
    batch = 20 if quick else 200
    for scale, path in SCALES.items():
        settings, train_batch = _settings(path)
        entry = {"settings": {k: settings[k] for k in (
            "width", "norm", "transform", "num_transformed", "full_resolution_heads",
            "horizon", "context")}}
        steps = 2 if (quick or scale == "paper") else 10
        entry["train"] = train_rate(settings, train_batch, steps)
        if precision.cpu_has_bf16() or out["device"] == "GPU":
            # bfloat16 training beside float32, same run and batch (train_predictor.precision).
            bf16 = train_rate(settings, train_batch, steps, "mixed_bfloat16")
            entry["train_bf16"] = bf16
            entry["bf16_over_float32_train"] = round(
                bf16["steps_per_s"] / entry["train"]["steps_per_s"], 2)
        else:
            entry["train_bf16"] = "refused: the CPU has no avx512_bf16/amx_bf16"
        if scale == "cpu":
            # What a training minute buys at each batch size: frames/s and the share of peak
            # (training FLOPs ≈ 3 × the forward pass's).
            per_frame = frame_flops(vp.VideoPredictor(**settings).build_variables())
            sweep = {}
            for b in ((4, 8) if quick else (4, 8, 16, 32)):
                r = train_rate(settings, b, steps)
                frames_per_s = r["steps_per_s"] * b * settings["horizon"]
                sweep[str(b)] = {"steps_per_s": r["steps_per_s"],
                                 "frames_per_s": round(frames_per_s, 1),
                                 **flops.utilisation(3 * per_frame * frames_per_s, 1.0)}
            entry["train_batch_sweep"] = sweep
        entry["predict"] = {"batch": batch, "horizon": settings["horizon"]}
        entry["predict"]["graph"] = _predict_rate(dict(settings, jit_compile=False), batch,
                                                  1 if scale == "paper" else 3)
        if scale == "cpu":
            entry["predict"]["xla"] = _predict_rate(dict(settings, jit_compile=True), batch, 3)
            entry["predict"]["xla_over_graph"] = round(
                entry["predict"]["xla"]["frames_per_s"] /
                entry["predict"]["graph"]["frames_per_s"], 2)
            # Layer norm's cost, same run (the paper scale uses it, the CPU preset does not).
            entry["predict"]["with_layer_norm"] = _predict_rate(
                dict(settings, norm="layer"), batch, 3)
            entry["predict"]["layer_norm_over_none"] = round(
                entry["predict"]["with_layer_norm"]["frames_per_s"] /
                entry["predict"]["graph"]["frames_per_s"], 2)
        out[scale] = entry
    out["cpu_over_paper_predict"] = round(out["cpu"]["predict"]["graph"]["frames_per_s"] /
                                          out["paper"]["predict"]["graph"]["frames_per_s"], 1)
    return out
