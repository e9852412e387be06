"""``tf.data`` input pipelines for the video predictor, the distance agent and the baselines.

All pipelines sample whole batches at once from :class:`~mbold_tf.data.rlds.EpisodeArrays`
held in memory (uniform over valid start steps, i.e. shuffled by construction), with stateless
random ops keyed on ``(seed, batch number)``: the same seed gives the same batches, and batches
are built in parallel (``num_parallel_calls=AUTOTUNE``) and prefetched.
"""
from __future__ import annotations

from typing import Optional

import gin
import numpy as np
import tensorflow as tf

from mbold_tf.data.rlds import EpisodeArrays

REWARD_SCHEMES = ("indicator", "ten_one")
NEGATIVE_KEYS = ("state", "goal", "none")


def _constants(arrays: EpisodeArrays):
    """Tensors shared by the pipelines (created once, captured by the map functions)."""
    return {"images": tf.constant(arrays.images), "actions": tf.constant(arrays.actions),
            "step_time": tf.constant(arrays.step_time(), tf.int64),
            "last": tf.constant((arrays.episode_start + arrays.episode_length - 1)[
                arrays.step_episode()], tf.int64)}


def _uniform_choice(seed, candidates: tf.Tensor, n: int) -> tf.Tensor:
    idx = tf.random.stateless_uniform([n], seed, 0, tf.shape(candidates, out_type=tf.int64)[0],
                                      dtype=tf.int64)
    return tf.gather(candidates, idx)


def _batches(make_batch, seed: int):
    """Dataset.counter() -> make_batch(stateless seed pair), parallel and prefetched."""
    ds = tf.data.Dataset.counter()
    ds = ds.map(lambda i: make_batch(tf.stack([tf.constant(seed, tf.int64), i])),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def predictor_window_starts(arrays: EpisodeArrays, context: int = 1,
                            horizon: int = 13) -> np.ndarray:
    """int64 [N]: the row in ``arrays`` of every window's first frame, in row order.

    A window holds ``context + horizon`` consecutive observations of one episode; this is the
    order of the ``window_weights`` that :func:`predictor_dataset` takes.
    """
    span = context + horizon  # observations per window
    t = arrays.step_time()
    room = np.repeat(arrays.episode_length, arrays.episode_length) - t  # steps left incl. t
    starts = np.flatnonzero(room >= span).astype(np.int64)
    if starts.size == 0:
        raise ValueError(f"No episode has {span} steps (context {context} + horizon {horizon}); "
                         f"longest is {int(arrays.episode_length.max())}.")
    return starts


def predictor_window_offsets(context: int = 1, horizon: int = 13):
    """(int64 [C+h], int64 [h]): rows of a window's frames and actions after its start.

    The frames are ``start + frame_offsets`` (context then targets); the actions taken from the
    last context frame on are ``start + action_offsets`` (int64 [h]).
    """
    frame_offsets = np.arange(context + horizon, dtype=np.int64)
    action_offsets = np.arange(context - 1, context - 1 + horizon, dtype=np.int64)
    return frame_offsets, action_offsets


def _check_window_weights(window_weights, weighted_share: float, num_windows: int) -> np.ndarray:
    if not 0.0 < weighted_share < 1.0:
        raise ValueError(f"weighted_share = {weighted_share} must lie in (0, 1) when window "
                         f"weights are given (the rest of each batch is drawn uniformly).")
    w = np.asarray(window_weights, np.float64)
    if w.shape != (num_windows,):
        raise ValueError(f"window_weights has shape {list(w.shape)}; expected [{num_windows}], "
                         f"one weight per window of predictor_window_starts().")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        finite = w[np.isfinite(w)]
        raise ValueError("window_weights must be finite and >= 0 with a positive sum; got "
                         f"{int(np.sum(finite < 0))} negative, sum of the finite ones "
                         f"{finite.sum():g}, {w.size - finite.size} non-finite.")
    return w


# Batch, window and seed belong to the training entry point (train_predictor.batch_size; the
# model's context and horizon; train_predictor.hard_window_share for the weights): a gin binding
# of them here is an error, not a silent no-op.
@gin.configurable(denylist=["arrays", "batch_size", "context", "horizon", "seed",
                            "with_step_index", "window_weights", "weighted_share",
                            "with_proprio"])
def predictor_dataset(arrays: EpisodeArrays, batch_size: int = 16, context: int = 1,
                      horizon: int = 13, seed: int = 0,
                      with_step_index: bool = False,
                      window_weights: Optional[np.ndarray] = None,
                      weighted_share: float = 0.0,
                      with_proprio: bool = False) -> tf.data.Dataset:
    """Windows for the video predictor.

    Elements: ``{'images': uint8 [B, C+h, 64, 64, 3], 'actions': float32 [B, h, A]}`` where
    ``actions[:, i]`` moves ``images[:, C-1+i]`` to ``images[:, C+i]`` (C = context, h =
    horizon): the context frames s_{t-C+1..t}, the actions a_{t:t+h} and the targets
    s_{t+1..t+h}. ``with_step_index`` adds ``'step_index'``: int64 [B, C+h], each image's row
    in ``arrays`` (for evaluation tools that look up per-step data, e.g. privileged positions).
    ``with_proprio`` adds ``'proprio'``: float32 [B, C+h, P], each frame's robot state (the
    inputs and targets of a state-conditioned predictor).

    Windows are drawn uniformly. With ``window_weights`` (float [N], >= 0, one per window of
    :func:`predictor_window_starts`), the first ``round(weighted_share * B)`` windows of each
    batch are drawn with probability proportional to their weight and the rest uniformly.
    """
    starts = predictor_window_starts(arrays, context, horizon)
    num_weighted = 0
    if window_weights is not None:
        w = _check_window_weights(window_weights, weighted_share, starts.size)
        num_weighted = int(round(weighted_share * batch_size))
        logits = tf.constant(np.log(np.maximum(w / w.sum(), 1e-30))[None], tf.float32)
    elif weighted_share:
        raise ValueError(f"weighted_share = {weighted_share} without window_weights; pass "
                         f"both or neither.")
    c = _constants(arrays)
    starts_t = tf.constant(starts, tf.int64)
    frame_offsets, action_offsets = (tf.constant(o) for o in
                                      predictor_window_offsets(context, horizon))

    def make_batch(seed_pair):
        s = _uniform_choice(seed_pair, starts_t, batch_size - num_weighted)
        if num_weighted:
            weighted_seed = tf.random.experimental.stateless_fold_in(
                tf.cast(seed_pair, tf.int32), 104729)
            idx = tf.random.stateless_categorical(logits, num_weighted, weighted_seed,
                                                  dtype=tf.int64)[0]
            s = tf.concat([tf.gather(starts_t, idx), s], axis=0)
        s = s[:, None]
        out = {"images": tf.gather(c["images"], s + frame_offsets),
               "actions": tf.gather(c["actions"], s + action_offsets)}
        if with_step_index:
            out["step_index"] = s + frame_offsets
        if with_proprio:
            out["proprio"] = tf.gather(proprio, s + frame_offsets)
        return out

    proprio = tf.constant(arrays.proprio, tf.float32) if with_proprio else None
    return _batches(make_batch, seed)


def rewards_for(reached: tf.Tensor, scheme: str):
    """(reward, discount) float32 [B] for boolean ``reached`` [B] under a reward scheme.

    'indicator' (§4): 1 at the goal, else 0. 'ten_one' (App. A.1): 10 at the goal, else 1.
    The episode terminates at the goal (discount 0).
    """
    if scheme not in REWARD_SCHEMES:
        raise ValueError(f"Unknown reward scheme {scheme!r}; choose one of {REWARD_SCHEMES}.")
    reached = tf.cast(reached, tf.float32)
    reward = reached if scheme == "indicator" else 1.0 + 9.0 * reached
    return reward, 1.0 - reached


def geometric_offsets(seed_pair, n: int, p: float) -> tf.Tensor:
    """int64 [n]: Δ ~ Geom(p) on {1, 2, ...} (inverse-CDF sampling)."""
    u = tf.random.stateless_uniform([n], seed_pair, minval=1e-7, maxval=1.0)
    return 1 + tf.cast(tf.floor(tf.math.log(u) / tf.math.log(1.0 - p)), tf.int64)


# train_distance owns batch size, negatives key, reward scheme and seed (it records them with
# the run); gin may set only the relabelling settings p and negative_fraction here.
@gin.configurable(denylist=["arrays", "neighbor_table", "batch_size", "negatives_key",
                            "reward_scheme", "seed", "state_images", "state_image_fraction"])
def distance_dataset(arrays: EpisodeArrays, neighbor_table: Optional[np.ndarray] = None,
                     batch_size: int = 64, p: float = 0.3, negative_fraction: float = 0.5,
                     negatives_key: str = "state", reward_scheme: str = "indicator",
                     seed: int = 0, state_images: Optional[np.ndarray] = None,
                     state_image_fraction: float = 0.0) -> tf.data.Dataset:
    """Relabelled transitions for the distance agent (§4, App. A.1).

    A fraction ``1 - negative_fraction`` of each batch uses hindsight goals s_{t+Δ} from the same
    episode, Δ ~ Geom(p) (capped at the episode's last step); the rest uses hard negatives: a
    step from *another* episode whose arm joints are among the k nearest (``neighbor_table``
    [M, k] from :func:`mbold_tf.data.neighbors.neighbor_table`) of the state's
    (``negatives_key='state'``, the paper) or of the hindsight goal's (``'goal'``, the authors'
    code). ``'none'`` (or ``negative_fraction=0``) trains on hindsight goals only.

    ``state_images`` (uint8 [M, 64, 64, 3], aligned with the arrays' steps, e.g. the video
    predictor's frames of the same episodes): a fraction ``state_image_fraction`` of the rows
    read their ``observation`` and ``next_observation`` from it; goals stay real frames.

    Elements (batched, B = batch_size): ``observation``, ``next_observation``, ``goal`` uint8
    [B, 64, 64, 3]; ``action`` float32 [B, A]; ``reward``, ``discount`` float32 [B];
    ``is_negative`` bool [B]; ``offset`` int64 [B] (Δ, 0 for negatives).
    """
    rewards_for(tf.constant([True]), reward_scheme)  # validates the scheme name early
    if negatives_key not in NEGATIVE_KEYS:
        raise ValueError(f"Unknown negatives_key {negatives_key!r}; choose one of "
                         f"{NEGATIVE_KEYS}.")
    if not 0.0 < p <= 1.0:
        raise ValueError(f"Geometric parameter p={p} must be in (0, 1].")
    n_neg = 0 if negatives_key == "none" else int(round(batch_size * negative_fraction))
    if n_neg and neighbor_table is None:
        raise ValueError("Hard negatives need a neighbor_table (mbold_tf.data.neighbors."
                         "neighbor_table(arrays)); or set negatives_key='none'.")
    n_pos = batch_size - n_neg
    c = _constants(arrays)
    mixed = state_images is not None and state_image_fraction > 0
    if mixed and tuple(state_images.shape) != tuple(arrays.images.shape):
        raise ValueError(f"state_images has shape {list(state_images.shape)}; it must match the "
                         f"dataset's images {list(arrays.images.shape)} step for step.")
    alt_images = tf.constant(state_images) if mixed else None
    t = arrays.step_time()
    anchors = tf.constant(np.flatnonzero(t < np.repeat(arrays.episode_length,
                                                       arrays.episode_length) - 1), tf.int64)
    table = tf.constant(neighbor_table, tf.int64) if n_neg else None

    def make_batch(seed_pair):
        seeds = tf.random.experimental.stateless_split(seed_pair, 5)
        i = _uniform_choice(seeds[0], anchors, batch_size)
        delta = geometric_offsets(seeds[1], batch_size, p)
        goal_idx = tf.minimum(i + delta, tf.gather(c["last"], i))
        reached = tf.equal(goal_idx, i + 1)
        is_neg = tf.range(batch_size) >= n_pos
        if n_neg:
            key = goal_idx if negatives_key == "goal" else i
            col = tf.random.stateless_uniform([batch_size], seeds[2], 0, neighbor_table.shape[1],
                                              dtype=tf.int64)
            neg_idx = tf.gather_nd(table, tf.stack([key, col], axis=1))
            goal_idx = tf.where(is_neg, neg_idx, goal_idx)
            reached = tf.logical_and(reached, tf.logical_not(is_neg))
        reward, discount = rewards_for(reached, reward_scheme)
        observation = tf.gather(c["images"], i)
        next_observation = tf.gather(c["images"], i + 1)
        if mixed:
            # A seed of its own (folded in), so batches without the mix keep their old streams.
            mix_seed = tf.random.experimental.stateless_fold_in(seed_pair, 5)
            use = tf.random.stateless_uniform([batch_size], mix_seed) < state_image_fraction
            use = use[:, None, None, None]
            observation = tf.where(use, tf.gather(alt_images, i), observation)
            next_observation = tf.where(use, tf.gather(alt_images, i + 1), next_observation)
        return {"observation": observation,
                "action": tf.gather(c["actions"], i),
                "next_observation": next_observation,
                "goal": tf.gather(c["images"], goal_idx),
                "reward": reward, "discount": discount, "is_negative": is_neg,
                "offset": tf.where(is_neg, tf.zeros_like(goal_idx), goal_idx - i)}

    return _batches(make_batch, seed)


# Every argument belongs to its caller (train_distance's batch size and seed): a gin binding
# would be silently lost, so it fails at parse instead.
@gin.configurable(denylist=["arrays", "batch_size", "seed"])
def pairs_dataset(arrays: EpisodeArrays, batch_size: int = 32, seed: int = 0) -> tf.data.Dataset:
    """State–goal pairs for temporal-distance regression, GCBC and the VAE (App. B.3, C.2).

    t_i uniform over steps that have a successor, t_g uniform over (t_i, last step].
    Elements: ``observation``, ``goal`` uint8 [B, 64, 64, 3]; ``action`` float32 [B, A] (the
    action taken at t_i); ``offset`` int32 [B] = t_g − t_i ≥ 1.
    """
    c = _constants(arrays)
    t = arrays.step_time()
    anchors = tf.constant(np.flatnonzero(t < np.repeat(arrays.episode_length,
                                                       arrays.episode_length) - 1), tf.int64)

    def make_batch(seed_pair):
        seeds = tf.random.experimental.stateless_split(seed_pair, 2)
        i = _uniform_choice(seeds[0], anchors, batch_size)
        room = tf.gather(c["last"], i) - i  # ≥ 1
        u = tf.random.stateless_uniform([batch_size], seeds[1])
        offset = 1 + tf.cast(tf.floor(u * tf.cast(room, tf.float32)), tf.int64)
        offset = tf.minimum(offset, room)
        return {"observation": tf.gather(c["images"], i), "goal": tf.gather(c["images"], i + offset),
                "action": tf.gather(c["actions"], i), "offset": tf.cast(offset, tf.int32)}

    return _batches(make_batch, seed)
