"""``python -m launch.benchmark sorb``: SoRB train steps/s and graph-building pairs/s.

Random uint8 images (no dataset needed). Train steps: one compiled SoRB update
(:func:`mbold_tf.training.sorb.build_train_step`: distributional critic, the actor every 2nd
step, Polyak targets) at batch 64, with the CPU preset's networks (gin/presets/cpu/sorb.gin: MLPs
of 2 layers) and, unless ``quick``, the paper's (App. A.1: 6 / 10 layers). Graph pairs/s:
:meth:`SorbModel.pairwise_distances` (actor + critic per pair, eval mode) on N × N random
images; from it, the time to build the preset's and the paper's graphs (N² pairs) and one
policy step's distance calls (2N + 1 pairs).
"""
import time

import numpy as np
import tensorflow as tf

from launch.benchmarks.distance import random_transitions
from mbold_tf.models import sorb
from mbold_tf.training import sorb as sorb_training

CPU_PRESET = dict(critic_fc_layers=2, actor_fc_layers=2,  # gin/presets/cpu/sorb.gin
                  critic_fc_norm="layer")
CPU_GRAPH_SIZE = 1000                                      # gin/presets/cpu/sorb.gin
PAPER_GRAPH_SIZE = 2000                                    # App. B.4


def _one(networks, quick, rng):
    model = sorb.SorbModel(sorb.sorb_settings(**networks))
    batch = random_transitions(rng, 64)
    step = tf.Variable(0, dtype=tf.int64)
    train = sorb_training.build_train_step(model, lambda: batch, step,
                                           tf.keras.optimizers.Adam(3e-4),
                                           tf.keras.optimizers.Adam(3e-4))

    def one_step():
        out = train()
        step.assign_add(1)
        return out["critic_loss"].numpy()

    t0 = time.perf_counter()
    one_step()
    trace_s = time.perf_counter() - t0
    one_step()
    n = 6 if quick else 40
    t0 = time.perf_counter()
    for _ in range(n):
        one_step()
    steps = n / (time.perf_counter() - t0)
    nodes = 32 if quick else 128
    images = rng.integers(0, 256, (nodes, 64, 64, 3), dtype=np.uint8)
    model.pairwise_distances(images, images)  # trace, warm up
    best = float("inf")
    for _ in range(2):
        t0 = time.perf_counter()
        model.pairwise_distances(images, images)
        best = min(best, time.perf_counter() - t0)
    pairs = nodes * nodes / best
    return {"train_steps_per_s_batch64": round(steps, 2), "train_trace_s": round(trace_s, 1),
            "graph_pairs_per_s": round(pairs, 1),
            f"graph_build_min_{CPU_GRAPH_SIZE}_nodes": round(CPU_GRAPH_SIZE ** 2 / pairs / 60, 1),
            f"graph_build_min_{PAPER_GRAPH_SIZE}_nodes": round(PAPER_GRAPH_SIZE ** 2 / pairs / 60,
                                                               1),
            f"policy_step_s_{CPU_GRAPH_SIZE}_nodes": round((2 * CPU_GRAPH_SIZE + 1) / pairs, 2),
            f"policy_step_s_{PAPER_GRAPH_SIZE}_nodes": round((2 * PAPER_GRAPH_SIZE + 1) / pairs,
                                                             2)}


def run(quick: bool = False) -> dict:
    rng = np.random.default_rng(0)
    out = {"device": "GPU" if tf.config.list_physical_devices("GPU") else "CPU"}
    out["cpu_preset_networks"] = _one(CPU_PRESET, quick, rng)
    steps = out["cpu_preset_networks"]["train_steps_per_s_batch64"]
    out["cpu_preset_10000_steps_min"] = round(10000 / max(steps, 1e-9) / 60, 1)
    if not quick:
        out["paper_networks"] = _one({}, quick, rng)
        paper = out["paper_networks"]["train_steps_per_s_batch64"]
        out["paper_93750_steps_estimate_h"] = round(93750 / max(paper, 1e-9) / 3600, 1)
    return out
