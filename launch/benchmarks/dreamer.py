"""``python -m launch.benchmark dreamer``: Dreamer's world-model and behaviour train steps/s.

Random uint8 windows (no dataset needed) at the sizes of ``gin/presets/cpu/dreamer.gin``
(``dreamer_settings`` and ``train_dreamer``'s batch size and sequence length, read from the
file): ``world_model_steps_per_s`` times :meth:`DreamerTrainer.world_model_step` (encoder, RSSM
over the window, decoder, reward predictor, one Adam update), ``behaviour_steps_per_s`` times
:meth:`DreamerTrainer.behaviour_step` (imagination from all B·L posterior states, λ-returns,
actor and value updates), ``train_steps_per_s`` both (one training iteration), and the minutes
``train_dreamer.total_steps`` take at that rate. Parses the preset into gin's global config
(cleared before and after).
"""
import os
import time

import gin
import numpy as np
import tensorflow as tf

from launch.benchmarks.distance import calls_per_s
from mbold_tf.models import dreamer as dreamer_model
from mbold_tf.training import dreamer as dreamer_training

PRESET = os.path.join(os.path.dirname(__file__), "..", "..", "gin", "presets", "cpu",
                      "dreamer.gin")


def _preset():
    gin.clear_config()
    try:
        gin.parse_config_file(PRESET)
        settings = dreamer_model.dreamer_settings()
        train = {k: gin.query_parameter(f"train_dreamer.{k}")
                 for k in ("batch_size", "sequence_length", "total_steps")}
    finally:
        gin.clear_config()
    return settings, train


def _batch(rng, b, length, action_dim=4):
    images = rng.integers(0, 256, (b, length, 64, 64, 3), dtype=np.uint8)
    goal = images[np.arange(b), rng.integers(0, length, b)]
    return {"images": tf.constant(images),
            "actions": tf.constant(rng.uniform(-1, 1, (b, length - 1, action_dim))
                                   .astype(np.float32)),
            "goal": tf.constant(goal),
            "reward": dreamer_model.reward_targets("pixel_mse", images, goal)}


def run(quick: bool = False) -> dict:
    """Steps/s of the world-model, behaviour and whole training steps at the CPU preset."""
    settings, train = _preset()
    b, length = int(train["batch_size"]), int(train["sequence_length"])
    rng = np.random.default_rng(0)
    tf.random.set_seed(0)
    trainer = dreamer_training.DreamerTrainer(dreamer_model.DreamerModel(settings))
    batch = _batch(rng, b, length)
    world = tf.function(trainer.world_model_step)
    behaviour = tf.function(trainer.behaviour_step)
    whole = tf.function(trainer.train_step)
    t0 = time.perf_counter()
    _, post = world(batch)
    trace_s = time.perf_counter() - t0
    n = 3 if quick else 20
    world_rate = calls_per_s(lambda: world(batch)[0]["model_loss"].numpy(), n)
    behaviour_rate = calls_per_s(lambda: behaviour(post, batch["goal"])["actor_loss"].numpy(), n)
    train_rate = calls_per_s(lambda: whole(batch)["model_loss"].numpy(), n)
    steps = int(train["total_steps"])
    params = {k: int(sum(np.prod(v.shape) for v in getattr(trainer.model, f"{k}_variables")))
              for k in ("world_model", "actor", "value")}
    return {"device": "GPU" if tf.config.list_physical_devices("GPU") else "CPU",
            "batch_size": b, "sequence_length": length, "horizon": settings["horizon"],
            "parameters": params, "world_model_trace_s": round(trace_s, 1),
            "world_model_steps_per_s": round(world_rate, 3),
            "behaviour_steps_per_s": round(behaviour_rate, 3),
            "train_steps_per_s": round(train_rate, 3),
            "cpu_preset_total_steps": steps,
            "cpu_preset_train_minutes_estimate": round(steps / max(train_rate, 1e-9) / 60, 1)}
