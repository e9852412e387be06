"""Hard-negative goals: ScaNN nearest neighbours over arm joint angles (§4, App. A.1).

The paper fits a k-NN graph over 200,000 observations keyed on arm-joint ℓ2 distance and draws
"negative" goals from *other* trajectories whose arm is where the state's arm is. We build the
index with ScaNN (k-means tree partitioning, exact scoring in the searched leaves) and precompute, for
every step of the dataset, its ``k`` nearest steps from other episodes: the ``tf.data`` pipeline
then only gathers from that table. ``launch.benchmark data`` measures this against running
ScaNN's TF-op searcher inside the pipeline on every batch; the table is the faster of the two
(docs/measurements.md, "Data"), and both are built from the same ScaNN index.
"""
from __future__ import annotations

import time
from typing import Dict, Optional, Tuple

from absl import logging
import gin
import numpy as np
import scann

from mbold_tf.data.rlds import EpisodeArrays

MAX_INDEXED = 200_000  # observations in the paper's k-NN graph


def _configure(builder, n: int, k_search: int):
    """k-means tree partitioning + exact (brute-force) scoring inside the searched leaves.

    Arm joints are ~7-D, where asymmetric hashing loses too much (recall@10 ≈ 0.66–0.88 at
    200k in our measurements) while exact scoring of ~10% of the leaves keeps recall ≈ 1.0 and
    is still faster than ScaNN's full brute force. Below a few thousand vectors: brute force.

    ScaNN logs "Could not normalize centroid due to zero norm or empty or zero-weight partition"
    on random-policy data: every episode starts from the same arm pose, so thousands of
    identical vectors leave some k-means partitions empty. Empty leaves are never searched;
    recall is unaffected (the ``data`` benchmark's recall@10 against exact search is measured on
    such data).
    """
    del k_search
    if n < 4096:
        return builder.score_brute_force()
    leaves = int(min(2000, max(16, np.sqrt(n))))
    return (builder.tree(num_leaves=leaves, num_leaves_to_search=max(8, leaves // 10),
                         training_sample_size=min(n, 100_000))
            .score_brute_force())


def build_searcher(vectors: np.ndarray, k: int, tf_ops: bool = False):
    """Builds a ScaNN searcher over ``vectors`` float32 [n, d] returning ``k`` neighbours.

    ``tf_ops=True`` gives ``scann.scann_ops`` (usable inside ``tf.data``/``tf.function``),
    otherwise the pybind searcher. Squared-ℓ2 distance.
    """
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n = vectors.shape[0]
    if tf_ops:
        builder = scann.scann_ops.builder(vectors, k, "squared_l2")
    else:
        builder = scann.scann_ops_pybind.builder(vectors, k, "squared_l2")
    return _configure(builder, n, k).build()


@gin.configurable(denylist=["arrays"])
def neighbor_table(arrays: EpisodeArrays, k: int = 10, max_indexed: int = MAX_INDEXED,
                   seed: int = 0, return_stats: bool = False):
    """For every step, ``k`` nearest steps (by ``proprio`` ℓ2) from *other* episodes.

    Args:
      arrays: the dataset.
      k: neighbours kept per step.
      max_indexed: the index holds at most this many steps (a seeded random subset).
      seed: subset seed.
      return_stats: also return a dict with build/search seconds.
    Returns:
      int64 [M, k] global step indices (and stats if requested). Rows with fewer than ``k``
      other-episode hits among the searched candidates repeat their best hit.
    """
    m = arrays.num_steps
    rng = np.random.default_rng(seed)
    indexed = np.arange(m) if m <= max_indexed else np.sort(
        rng.choice(m, size=max_indexed, replace=False))
    episode = arrays.step_episode()
    longest = int(arrays.episode_length.max())
    # Enough candidates that k survive after dropping the query's own episode.
    k_search = min(len(indexed), k + longest)
    t0 = time.perf_counter()
    searcher = build_searcher(arrays.proprio[indexed], k_search)
    t_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    hits, _ = searcher.search_batched_parallel(arrays.proprio, final_num_neighbors=k_search)
    t_search = time.perf_counter() - t0
    hits = indexed[np.asarray(hits, np.int64)]
    other = episode[hits] != episode[:, None]
    count = other.sum(axis=1)
    if np.any(count == 0):
        raise ValueError("Some steps have no neighbour from another episode among the searched "
                         "candidates: the dataset needs at least two episodes.")
    # Other-episode hits first (stable: nearest first), then wrap around when fewer than k.
    order = np.argsort(~other, axis=1, kind="stable")
    ranked = np.take_along_axis(hits, order, axis=1)
    cols = np.arange(k)[None, :] % count[:, None]
    table = np.take_along_axis(ranked, cols, axis=1).astype(np.int64)
    logging.info("Neighbour table over %d indexed steps: build %.2fs, search %.2fs", len(indexed),
                 t_build, t_search)
    if return_stats:
        return table, {"build_s": t_build, "search_s": t_search, "indexed": int(len(indexed))}
    return table


def recall_at_k(vectors: np.ndarray, queries: np.ndarray, k: int = 10) -> Tuple[float, Dict]:
    """ScaNN recall@k against exact brute force, and the speed of each, on the same vectors.

    Returns (recall, stats) with stats: build_s, scann_query_s, exact_query_s, speedup.
    """
    t0 = time.perf_counter()
    searcher = build_searcher(vectors, k)
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    approx, _ = searcher.search_batched(queries)
    scann_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    exact = exact_knn(vectors, queries, k)
    exact_s = time.perf_counter() - t0
    approx = np.asarray(approx)
    recall = float(np.mean([len(set(a) & set(e)) / k for a, e in zip(approx, exact)]))
    return recall, {"build_s": build_s, "scann_query_s": scann_s, "exact_query_s": exact_s,
                    "speedup": exact_s / max(scann_s, 1e-9)}


def exact_knn(vectors: np.ndarray, queries: np.ndarray, k: int,
              chunk: int = 512) -> np.ndarray:
    """int64 [q, k]: exact squared-ℓ2 nearest neighbours (numpy brute force, chunked)."""
    vectors = np.asarray(vectors, np.float32)
    v2 = (vectors ** 2).sum(1)
    out = []
    for s in range(0, len(queries), chunk):
        q = np.asarray(queries[s:s + chunk], np.float32)
        d = v2[None, :] - 2 * q @ vectors.T
        part = np.argpartition(d, k, axis=1)[:, :k]
        order = np.take_along_axis(d, part, 1).argsort(1)
        out.append(np.take_along_axis(part, order, 1))
    return np.concatenate(out)


def random_pair_distance(arrays: EpisodeArrays, n: int = 10000, seed: int = 0) -> float:
    """Mean proprio ℓ2 distance of random step pairs (the baseline negatives must beat)."""
    rng = np.random.default_rng(seed)
    a, b = rng.integers(arrays.num_steps, size=(2, n))
    return float(np.linalg.norm(arrays.proprio[a] - arrays.proprio[b], axis=1).mean())


def in_pipeline_searcher(arrays: EpisodeArrays, k: int, max_indexed: Optional[int] = None):
    """ScaNN TF-op searcher over the (subset of) steps, for search inside ``tf.data``.

    Returns (searcher, indexed int64 [n]) — map searcher hits through ``indexed``.
    """
    m = arrays.num_steps
    max_indexed = max_indexed or MAX_INDEXED
    indexed = np.arange(m) if m <= max_indexed else np.sort(
        np.random.default_rng(0).choice(m, size=max_indexed, replace=False))
    return build_searcher(arrays.proprio[indexed], k, tf_ops=True), indexed
