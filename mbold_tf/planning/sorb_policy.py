"""SoRB's planning policy (Eysenbach et al. 2019; paper App. B.4): search on the replay buffer.

The graph's nodes are training observations; an edge i → j exists where the predicted distance
d(node_i, node_j) ≤ ``max_dist`` (4 steps in the paper) and weighs that distance. All-pairs
shortest paths over it are computed once, at construction (:func:`all_pairs_shortest_paths`,
SciPy's Dijkstra: about 0.5 s for 2,000 nodes on one CPU core). At every step the policy

1. predicts d(s, node_i) for every node and d(s, g) (one batched call of ``distance_fn``),
   and d(node_i, g) only when the goal image differs from the one in the policy state (so
   once per episode: the state caches the goal and its N distances), edges from s and into g
   again limited to ``max_dist``;
2. finds the shortest route s → node_i ⇝ node_j → g (:func:`shortest_path_search`);
3. acts with ``waypoint_policy_fn`` (the paper: the GCBC policy, App. B.3) toward the route's
   first node, or toward the goal itself when the goal is within ``max_dist`` and d(s, g) is
   no longer than the route, or — the fallback, reported in ``info['path_found']`` — when no
   route within ``max_dist`` exists. (As the reference SoRB: a direct distance beyond
   ``max_dist`` is not trusted over the route, since the critic's bins saturate at
   ``num_bins`` steps and would make every far goal look closer than any long route.)

``PolicyStep.info`` (all [B]): ``used_graph`` bool (acting toward a graph node), ``path_found``
bool (a route exists), ``path_length`` int32 (edges of that route s → … → g, 0 when none),
``waypoint_index`` int32 (the node acted toward, −1 for the goal), ``waypoint_distance`` float32
(predicted steps to what the policy acts toward), ``direct_distance`` float32 (d(s, g)),
``route_distance`` float32 (the route's predicted length, +inf when none).

Everything runs in TensorFlow on variables the policy tracks (the graph's images, shortest
distances and hop counts), so it exports with TF-Agents' ``PolicySaver``.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np
from scipy import sparse
from scipy.sparse import csgraph
import tensorflow as tf
from tf_agents.policies import tf_policy
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import policy_step

from mbold_tf.planning import policies

IMAGE_SHAPE = (64, 64, 3)


class EmptyGraphError(ValueError):
    """No pair of graph nodes is within ``max_dist`` of each other: search is impossible."""


def _check_pairwise(distances) -> np.ndarray:
    d = np.asarray(distances, np.float64)
    if d.ndim != 2 or d.shape[0] != d.shape[1] or d.shape[0] < 1:
        raise ValueError(f"graph distances must be a square float matrix [N, N], got shape "
                         f"{list(d.shape)}.")
    if not np.all(np.isfinite(d)) or np.any(d < 0):
        raise ValueError("graph distances must be finite and >= 0; rebuild the graph "
                         "(python -m launch.train_sorb on the run directory).")
    return d


def all_pairs_shortest_paths(distances, max_dist: float) -> Tuple[np.ndarray, np.ndarray]:
    """Shortest paths over the graph whose edges are the pairs with distance ≤ ``max_dist``.

    Args:
      distances: float [N, N], predicted steps from node i to node j (the diagonal is ignored).
      max_dist: edge threshold in steps.
    Returns:
      (path_distance float32 [N, N]: the shortest route's summed distance, +inf when j is not
      reachable from i, 0 on the diagonal; hops int32 [N, N]: that route's edge count, −1 when
      unreachable).
    Raises:
      EmptyGraphError naming ``max_dist`` and the distance statistics when no off-diagonal pair
      is within ``max_dist``; ValueError for a non-square or non-finite matrix.
    """
    d = _check_pairwise(distances)
    n = d.shape[0]
    off = ~np.eye(n, dtype=bool)
    edge = off & (d <= max_dist)
    if not edge.any():
        vals = d[off] if n > 1 else np.zeros([1])
        raise EmptyGraphError(
            f"The SoRB graph has no edge: no pair of its {n} nodes is within max_dist = "
            f"{max_dist} steps (off-diagonal distances: min {vals.min():.3g}, median "
            f"{np.median(vals):.3g}, max {vals.max():.3g}). Raise sorb_settings.max_dist above "
            f"the minimum, use a larger graph, or check the trained distance.")
    rows, cols = np.nonzero(edge)
    # Explicit zero-weight edges would be dropped by the sparse format: floor them at 1e-9.
    weights = np.maximum(d[rows, cols], 1e-9)
    graph = sparse.csr_matrix((weights, (rows, cols)), shape=(n, n))
    dist, pred = csgraph.shortest_path(graph, method="D", directed=True,
                                       return_predecessors=True)
    hops = np.full([n, n], -1, np.int64)
    hops[np.arange(n), np.arange(n)] = 0
    # Along a shortest path the predecessor is strictly closer (positive weights): fill the
    # hop counts column by column in order of distance from each source.
    order = np.argsort(dist, axis=1, kind="stable")
    src = np.arange(n)
    for k in range(1, n):
        j = order[:, k]
        p = pred[src, j]
        ok = (p >= 0) & np.isfinite(dist[src, j])
        hops[src[ok], j[ok]] = hops[src[ok], p[ok]] + 1
    dist = dist.astype(np.float32)
    dist[np.arange(n), np.arange(n)] = 0.0
    return dist, hops.astype(np.int32)


def shortest_path_search(start_to_nodes, nodes_to_goal, direct, path_distance, hops,
                         max_dist: float) -> Dict[str, tf.Tensor]:
    """SoRB's search: the shortest route start → node_i ⇝ node_j → goal, and what to act toward.

    Args:
      start_to_nodes: float32 [B, N], d(s, node_i).
      nodes_to_goal: float32 [B, N], d(node_j, g).
      direct: float32 [B], d(s, g).
      path_distance: float32 [N, N], graph shortest-path distances (+inf: unreachable), e.g.
        from :func:`all_pairs_shortest_paths`; hops: int32 [N, N], their edge counts.
      max_dist: the first and last edges must be ≤ this too.
    Returns:
      dict of [B] tensors: ``used_graph`` bool (act toward node ``waypoint_index``),
      ``path_found`` bool, ``path_length`` int32 (edges s → … → g of the route, 0 when none),
      ``waypoint_index`` int32 (−1: act toward the goal), ``waypoint_distance`` float32,
      ``direct_distance`` float32, ``route_distance`` float32 (+inf when none). The goal is
      the target when ``direct`` ≤ ``max_dist`` and ``direct`` ≤ the route, or when there is
      no route (the fallback); otherwise the route's first node.
    Memory: a [B, N, N] float32 tensor.
    """
    start_to_nodes = tf.cast(start_to_nodes, tf.float32)
    nodes_to_goal = tf.cast(nodes_to_goal, tf.float32)
    direct = tf.cast(direct, tf.float32)
    path_distance = tf.cast(path_distance, tf.float32)
    inf = tf.constant(np.inf, tf.float32)
    s_n = tf.where(start_to_nodes <= max_dist, start_to_nodes, inf)      # [B, N]
    n_g = tf.where(nodes_to_goal <= max_dist, nodes_to_goal, inf)        # [B, N]
    via = path_distance[None] + n_g[:, None, :]                          # [B, N(i), N(j)]
    last = tf.argmin(via, axis=2, output_type=tf.int32)                  # best j for each i
    to_goal = tf.reduce_min(via, axis=2)                                 # [B, N]
    total = s_n + to_goal
    first = tf.argmin(total, axis=1, output_type=tf.int32)               # [B]
    route = tf.reduce_min(total, axis=1)
    path_found = tf.math.is_finite(route)
    used_graph = path_found & ((direct > max_dist) | (route < direct))
    j = tf.gather(last, first, batch_dims=1)
    edges = tf.gather_nd(tf.cast(hops, tf.int32), tf.stack([first, j], axis=1)) + 2
    waypoint_distance = tf.where(used_graph, tf.gather(s_n, first, batch_dims=1), direct)
    return {"used_graph": used_graph, "path_found": path_found,
            "path_length": tf.where(path_found, edges, tf.zeros_like(edges)),
            "waypoint_index": tf.where(used_graph, first, -tf.ones_like(first)),
            "waypoint_distance": waypoint_distance, "direct_distance": direct,
            "route_distance": route}


def _check_observation_images(obs):
    """Raises ValueError naming the key when an image is not uint8 [B, 64, 64, 3]."""
    for key in ("image", "goal_image"):
        x = tf.convert_to_tensor(obs[key])
        shape = x.shape.as_list() if x.shape.rank is not None else None
        ok = x.dtype == tf.uint8 and shape is not None and len(shape) == 4 and all(
            s is None or s == e for s, e in zip(shape[1:], IMAGE_SHAPE))
        if not ok:
            raise ValueError(f"observation['{key}'] must be uint8 [B, 64, 64, 3], got {shape} "
                             f"{x.dtype.name}; resize the camera images to 64x64 RGB uint8.")


def _check_specs(time_step_spec):
    obs = time_step_spec.observation
    if not hasattr(obs, "keys") or any(k not in obs for k in ("image", "goal_image")):
        raise ValueError("SorbPolicy needs a dict observation with 'image' and 'goal_image' "
                         "(goal_env.tf_specs()).")
    for key in ("image", "goal_image"):
        spec = obs[key]
        if tuple(spec.shape) != IMAGE_SHAPE or spec.dtype != tf.uint8:
            raise ValueError(f"observation['{key}'] must be uint8 [64, 64, 3], got "
                             f"{list(spec.shape)} {spec.dtype.name}; resize the camera images "
                             f"to 64x64 RGB (goal_env.tf_specs()).")


class SorbPolicy(tf_policy.TFPolicy):
    """Search on the Replay Buffer: act toward the next graph waypoint on the shortest route.

    Args:
      time_step_spec, action_spec: the environment's TF specs (observation dict with uint8
        [64, 64, 3] 'image' and 'goal_image'; actions float32 [A] in a box).
      distance_fn: ``(image [K,64,64,3] uint8, goal_image [K,64,64,3] uint8) -> float32 [K]``
        predicted steps, e.g. :meth:`mbold_tf.models.sorb.SorbModel.distance` (called once per
        step on K = B·(2N + 1) pairs).
      graph_images: uint8 [N, 64, 64, 3], the nodes.
      graph_distances: float [N, N], d(node_i, node_j) (``SorbGraph.distances``).
      waypoint_policy_fn: ``(image [B,64,64,3] uint8, target_image [B,64,64,3] uint8) ->
        float32 [B, A]``, e.g. ``GCBCPolicy.action`` (App. B.4 uses GCBC to reach waypoints).
      max_dist: edge threshold in steps (``sorb_settings.max_dist``).
      models: the modules the two functions use (tracked for export).
    Raises:
      EmptyGraphError when no pair of nodes is within ``max_dist``; ValueError for images that
      are not uint8 [64, 64, 3] or a distance matrix that does not match them.
    """

    def __init__(self, time_step_spec, action_spec, distance_fn: Callable, graph_images,
                 graph_distances, waypoint_policy_fn: Callable, max_dist: float,
                 models: Sequence[tf.Module] = (), name: Optional[str] = None):
        _check_specs(time_step_spec)
        images = np.asarray(graph_images)
        if images.ndim != 4 or tuple(images.shape[1:]) != IMAGE_SHAPE or \
                images.dtype != np.uint8:
            raise ValueError(f"graph images must be uint8 [N, 64, 64, 3], got "
                             f"{list(images.shape)} {images.dtype}.")
        distances = _check_pairwise(graph_distances)
        if distances.shape[0] != images.shape[0]:
            raise ValueError(f"graph distances are {list(distances.shape)} for "
                             f"{images.shape[0]} graph images; they must be [N, N].")
        if not float(max_dist) > 0:
            raise ValueError(f"max_dist must be > 0 steps, got {max_dist}.")
        path_distance, hops = all_pairs_shortest_paths(distances, float(max_dist))
        self._distance_fn = distance_fn
        self._waypoint_policy_fn = waypoint_policy_fn
        self._models = tuple(models)
        self._max_dist = float(max_dist)
        self._num_nodes = int(images.shape[0])
        self._graph_images = tf.Variable(images, trainable=False, name="graph_images")
        self._path_distance = tf.Variable(path_distance, trainable=False, name="path_distance")
        self._hops = tf.Variable(hops, trainable=False, name="path_hops")
        scalar = lambda dt, n: tensor_spec.TensorSpec([], dt, name=n)
        info_spec = {"used_graph": scalar(tf.bool, "used_graph"),
                     "path_found": scalar(tf.bool, "path_found"),
                     "path_length": scalar(tf.int32, "path_length"),
                     "waypoint_index": scalar(tf.int32, "waypoint_index"),
                     "waypoint_distance": scalar(tf.float32, "waypoint_distance"),
                     "direct_distance": scalar(tf.float32, "direct_distance"),
                     "route_distance": scalar(tf.float32, "route_distance")}
        # The goal's node distances are cached in the policy state, keyed on the goal image.
        state_spec = {"goal_image": tensor_spec.TensorSpec(IMAGE_SHAPE, tf.uint8),
                      "nodes_to_goal": tensor_spec.TensorSpec([self._num_nodes], tf.float32),
                      "valid": tensor_spec.TensorSpec([], tf.bool)}
        # validate_args / automatic_state_reset False: _action checks the images itself, naming
        # the key and the fix (TF-Agents' checks would only say that shapes and specs differ),
        # and the cached distances depend on the goal image alone, so a new episode keeps them.
        super().__init__(time_step_spec, action_spec, policy_state_spec=state_spec,
                         info_spec=info_spec, validate_args=False,
                         automatic_state_reset=False, name=name)

    @property
    def num_nodes(self) -> int:
        return self._num_nodes

    @property
    def max_dist(self) -> float:
        return self._max_dist

    @staticmethod
    def _finite(d):
        d = tf.cast(d, tf.float32)
        return tf.where(tf.math.is_finite(d), d, tf.fill(tf.shape(d), np.inf))

    def _action(self, time_step, policy_state, seed=None):
        del seed
        obs = time_step.observation
        _check_observation_images(obs)
        image, goal = obs["image"], obs["goal_image"]
        b, n = tf.shape(image)[0], self._num_nodes
        nodes = tf.convert_to_tensor(self._graph_images)
        nodes_b = tf.tile(nodes, [b, 1, 1, 1])                          # [B·N], node-major in b
        starts = tf.concat([tf.repeat(image, n, axis=0), image], axis=0)
        targets = tf.concat([nodes_b, goal], axis=0)
        d = self._finite(self._distance_fn(starts, targets))
        s_n = tf.reshape(d[:b * n], tf.stack([b, n]))
        direct = d[b * n:]
        cached = policy_state["nodes_to_goal"]
        changed = tf.logical_or(
            tf.logical_not(policy_state["valid"]),
            tf.reduce_any(tf.not_equal(goal, policy_state["goal_image"]), axis=[1, 2, 3]))

        def fresh():
            n_g = self._finite(self._distance_fn(nodes_b, tf.repeat(goal, n, axis=0)))
            return tf.where(changed[:, None], tf.reshape(n_g, tf.stack([b, n])), cached)

        n_g = tf.cond(tf.reduce_any(changed), fresh, lambda: cached)
        policy_state = {"goal_image": goal, "nodes_to_goal": n_g,
                        "valid": tf.ones_like(policy_state["valid"])}
        info = shortest_path_search(s_n, n_g, direct, self._path_distance, self._hops,
                                    self._max_dist)
        waypoint = tf.gather(nodes, tf.maximum(info["waypoint_index"], 0))
        target = tf.where(info["used_graph"][:, None, None, None], waypoint, goal)
        action = tf.cast(self._waypoint_policy_fn(image, target), tf.float32)
        action = policies.safe_action(action, self.action_spec)
        return policy_step.PolicyStep(action, policy_state, info)


def make_sorb_policy(time_step_spec, action_spec, sorb_model, gcbc_model,
                     name: Optional[str] = None) -> SorbPolicy:
    """The paper's SoRB policy from a loaded SoRB run and a GCBC model.

    ``sorb_model``: :func:`mbold_tf.agents.checkpoints.load_sorb` (its ``.graph`` and
    ``settings['max_dist']``); ``gcbc_model``: ``checkpoints.load_gcbc`` (``.action`` reaches
    the waypoints).
    """
    graph = getattr(sorb_model, "graph", None)
    if graph is None:
        raise ValueError("The SoRB model has no graph; load it with "
                         "mbold_tf.agents.checkpoints.load_sorb(root_dir).")
    return SorbPolicy(time_step_spec, action_spec, sorb_model.distance, graph.images,
                      graph.distances, gcbc_model.action, sorb_model.settings["max_dist"],
                      models=[sorb_model, gcbc_model], name=name)
