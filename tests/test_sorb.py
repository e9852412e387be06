"""SoRB baseline (App. B.4): graph search, distributional training, the policy, export, errors."""
import os

import gin
import numpy as np
import pytest
import tensorflow as tf
from scipy import stats
from tf_agents.policies import policy_saver
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import time_step as ts

from mbold_tf.agents import checkpoints
from mbold_tf.data import pipelines
from mbold_tf.envs import goal_env
from mbold_tf.models import baselines
from mbold_tf.models import sorb
from mbold_tf.planning import sorb_policy
from mbold_tf.training import sorb as sorb_training
from mbold_tf.utils import run_config
from tests.test_distance import bar_image, chain_arrays

TIME_STEP_SPEC, ACTION_SPEC = goal_env.tf_specs()
INF = np.inf


# -- (a) search on a hand-made graph ------------------------------------------------------------
# 0 →1→ 1 →2→ 2 →1→ 3, and a shortcut 0 →2.9→ 3; every other pair is 9 steps apart (no edge).
HAND = np.array([[0.0, 1.0, 9.0, 2.9],
                 [9.0, 0.0, 2.0, 9.0],
                 [9.0, 9.0, 0.0, 1.0],
                 [9.0, 9.0, 9.0, 0.0]])


def test_all_pairs_shortest_paths_on_a_hand_made_graph():
    dist, hops = sorb_policy.all_pairs_shortest_paths(HAND, max_dist=3.0)
    np.testing.assert_allclose(dist[0], [0.0, 1.0, 3.0, 2.9], rtol=1e-6)   # 0→1→2; shortcut
    np.testing.assert_array_equal(hops[0], [0, 1, 2, 1])
    np.testing.assert_allclose(dist[1, 3], 3.0, rtol=1e-6)                # 1→2→3
    assert hops[1, 3] == 2
    assert np.isinf(dist[3, 0]) and hops[3, 0] == -1                      # no edge out of 3
    with pytest.raises(sorb_policy.EmptyGraphError,
                       match=r"max_dist = 0\.5 steps.*min 1, median 9, max 9"):
        sorb_policy.all_pairs_shortest_paths(HAND, max_dist=0.5)


def test_search_picks_the_first_waypoint_of_the_shortest_route_or_the_goal():
    dist, hops = sorb_policy.all_pairs_shortest_paths(HAND, max_dist=3.0)
    # s is near nodes 0 and 1 (node 3 at 3.5 is beyond max_dist: no edge, though it would
    # give a shorter route); only node 3 is near g (node 0 at 3.5 is not)
    start = np.array([[1.0, 2.5, 9.0, 3.5]] * 5, np.float32)
    to_goal = np.array([[3.5, 9.0, 9.0, 1.0],
                        [3.5, 9.0, 9.0, 1.0],
                        [9.0, 9.0, 9.0, 9.0],                  # nothing near g: no route
                        [3.5, 9.0, 9.0, 1.0],
                        [3.5, 9.0, 9.0, 1.0]], np.float32)
    direct = np.array([10.0, 2.0, 10.0, 4.0, 3.0], np.float32)
    out = {k: v.numpy() for k, v in sorb_policy.shortest_path_search(
        start, to_goal, direct, dist, hops, max_dist=3.0).items()}
    # row 0: via node 0: 1 + 2.9 + 1 = 4.9 (s→0→3→g, 3 edges) beats node 1: 2.5 + 3 + 1 = 6.5
    np.testing.assert_allclose(out["route_distance"][[0, 1, 3, 4]], 4.9, rtol=1e-6)
    np.testing.assert_array_equal(out["path_found"], [True, True, False, True, True])
    np.testing.assert_array_equal(out["path_length"], [3, 3, 0, 3, 3])
    # rows 1, 4: the goal is within max_dist (3) and closer than the route: act toward it;
    # row 2: no route (the fallback); row 3: direct 4 < 4.9 but beyond max_dist, not trusted
    np.testing.assert_array_equal(out["used_graph"], [True, False, False, True, False])
    np.testing.assert_array_equal(out["waypoint_index"], [0, -1, -1, 0, -1])
    np.testing.assert_allclose(out["waypoint_distance"], [1.0, 2.0, 10.0, 1.0, 3.0])
    assert np.isinf(out["route_distance"][2])


# -- (c) the policy on a toy maze with a privileged distance --------------------------------------
# 5 × 5 cells, a wall in column 2 except the bottom row: from (0, 0) to (0, 4) the way is down,
# across and up (12 moves), while heading straight for the goal walks into the wall.
SIZE = 5
WALL = {(r, 2) for r in range(SIZE - 1)}
FREE = [(r, c) for r in range(SIZE) for c in range(SIZE) if (r, c) not in WALL]


def _cell_image(r, c):
    img = np.zeros((64, 64, 3), np.uint8)
    img[r * 8:r * 8 + 8, c * 8:c * 8 + 8] = 255
    return img


def _maze_steps():
    """[SIZE², SIZE²] true shortest move counts between cells (BFS), large when walled."""
    n = SIZE * SIZE
    table = np.full((n, n), 99.0, np.float32)
    for start in FREE:
        seen, frontier, k = {start}, [start], 0
        while frontier:
            for cell in frontier:
                table[start[0] * SIZE + start[1], cell[0] * SIZE + cell[1]] = k
            nxt = []
            for r, c in frontier:
                for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                    cell = (r + dr, c + dc)
                    if cell in FREE and cell not in seen:
                        seen.add(cell)
                        nxt.append(cell)
            frontier, k = nxt, k + 1
    return table


def _decode(image):
    """int32 [B, 2]: (row, column) of the white square in uint8 images [B, 64, 64, 3]."""
    x = tf.cast(image[..., 0], tf.float32)
    row = tf.argmax(tf.reduce_sum(x, axis=2), axis=1, output_type=tf.int32) // 8
    col = tf.argmax(tf.reduce_sum(x, axis=1), axis=1, output_type=tf.int32) // 8
    return tf.stack([row, col], axis=1)


class MazeDistance(tf.Module):
    """Privileged SoRB-like distance: max(1, true moves) read off the images (≥ 1 as E[d])."""

    def __init__(self):
        super().__init__()
        self.table = tf.constant(_maze_steps())

    def distance(self, image, goal_image):
        a, b = _decode(image), _decode(goal_image)
        idx = tf.stack([a[:, 0] * SIZE + a[:, 1], b[:, 0] * SIZE + b[:, 1]], axis=1)
        return tf.maximum(tf.gather_nd(self.table, idx), 1.0)


def greedy_action(image, target_image):
    """A local controller: one move toward the target, columns first (blind to walls)."""
    d = _decode(target_image) - _decode(image)
    col = tf.sign(tf.cast(d[:, 1], tf.float32))
    row = tf.where(tf.equal(d[:, 1], 0), tf.sign(tf.cast(d[:, 0], tf.float32)), 0.0)
    zero = tf.zeros_like(col)
    return tf.stack([col, row, zero, zero], axis=1)


def _run_maze(policy, start=(0, 0), goal=(0, SIZE - 1), steps=20, state=None):
    pos, infos = start, []
    state = policy.get_initial_state(1) if state is None else state
    for _ in range(steps):
        obs = {"image": _cell_image(*pos)[None], "goal_image": _cell_image(*goal)[None],
               "joint_pos": np.zeros((1, 7), np.float32), "gripper": np.zeros((1, 2), np.float32)}
        step = policy.action(ts.restart({k: tf.constant(v) for k, v in obs.items()}, 1), state)
        state = step.state
        infos.append({k: v.numpy()[0] for k, v in step.info.items()})
        a = step.action.numpy()[0]
        nxt = (pos[0] + int(round(a[1])), pos[1] + int(round(a[0])))
        if nxt in FREE:
            pos = nxt
        if pos == goal:
            break
    return pos, infos, state


def test_policy_reaches_a_goal_behind_a_wall_along_the_graph():
    model = MazeDistance()
    nodes = np.stack([_cell_image(*cell) for cell in FREE])
    pairwise = model.distance(np.repeat(nodes, len(FREE), 0),
                              np.tile(nodes, (len(FREE), 1, 1, 1))).numpy()
    pairwise = pairwise.reshape(len(FREE), len(FREE))
    policy = sorb_policy.SorbPolicy(TIME_STEP_SPEC, ACTION_SPEC, model.distance, nodes, pairwise,
                                    greedy_action, max_dist=1.5, models=[model])
    pos, infos, _ = _run_maze(policy)
    assert pos == (0, SIZE - 1) and len(infos) == 12, (pos, len(infos))  # the shortest way
    assert all(i["used_graph"] for i in infos[:-1]) and not infos[-1]["used_graph"]
    # the route shrinks by one move per step: s → node ⇝ node → g, 12 edges at the start (the
    # last node is the goal's neighbour); 2 edges (s → its own node → g) at the end
    assert [int(i["path_length"]) for i in infos] == list(range(12, 1, -1)) + [2]
    np.testing.assert_allclose([i["waypoint_distance"] for i in infos], 1.0)
    # Without the bottom row the two halves are disconnected: no route, so it acts toward the
    # goal (into the wall) and says so.
    keep = [k for k, (r, _) in enumerate(FREE) if r < SIZE - 1]
    bad = {"image": _cell_image(0, 0)[None], "goal_image": np.zeros((1, 32, 32, 3), np.uint8),
           "joint_pos": np.zeros((1, 7), np.float32), "gripper": np.zeros((1, 2), np.float32)}
    with pytest.raises(ValueError, match=r"observation\['goal_image'\] must be uint8 "
                                         r"\[B, 64, 64, 3\], got \[1, 32, 32, 3\] uint8"):
        policy.action(ts.restart({k: tf.constant(v) for k, v in bad.items()}, 1),
                      policy.get_initial_state(1))
    cut = sorb_policy.SorbPolicy(TIME_STEP_SPEC, ACTION_SPEC, model.distance, nodes[keep],
                                 pairwise[np.ix_(keep, keep)], greedy_action, max_dist=1.5,
                                 models=[model])
    pos, infos, _ = _run_maze(cut, steps=4)
    assert pos == (0, 1)  # stuck at the wall
    assert not any(i["path_found"] or i["used_graph"] for i in infos)
    assert all(i["waypoint_index"] == -1 and i["path_length"] == 0 for i in infos)


def test_goal_distances_are_computed_once_per_goal_and_again_for_a_new_goal():
    model = MazeDistance()
    nodes = np.stack([_cell_image(*cell) for cell in FREE])
    pairwise = model.distance(np.repeat(nodes, len(FREE), 0),
                              np.tile(nodes, (len(FREE), 1, 1, 1))).numpy()
    pairwise = pairwise.reshape(len(FREE), len(FREE))
    pairs = tf.Variable(0, dtype=tf.int32)

    def counted(image, goal_image):
        pairs.assign_add(tf.shape(image)[0])
        return model.distance(image, goal_image)

    policy = sorb_policy.SorbPolicy(TIME_STEP_SPEC, ACTION_SPEC, counted, nodes, pairwise,
                                    greedy_action, max_dist=1.5, models=[model])
    n = len(FREE)
    _, _, state = _run_maze(policy, steps=3)
    assert int(pairs.numpy()) == 3 * (n + 1) + n  # node → goal distances once, at the start
    # Another goal, carrying the same policy state: its distances are computed, and it is
    # reached along the graph.
    before = int(pairs.numpy())
    pos, infos, _ = _run_maze(policy, start=(0, 0), goal=(2, 0), steps=8, state=state)
    assert pos == (2, 0)
    assert int(pairs.numpy()) - before == len(infos) * (n + 1) + n


def test_empty_graph_and_bad_specs_fail_at_construction():
    model = MazeDistance()
    nodes = np.stack([_cell_image(0, 0), _cell_image(4, 4)])
    far = np.array([[1.0, 8.0], [8.0, 1.0]], np.float32)
    with pytest.raises(sorb_policy.EmptyGraphError, match=r"max_dist = 4\.0 steps.*min 8"):
        sorb_policy.SorbPolicy(TIME_STEP_SPEC, ACTION_SPEC, model.distance, nodes, far,
                               greedy_action, max_dist=4.0)
    small_goal = dict(TIME_STEP_SPEC.observation, goal_image=tensor_spec.BoundedTensorSpec(
        (32, 32, 3), tf.uint8, 0, 255))
    with pytest.raises(ValueError,
                       match=r"observation\['goal_image'\] must be uint8 \[64, 64, 3\]"):
        sorb_policy.SorbPolicy(TIME_STEP_SPEC._replace(observation=small_goal), ACTION_SPEC,
                               model.distance, nodes, far, greedy_action, max_dist=9.0)
    with pytest.raises(ValueError, match=r"graph images must be uint8 \[N, 64, 64, 3\]"):
        sorb_policy.SorbPolicy(TIME_STEP_SPEC, ACTION_SPEC, model.distance, nodes[:, :32], far,
                               greedy_action, max_dist=9.0)
    with pytest.raises(ValueError, match=r"graph distances are \[3, 3\] for 2 graph images"):
        sorb_policy.SorbPolicy(TIME_STEP_SPEC, ACTION_SPEC, model.distance, nodes,
                               np.ones((3, 3)), greedy_action, max_dist=9.0)


# -- (b) training on a chain, (d) export, (e) errors -------------------------------------------
def test_shifted_target_moves_mass_one_bin_and_keeps_the_tail():
    probs = tf.constant([[0.1, 0.2, 0.3, 0.4], [0.25, 0.25, 0.25, 0.25]])
    out = sorb.shifted_target(probs, tf.constant([False, True])).numpy()
    np.testing.assert_allclose(out, [[0.0, 0.1, 0.2, 0.7], [1.0, 0.0, 0.0, 0.0]], rtol=1e-6)
    np.testing.assert_allclose(sorb.expected_distance(tf.math.log(probs)).numpy(), [3.0, 2.5],
                               rtol=1e-6)


def test_critic_loss_known_answer_with_constant_networks():
    """Target and online critics made constant (zero kernels, biases = log-probabilities)."""
    model = sorb.SorbModel(sorb.sorb_settings(encoder_filters=(4, 8), critic_fc_layers=1,
                                              actor_fc_layers=1, fc_units=8, num_bins=4))
    p, q = np.array([0.1, 0.2, 0.3, 0.4]), np.array([0.4, 0.3, 0.2, 0.1])
    for net, probs in ((model.target_critic, p), (model.critic, q)):
        out = net._mlp._out  # pylint: disable=protected-access
        out.kernel.assign(tf.zeros_like(out.kernel))
        out.bias.assign(np.log(probs).astype(np.float32))
    rng = np.random.default_rng(0)
    img = lambda: rng.integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    batch = {"observation": img(), "next_observation": img(), "goal": img(),
             "action": rng.uniform(-1, 1, (4, 4)).astype(np.float32),
             "reward": np.array([0.0, 0.0, 0.0, 1.0], np.float32)}
    out = {k: float(v) for k, v in model.critic_loss(batch, training=False).items()}
    shifted = np.array([0.0, 0.1, 0.2, 0.7])  # p one bin on, "4 or more" keeps its mass
    one_hot = np.array([1.0, 0.0, 0.0, 0.0])  # reached: one step
    ce = lambda t: -np.sum(t * np.log(q))
    assert out["critic_loss"] == pytest.approx((3 * ce(shifted) + ce(one_hot)) / 4, rel=1e-5)
    entropy = -np.sum(shifted[1:] * np.log(shifted[1:]))
    assert out["kl"] == pytest.approx((3 * (ce(shifted) - entropy) + ce(one_hot)) / 4, rel=1e-5)
    assert out["target_distance"] == pytest.approx((3 * 3.6 + 1.0) / 4, rel=1e-5)
    assert out["expected_distance"] == pytest.approx(2.0, rel=1e-5)  # Σ q_k (k + 1)
    assert out["reached_fraction"] == 0.25


def test_train_step_actor_updates_lower_the_expected_distance():
    """With the critic frozen (learning rate 0, no batch-norm), 15 actor updates lower E[d] at
    π(s, g)."""
    model = sorb.SorbModel(sorb.sorb_settings(encoder_filters=(4, 8), batch_norm_layers=(),
                                              critic_fc_layers=1, actor_fc_layers=1, fc_units=8,
                                              critic_fc_norm="none", num_bins=4))
    rng = np.random.default_rng(1)
    img = lambda: tf.constant(rng.integers(0, 256, (16, 64, 64, 3), dtype=np.uint8))
    batch = {"observation": img(), "next_observation": img(), "goal": img(),
             "action": tf.constant(rng.uniform(-1, 1, (16, 4)).astype(np.float32)),
             "reward": tf.zeros([16])}
    step = tf.Variable(0, dtype=tf.int64)
    train = sorb_training.build_train_step(model, lambda: batch, step,
                                           tf.keras.optimizers.Adam(0.0),
                                           tf.keras.optimizers.Adam(0.05), actor_update_period=1)
    obs = {"image": batch["observation"], "goal_image": batch["goal"]}

    def mean_distance():  # E[d] of the critic at the actor's actions (as the actor trains)
        action, _ = model.actor(obs, training=True)
        return float(tf.reduce_mean(sorb.expected_distance(model.critic((obs, action))[0])))

    before = mean_distance()
    for _ in range(15):
        train()
        step.assign_add(1)
    after = mean_distance()
    # test seeds 0-3: E[d] falls by 0.026-0.041 (e.g. 2.611 → 2.583); without actor updates
    # it stays exactly where it was, with the sign flipped it rises
    assert after < before - 0.01, (before, after)


CHAIN_SETTINGS = dict(encoder_filters=(8, 16), critic_fc_layers=2, actor_fc_layers=1,
                      fc_units=32, graph_size=20)


@pytest.fixture(scope="module")
def chain_run(tmp_path_factory):
    """A SoRB run trained on 5-position random walks (300 steps), its data and a fixed batch."""
    gin.clear_config()
    for k, v in CHAIN_SETTINGS.items():
        gin.bind_parameter(f"sorb_settings.{k}", v)
    gin.bind_parameter("distance_dataset.p", 0.2)  # longer hindsight offsets
    try:
        arrays = chain_arrays(num_episodes=60, length=8, positions=5)
        batch = next(iter(pipelines.distance_dataset(arrays, batch_size=256,
                                                     negatives_key="none", seed=7)))
        untrained = sorb.SorbModel(sorb.sorb_settings())
        root = str(tmp_path_factory.mktemp("sorb") / "chain")
        result = sorb_training.train_sorb(
            root, arrays=arrays, total_steps=300, batch_size=64, negatives_key="none",
            learning_rate=1e-3, target_update_tau=0.05, checkpoint_every=300, log_every=300,
            summary_every=50, bn_recalibration_batches=10)
        yield {"root": root, "arrays": arrays, "batch": batch, "untrained": untrained,
               "result": result}
    finally:
        gin.clear_config()


def test_distributional_loss_falls_and_distances_order_the_chain(chain_run):
    result = chain_run["result"]
    assert result["steps"] == 300 and result["graph_rebuilt"]
    model = checkpoints.load_sorb(chain_run["root"])
    # the cross-entropy to each model's own target distribution, on the same held batch
    before = chain_run["untrained"].critic_loss(chain_run["batch"], training=False,
                                                target_policy_noise=0.0)
    after = model.critic_loss(chain_run["batch"], training=False, target_policy_noise=0.0)
    # 6 runs (train seeds 0-5): cross-entropy 2.28-2.41 → 1.63-1.76, KL 0.81-0.94 → 0.43-0.55
    assert float(after["critic_loss"]) < float(before["critic_loss"]) - 0.25, (before, after)
    assert float(after["kl"]) < float(before["kl"]) - 0.1, (before, after)
    pairs = [(s, g) for s in range(5) for g in range(5) if s != g]
    d = model.distance(np.stack([bar_image(s) for s, _ in pairs]),
                       np.stack([bar_image(g) for _, g in pairs])).numpy()
    true = np.array([abs(s - g) for s, g in pairs])
    rho = stats.spearmanr(d, true).correlation
    by_steps = [float(d[true == k].mean()) for k in range(1, 5)]
    # the same 6 runs: ρ 0.63-0.91, by true steps e.g. [3.0, 5.4, 5.6, 4.7] or
    # [2.7, 4.7, 5.5, 5.4]; the untrained models' ρ: -0.18 to 0.40
    assert rho >= 0.5, (rho, by_steps)
    assert by_steps[0] < min(by_steps[2], by_steps[3]), by_steps
    # the saved graph: seeded training observations and their distances under this checkpoint
    graph = model.graph
    assert graph.images.shape == (20, 64, 64, 3) and graph.checkpoint_step == 300
    np.testing.assert_array_equal(graph.images, chain_run["arrays"].images[graph.indices])
    np.testing.assert_allclose(graph.distances[3, :5],
                               model.distance(graph.images[[3] * 5], graph.images[:5]),
                               rtol=1e-4)
    np.testing.assert_array_equal(graph.indices, sorb_training.graph_nodes(
        chain_run["arrays"], 20, seed=0))


def test_policy_from_a_run_exports_and_the_saved_model_acts(chain_run, tmp_path):
    model = checkpoints.load_sorb(chain_run["root"])
    small = baselines.baseline_settings(encoder_filters=(4, 8), gcbc_fc_layers=1, gcbc_units=8)
    gcbc = baselines.GCBCPolicy(small)
    gcbc(np.zeros((1, 64, 64, 3), np.uint8), np.zeros((1, 64, 64, 3), np.uint8))
    policy = sorb_policy.make_sorb_policy(TIME_STEP_SPEC, ACTION_SPEC, model, gcbc)
    assert policy.num_nodes == 20 and policy.max_dist == 4.0
    images = np.stack([bar_image(p) for p in (0, 1, 4)])
    goals = np.stack([bar_image(p) for p in (4, 4, 0)])
    obs = {"image": images, "goal_image": goals, "joint_pos": np.zeros((3, 7), np.float32),
           "gripper": np.zeros((3, 2), np.float32)}
    time_step = ts.restart({k: tf.constant(v) for k, v in obs.items()}, batch_size=3)
    step = policy.action(time_step, policy.get_initial_state(3))
    action = step.action.numpy()
    assert action.shape == (3, 4) and np.all(np.abs(action) <= 1.0)
    # the action is GCBC's toward the reported target (graph node or goal)
    idx = step.info["waypoint_index"].numpy()
    target = np.where((idx >= 0)[:, None, None, None], model.graph.images[np.maximum(idx, 0)],
                      goals)
    np.testing.assert_allclose(action, gcbc.action(images, target).numpy(), atol=1e-5)
    path = str(tmp_path / "sorb_policy")
    policy_saver.PolicySaver(policy, batch_size=None).save(path)
    loaded = tf.saved_model.load(path)
    out = loaded.action(time_step, loaded.get_initial_state(3))
    np.testing.assert_allclose(out.action.numpy(), action, atol=1e-5)
    for k in ("used_graph", "path_found", "path_length", "waypoint_index"):
        np.testing.assert_array_equal(out.info[k].numpy(), step.info[k].numpy())


def test_bad_inputs_and_other_run_dirs_fail_clearly(chain_run, tmp_path):
    model = chain_run["untrained"]
    img = np.zeros((2, 64, 64, 3), np.uint8)
    with pytest.raises(ValueError, match=r"goal image must be \[B,64,64,3\].*\[2, 32, 32, 3\]"):
        model.distance(img, img[:, :32, :32])
    with pytest.raises(ValueError, match=r"goal images must be \[B,64,64,3\]"):
        model.pairwise_distances(img, img[:, :32])
    # a run directory of another kind
    other = str(tmp_path / "distance_run")
    run_config.check_or_write_config(other, "distance", {"method": "gcbc"})
    with pytest.raises(run_config.ConfigMismatchError, match="holds a 'distance' model, not a "
                                                             "'sorb' model"):
        checkpoints.load_sorb(other)
    with pytest.raises(run_config.ConfigMismatchError, match="not a 'sorb' model"):
        sorb_training.train_sorb(other, arrays=chain_run["arrays"], total_steps=1)
    assert sorted(os.listdir(other)) == ["config.json"]  # nothing written into the other run
    with pytest.raises(FileNotFoundError, match="not a training run directory"):
        checkpoints.load_sorb(str(tmp_path / "nothing"))
    # the trained run resumed with other model settings: refused, naming the setting
    gin.clear_config()
    try:
        for k, v in dict(CHAIN_SETTINGS, num_bins=5).items():
            gin.bind_parameter(f"sorb_settings.{k}", v)
        with pytest.raises(run_config.ConfigMismatchError,
                           match=r"num_bins: 10 \(checkpoint\) vs 5 \(requested\)"):
            sorb_training.train_sorb(chain_run["root"], arrays=chain_run["arrays"],
                                     total_steps=300, negatives_key="none")
        gin.bind_parameter("sorb_settings.graph_size", 10_000)
        with pytest.raises(ValueError, match="graph_size = 10000 exceeds the 480 observations"):
            sorb_training.train_sorb(str(tmp_path / "big"), arrays=chain_run["arrays"])
    finally:
        gin.clear_config()
    # a graph from another checkpoint is refused on load
    graph = sorb.read_graph(chain_run["root"])
    moved = str(tmp_path / "stale")
    os.makedirs(moved)
    for name in ("config.json",):
        with open(os.path.join(chain_run["root"], name)) as f, \
                open(os.path.join(moved, name), "w") as g:
            g.write(f.read())
    import shutil
    shutil.copytree(os.path.join(chain_run["root"], "ckpt"), os.path.join(moved, "ckpt"))
    with pytest.raises(FileNotFoundError, match="No SoRB graph"):
        checkpoints.load_sorb(moved)
    graph.checkpoint_step = 299
    sorb.write_graph(moved, graph)
    with pytest.raises(ValueError, match="does not belong to the latest checkpoint"):
        checkpoints.load_sorb(moved)
