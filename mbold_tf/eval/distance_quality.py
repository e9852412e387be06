"""How good is a distance function? Offline measures on held-out episodes and Fig. 6's heatmap.

* **Spearman** ρ between the predicted distance d(s_t, s_{t+Δ}) and the true step offset Δ, for
  goals reached later in the same episode (Δ uniform in 1..``max_offset``, within the episode).
* **AUC** of separating *reached* goals (same episode, Δ in 1..``near_offset``) from *hard
  negatives*: frames of other episodes whose arm joints are nearest neighbours of the state's
  (:func:`mbold_tf.data.neighbors.neighbor_table` on the same split), i.e. arm in place, objects
  elsewhere. AUC = P(d(reached) < d(negative)) (ties count ½), computed from ranks.
* **Geometric reference** (when the episodes carry privileged state): the displacement
  ‖Δ end effector‖ + ‖Δ objects‖ between state and goal (metres, summed over the privileged keys).
  A shortest-path distance should follow it, so ``spearman_geometric`` reports ρ against it, and
  ``GeometricOracle`` scores the displacement itself as a distance: its ρ with Δ is
  the ceiling that random-walk offsets leave for any distance that measures shortest paths.
* **Heatmap** (Fig. 6): for a fixed goal image (block at ``goal_xy``), the distance from images
  with the block at every point of an x-y grid and the arm at its start pose, saved as a PNG.

Every distance object only needs ``.distance(image, goal_image) -> [B]`` (smaller = closer), or
``.distance_by_index(a, b) -> [N]`` for privileged references that read step indices.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import numpy as np
from PIL import Image
from scipy import stats as scipy_stats

from mbold_tf.data.rlds import EpisodeArrays
from mbold_tf.eval import stats


def roc_auc(positive_scores: np.ndarray, negative_scores: np.ndarray) -> float:
    """AUC = P(score(pos) > score(neg)) + ½ P(tie), from the Mann–Whitney U statistic."""
    pos = np.asarray(positive_scores, np.float64).ravel()
    neg = np.asarray(negative_scores, np.float64).ravel()
    if pos.size == 0 or neg.size == 0:
        raise ValueError("roc_auc needs at least one positive and one negative score.")
    ranks = scipy_stats.rankdata(np.concatenate([pos, neg]))
    u = ranks[:pos.size].sum() - pos.size * (pos.size + 1) / 2.0
    return float(u / (pos.size * neg.size))


def _batched_distance(distance_obj, images: np.ndarray, goals: np.ndarray,
                      batch_size: int) -> np.ndarray:
    out = []
    for s in range(0, len(images), batch_size):
        d = distance_obj.distance(images[s:s + batch_size], goals[s:s + batch_size])
        out.append(np.asarray(d, np.float64).reshape(-1))
    return np.concatenate(out)


def sample_pairs(arrays: EpisodeArrays, neighbor_table: np.ndarray, num_pairs: int = 2000,
                 max_offset: int = 10, near_offset: int = 3, seed: int = 0
                 ) -> Dict[str, np.ndarray]:
    """Index pairs: 'ranked' (state, goal, offset) and 'reached'/'negative' (state, goal)."""
    rng = np.random.default_rng(seed)
    last = np.repeat(arrays.episode_start + arrays.episode_length - 1, arrays.episode_length)
    room = last - np.arange(arrays.num_steps)
    anchors = np.flatnonzero(room >= 1)
    i = rng.choice(anchors, num_pairs)
    off = 1 + np.floor(rng.random(num_pairs) * np.minimum(room[i], max_offset)).astype(np.int64)
    j = rng.choice(anchors, num_pairs)
    near = 1 + np.floor(rng.random(num_pairs) * np.minimum(room[j], near_offset)).astype(np.int64)
    k = rng.choice(anchors, num_pairs)
    col = rng.integers(neighbor_table.shape[1], size=num_pairs)
    episode = arrays.step_episode()
    neg = neighbor_table[k, col]
    if np.any(episode[neg] == episode[k]):
        raise ValueError("neighbor_table returned same-episode negatives.")
    return {"ranked": np.stack([i, i + off, off], 1), "reached": np.stack([j, j + near], 1),
            "negative": np.stack([k, neg], 1)}


def geometric_distance(arrays: EpisodeArrays, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Σ over privileged keys of ‖x[a] − x[b]‖ (metres): float64 [N] for index arrays a, b [N].

    Raises ValueError if the episodes carry no privileged state (e.g. a foreign RLDS dataset).
    """
    if not arrays.privileged:
        raise ValueError("These episodes carry no privileged state; the geometric reference "
                         "needs the mbold_tabletop datasets (or a 'privileged' mapping).")
    total = np.zeros(len(a), np.float64)
    for value in arrays.privileged.values():
        diff = (np.asarray(value[a], np.float64) - np.asarray(value[b], np.float64))
        total += np.linalg.norm(diff.reshape(len(a), -1), axis=-1)
    return total


class GeometricOracle:
    """The privileged displacement as a distance, addressed by step index (evaluation only)."""

    def __init__(self, arrays: EpisodeArrays):
        self._arrays = arrays

    def distance_by_index(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """float64 [N]: :func:`geometric_distance` of steps ``a`` and ``b`` (int [N])."""
        return geometric_distance(self._arrays, a, b)


def evaluate_distance(distance_obj, arrays: EpisodeArrays,
                      neighbor_table: Optional[np.ndarray] = None, num_pairs: int = 2000,
                      max_offset: int = 10, near_offset: int = 3, batch_size: int = 256,
                      seed: int = 0) -> Dict[str, float]:
    """Spearman ρ (reached goals vs true offset) and AUC (reached vs hard negatives).

    Args:
      distance_obj: has ``distance(image, goal_image)`` → [B] (uint8 images).
      arrays: held-out episodes (e.g. the validation split).
      neighbor_table: from ``neighbors.neighbor_table(arrays)`` (computed if None).
      num_pairs: pairs per measure; max_offset: Δ range for Spearman; near_offset: Δ range of
        the reached goals for the AUC.
    Returns:
      dict: spearman, auc, mean_distance_reached, mean_distance_negative,
      mean_distance_by_offset (list, Δ = 1..max_offset), num_pairs, and spearman_geometric
      (ρ against the privileged displacement) when the episodes carry privileged state.
      An object with ``distance_by_index(a, b)`` (e.g. :class:`GeometricOracle`) is scored on
      the same pairs by step index instead of images.
    """
    if neighbor_table is None:
        from mbold_tf.data import neighbors  # pylint: disable=g-import-not-at-top
        neighbor_table = neighbors.neighbor_table(arrays)
    pairs = sample_pairs(arrays, neighbor_table, num_pairs, max_offset, near_offset, seed)
    r, pos, neg = pairs["ranked"], pairs["reached"], pairs["negative"]
    if hasattr(distance_obj, "distance_by_index"):  # privileged distances read steps, not images
        d_ranked, d_pos, d_neg = (distance_obj.distance_by_index(x[:, 0], x[:, 1])
                                  for x in (r, pos, neg))
    else:
        im = arrays.images
        d_ranked, d_pos, d_neg = (_batched_distance(distance_obj, im[x[:, 0]], im[x[:, 1]],
                                                    batch_size) for x in (r, pos, neg))
    rho = stats.spearman(d_ranked, r[:, 2])
    by_offset = [float(d_ranked[r[:, 2] == o].mean()) if np.any(r[:, 2] == o) else float("nan")
                 for o in range(1, max_offset + 1)]
    out = {"spearman": rho,
           "auc": roc_auc(-d_pos, -d_neg),  # smaller distance = positive
           "mean_distance_reached": float(d_pos.mean()),
           "mean_distance_negative": float(d_neg.mean()),
           "mean_distance_by_offset": by_offset, "num_pairs": int(num_pairs)}
    if arrays.privileged:
        out["spearman_geometric"] = stats.spearman(
            d_ranked, geometric_distance(arrays, r[:, 0], r[:, 1]))
    return out


def actor_health(learned_distance, arrays: EpisodeArrays, num_states: int = 512,
                 offset: int = 2, seed: int = 0) -> Dict[str, float]:
    """Is the TD3 actor a usable maximiser of Q? (The distance reads Q at the actor's action.)

    On ``num_states`` held-out states with the goal ``offset`` steps later: mean min(Q1, Q2) at
    the actor's action (``q_actor``) and at the recorded action (``q_data``), and the share of
    actor action components beyond ±0.99 (``actor_saturated``). A healthy actor has q_actor ≥
    q_data; a collapsed one sits at the corners of the action box where Q is extrapolated, and
    the distance then reads noise (retrain, e.g. with another seed).
    """
    rng = np.random.default_rng(seed)
    last = np.repeat(arrays.episode_start + arrays.episode_length - 1, arrays.episode_length)
    i = rng.choice(np.flatnonzero(last - np.arange(arrays.num_steps) >= offset), num_states)
    s, g = arrays.images[i], arrays.images[i + offset]
    a = np.asarray(learned_distance.action(s, g))
    q_actor = float(np.mean(learned_distance.q_values(s, g)))
    q_data = float(np.mean(learned_distance.q_values(s, g, arrays.actions[i])))
    return {"q_actor": q_actor, "q_data": q_data,
            "actor_saturated": float(np.mean(np.abs(a) > 0.99))}


def format_table(rows: Sequence[Dict]) -> str:
    """A fixed-width text table of rows with 'method', 'spearman', 'auc' (and optional extras)."""
    cols = ["method", "spearman", "spearman_geometric", "auc", "mean_distance_reached",
            "mean_distance_negative"]
    head = ["method", "Spearman", "ρ geometric", "AUC", "d(reached)", "d(negative)"]
    lines = [f"{head[0]:<24}" + "".join(f"{h:>13}" for h in head[1:])]
    for row in rows:
        cells = [f"{row.get(c, float('nan')):>13.3f}" for c in cols[1:]]
        lines.append(f"{str(row.get('method', '?')):<24}" + "".join(cells))
    return "\n".join(lines)


# -- Fig. 6 heatmap --------------------------------------------------------------------------------
_VIRIDIS = np.array([[68, 1, 84], [72, 40, 120], [62, 74, 137], [49, 104, 142], [38, 130, 142],
                     [31, 158, 137], [53, 183, 121], [109, 205, 89], [180, 222, 44],
                     [253, 231, 37]], np.float64)


def colormap(values: np.ndarray) -> np.ndarray:
    """uint8 [..., 3]: a viridis-like map of ``values`` normalised to [0, 1] (min → dark)."""
    v = np.asarray(values, np.float64)
    lo, hi = np.nanmin(v), np.nanmax(v)
    t = (v - lo) / (hi - lo) if hi > lo else np.zeros_like(v)
    t = np.nan_to_num(t) * (len(_VIRIDIS) - 1)
    i0 = np.clip(np.floor(t).astype(int), 0, len(_VIRIDIS) - 2)
    frac = (t - i0)[..., None]
    return np.round(_VIRIDIS[i0] * (1 - frac) + _VIRIDIS[i0 + 1] * frac).astype(np.uint8)


def block_grid_images(xs: np.ndarray, ys: np.ndarray, goal_xy: Tuple[float, float],
                      task: str = "push1", seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """Renders (images uint8 [len(ys), len(xs), 64, 64, 3], goal image [64, 64, 3]).

    The arm stays at its start pose; block 0 is placed at workspace centre + (x, y) (metres).
    """
    from mbold_tf.envs import scene, tasks  # pylint: disable=g-import-not-at-top
    env = tasks.load(task, seed=seed)
    try:
        env.reset()
        physics = env.physics
        qadr = int(physics.model.jnt_qposadr[physics.model.name2id("block0", "joint")])

        def render_at(x, y):
            physics.data.qpos[qadr:qadr + 7] = [scene.WORKSPACE_CENTER[0] + x,
                                                scene.WORKSPACE_CENTER[1] + y,
                                                scene.BLOCK_HALF, 1, 0, 0, 0]
            physics.forward()
            return physics.render_image(64)

        goal = render_at(*goal_xy)
        images = np.stack([np.stack([render_at(x, y) for x in xs]) for y in ys])
    finally:
        tasks.close(env)
    return images, goal


def distance_heatmap(distance_obj, path: Optional[str] = None,
                     goal_xy: Tuple[float, float] = (0.1, -0.05), half_range: float = 0.2,
                     resolution: int = 21, cell: int = 12, grid=None
                     ) -> Dict:
    """Fig. 6: distance to a fixed goal as the block moves on an x-y grid; optional PNG.

    ``grid``: (images, goal) from :func:`block_grid_images` to reuse renders across methods.
    Returns dict: distances [resolution, resolution] (rows: y ascending), xs, ys, argmin_xy,
    argmin_error_m (distance of the minimum from goal_xy).
    """
    xs = np.linspace(-half_range, half_range, resolution)
    ys = np.linspace(-half_range, half_range, resolution)
    images, goal = grid if grid is not None else block_grid_images(xs, ys, goal_xy)
    flat = images.reshape(-1, 64, 64, 3)
    d = _batched_distance(distance_obj, flat, np.repeat(goal[None], len(flat), 0), 256)
    d = d.reshape(len(ys), len(xs))
    iy, ix = np.unravel_index(np.argmin(d), d.shape)
    out = {"distances": d, "xs": xs, "ys": ys, "argmin_xy": (float(xs[ix]), float(ys[iy])),
           "argmin_error_m": float(np.hypot(xs[ix] - goal_xy[0], ys[iy] - goal_xy[1]))}
    if path:
        save_heatmap_png(path, d, goal, cell)
    return out


def save_heatmap_png(path: str, distances: np.ndarray, goal_image: np.ndarray, cell: int = 12):
    """Writes [goal image | heatmap] (y up, like the paper's plots), upscaled with PIL."""
    heat = colormap(distances[::-1])  # row 0 = largest y at the top
    heat = np.kron(heat, np.ones((cell, cell, 1), np.uint8))
    side = heat.shape[0]
    goal = np.asarray(Image.fromarray(goal_image).resize((side, side), Image.NEAREST))
    gap = np.full((side, 8, 3), 255, np.uint8)
    Image.fromarray(np.concatenate([goal, gap, heat], axis=1)).save(path)
