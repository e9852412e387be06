"""``python -m launch.benchmark data``: dataset build rate, pipeline batches/s, ScaNN figures.

Builds ``push1_small`` (``push1_tiny`` with --quick) into a temporary TFDS dir, then measures the
predictor and distance pipelines at batch 64, the hard-negative neighbour table against ScaNN
search inside the pipeline, and ScaNN recall@10 / speed against exact search on arm-joint
vectors (the real ones tiled with noise up to the paper's 200k).
"""
import tempfile
import time

import numpy as np
import tensorflow as tf

from mbold_tf.data import build as build_lib
from mbold_tf.data import neighbors
from mbold_tf.data import pipelines
from mbold_tf.data import rlds


def _batches_per_s(ds, n: int) -> float:
    it = iter(ds)
    next(it)  # warm-up (tracing, first prefetch)
    t0 = time.perf_counter()
    for _ in range(n):
        next(it)
    return n / (time.perf_counter() - t0)


def _in_pipeline_scann(arrays, batch_size=64, k=10, seed=0):
    """Distance batches whose negatives come from a ScaNN TF-op search on every batch."""
    searcher, indexed = neighbors.in_pipeline_searcher(arrays, k=k + 31)
    c_images = tf.constant(arrays.images)
    c_proprio = tf.constant(arrays.proprio)
    c_episode = tf.constant(arrays.step_episode(), tf.int64)
    c_indexed = tf.constant(indexed, tf.int64)
    anchors = tf.constant(np.flatnonzero(arrays.step_time() < 30), tf.int64)

    def make_batch(i):
        s = tf.stack([tf.constant(seed, tf.int64), i])
        idx = tf.gather(anchors, tf.random.stateless_uniform(
            [batch_size], s, 0, tf.shape(anchors, out_type=tf.int64)[0], dtype=tf.int64))
        hits, _ = searcher.search_batched(tf.gather(c_proprio, idx))
        hits = tf.gather(c_indexed, tf.cast(hits, tf.int64))
        other = tf.not_equal(tf.gather(c_episode, hits), tf.gather(c_episode, idx)[:, None])
        first_other = tf.argmax(tf.cast(other, tf.int32), axis=1)
        goal = tf.gather(hits, first_other, batch_dims=1)
        return {"observation": tf.gather(c_images, idx), "goal": tf.gather(c_images, goal)}

    return tf.data.Dataset.counter().map(make_batch).prefetch(tf.data.AUTOTUNE)


def run(quick: bool = False) -> dict:
    """Returns build episodes/s, batches/s per pipeline (batch 64) and ScaNN figures."""
    out = {}
    with tempfile.TemporaryDirectory() as data_dir:
        config = "push1_tiny" if quick else "push1_small"
        stats = build_lib.build(config, data_dir)
        out["build"] = {k: stats[k] for k in ("config", "episodes", "build_seconds",
                                              "episodes_per_s")}
        out["build"]["moved_share_7.5cm"] = stats.get("validation_moved_share_7.5cm")
        out["paper_build_estimate_h"] = round(10000 / stats["episodes_per_s"] / 3600, 2)
        arrays = rlds.load_episodes(f"mbold_tabletop/{config}", "train", data_dir=data_dir)
    n = 20 if quick else 200
    table, table_stats = neighbors.neighbor_table(arrays, k=10, return_stats=True)
    out["neighbor_table"] = {k: round(v, 3) if isinstance(v, float) else v
                             for k, v in table_stats.items()}
    out["predictor_batches_per_s"] = round(_batches_per_s(
        pipelines.predictor_dataset(arrays, batch_size=64, context=1, horizon=13), n), 1)
    out["distance_batches_per_s_table"] = round(_batches_per_s(
        pipelines.distance_dataset(arrays, neighbor_table=table, batch_size=64), n), 1)
    out["distance_batches_per_s_scann_in_pipeline"] = round(_batches_per_s(
        _in_pipeline_scann(arrays), n), 1)
    out["pairs_batches_per_s"] = round(_batches_per_s(
        pipelines.pairs_dataset(arrays, batch_size=64), n), 1)
    # ScaNN vs exact on arm-joint vectors, tiled with small noise to the paper's 200k.
    size = 20_000 if quick else neighbors.MAX_INDEXED
    rng = np.random.default_rng(0)
    base = arrays.proprio[rng.integers(arrays.num_steps, size=size)]
    vectors = base + rng.normal(scale=0.05, size=base.shape).astype(np.float32)
    recall, s = neighbors.recall_at_k(vectors, vectors[rng.integers(size, size=2000)], k=10)
    out["scann"] = {"vectors": size, "dims": int(vectors.shape[1]), "recall_at_10": round(recall, 4),
                    "build_s": round(s["build_s"], 3), "query_s_2000": round(s["scann_query_s"], 4),
                    "exact_query_s_2000": round(s["exact_query_s"], 4),
                    "speedup_vs_exact": round(s["speedup"], 1)}
    return out
