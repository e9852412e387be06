"""Distance agent (CQL-TD3), Q → distance conversion, training loop and loaders (tiny, CPU)."""
import json
import math
import os

import gin
import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

from mbold_tf.agents import checkpoints
from mbold_tf.agents import cql_td3_agent
from mbold_tf.agents import distances
from mbold_tf.data import rlds
from mbold_tf.models import distance_networks as dn
from mbold_tf.training import distance as td
from mbold_tf.utils import batch_norm
from mbold_tf.utils import training as training_lib

TINY = dict(encoder_filters=(4, 8), kernel_size=4, strides=2, batch_norm_layers=(2,),
            critic_fc_layers=1, actor_fc_layers=2, fc_units=16)


# -- Q -> distance -------------------------------------------------------------------------------
@pytest.mark.parametrize("gamma", [0.8, 0.5, 0.95])
def test_q_to_distance_exact_values(gamma):
    d = np.arange(1, 12, dtype=np.float64)
    # indicator: Q = γ^d (d = steps after the action, the paper's d = log_γ Q)
    np.testing.assert_allclose(distances.q_to_distance(gamma ** d, "indicator", gamma), d,
                               rtol=1e-4)
    # ten_one: Q = Σ_{k<d-1} γ^k · 1 + γ^(d-1) · 10, summed explicitly
    q = np.array([sum(gamma ** k for k in range(int(n) - 1)) + 10 * gamma ** (n - 1) for n in d])
    np.testing.assert_allclose(distances.q_to_distance(q, "ten_one", gamma), d, rtol=1e-4,
                               atol=1e-4)
    np.testing.assert_allclose(distances.distance_to_q(d, "ten_one", gamma), q, rtol=1e-5)


def test_q_to_distance_matches_design_formula_and_never_nan():
    q = np.array([5.0 + 5.0 * 0.8 ** 2, 10.0])
    np.testing.assert_allclose(distances.q_to_distance(q, "ten_one", 0.8),
                               1 + np.log((q - 5) / 5) / np.log(0.8), rtol=1e-5)
    for scheme in distances.REWARD_SCHEMES:
        out = distances.q_to_distance([-3.0, 0.0, 4.9, 11.0, 1e9, np.nan], scheme, 0.8).numpy()
        assert np.all(np.isfinite(out)), (scheme, out)
        assert np.all(out >= (0.0 if scheme == "indicator" else 1.0) - 1e-6)
    assert distances.q_to_distance([1.0], "indicator", 0.8).numpy()[0] == pytest.approx(0.0)
    assert distances.q_to_distance([10.0], "ten_one", 0.8).numpy()[0] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="indicator.*ten_one"):
        distances.q_to_distance([1.0], "binary", 0.8)
    with pytest.raises(ValueError, match="gamma"):
        distances.q_to_distance([1.0], "ten_one", 0.9)


# -- networks -------------------------------------------------------------------------------------
def _expected_params(s, action_dim=4):
    conv, c_in = 0, 6
    for i, f in enumerate(s["encoder_filters"]):
        conv += s["kernel_size"] ** 2 * c_in * f + f
        if (i + 1) in s["batch_norm_layers"] and i < len(s["encoder_filters"]) - 1:
            conv += 4 * f
        c_in = f
    side = 64 // s["strides"] ** len(s["encoder_filters"])
    feat = side * side * c_in

    def mlp(n_in, layers, out, norm="batch"):
        per_norm = {"batch": 4, "layer": 2, "none": 0}[norm] * s["fc_units"]
        total = 0
        for _ in range(layers):
            total += n_in * s["fc_units"] + s["fc_units"] + per_norm
            n_in = s["fc_units"]
        return total + n_in * out + out
    return conv + mlp(feat, s["actor_fc_layers"], action_dim), \
        conv + mlp(feat + action_dim, s["critic_fc_layers"], 1, s.get("critic_fc_norm", "batch"))


@pytest.mark.parametrize("settings", [TINY, dict(TINY, critic_fc_norm="layer"),
                                      dn.network_settings()], ids=["tiny", "tiny_ln", "paper"])
def test_network_shapes_and_parameter_counts(settings):
    settings = dn.network_settings(**settings)
    actor, c1, c2 = dn.build_networks(settings)
    want_actor, want_critic = _expected_params(settings)
    count = lambda net: sum(int(np.prod(v.shape)) for v in net.variables)
    assert count(actor) == want_actor
    assert count(c1) == count(c2) == want_critic
    if settings["critic_fc_layers"] == 6:  # App. A.1: encoder output 4×4×64 = 1024 features
        assert want_critic - _expected_params(dict(settings, critic_fc_layers=0))[1] == \
            (1028 * 128 + 128 * 5) + 5 * (128 * 128 + 128 * 5) - 1028 * 1 + 128
    rng = np.random.default_rng(0)
    obs = {"image": rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8),
           "goal_image": rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8),
           "joint_pos": np.zeros((3, 7), np.float32)}  # extra keys are ignored
    a, _ = actor(obs)
    assert a.shape == (3, 4) and np.all(np.abs(a) <= 1.0)
    q, _ = c1((obs, a))
    assert q.shape == (3,)
    q_multi, _ = c1((obs, tf.stack([a, -a], 1)))
    assert q_multi.shape == (3, 2)
    np.testing.assert_allclose(q_multi[:, 0], q, rtol=1e-5, atol=1e-5)
    obs_f = {k: obs[k].astype(np.float32) / 255.0 for k in dn.IMAGE_KEYS}
    np.testing.assert_allclose(c1((obs_f, a))[0], q, rtol=1e-5, atol=1e-5)


def test_networks_reject_bad_inputs():
    actor, c1, _ = dn.build_networks(dn.network_settings(**TINY))
    img = np.zeros((2, 64, 64, 3), np.uint8)
    with pytest.raises(KeyError, match="goal_image"):
        actor({"image": img})
    with pytest.raises(ValueError, match=r"goal image must be \[\.\.\., 64, 64, 3\]"):
        actor({"image": img, "goal_image": np.zeros((2, 32, 32, 3), np.uint8)})
    with pytest.raises(TypeError, match="uint8.*float32"):
        actor({"image": img, "goal_image": img.astype(np.int32)})
    ld = distances.LearnedDistance(actor, c1, c1)
    with pytest.raises(ValueError, match=r"goal image must be \[B,64,64,3\] uint8 or float32, "
                                         r"got \[2, 64, 64\] uint8"):
        ld.distance(img, img[..., 0])
    with pytest.raises(ValueError, match=r"image must be \[B,64,64,3\].*int32"):
        ld.q_values(img.astype(np.int32), img)
    with pytest.raises(ValueError, match=r"action must be \[B, 4\]"):
        ld.q_values(img, img, np.zeros((2, 3), np.float32))
    d_u8 = ld.distance(img + 100, img)
    d_f = ld.distance((img + 100).astype(np.float32) / 255, img.astype(np.float32) / 255)
    assert d_u8.shape == (2,) and d_u8.dtype == tf.float32
    np.testing.assert_allclose(d_u8, d_f, rtol=1e-4, atol=1e-4)


# The training settings build_agent reads from a run's record (train_distance writes them).
AGENT_SETTINGS = {"gamma": 0.8, "reward_scheme": "indicator", "learning_rate": 1e-3,
                  "cql_tau": 3.0}


# -- the agent ------------------------------------------------------------------------------------
def _toy_batch(b=32, seed=0):
    rng = np.random.default_rng(seed)
    img = lambda: rng.integers(0, 256, (b, 64, 64, 3), dtype=np.uint8)
    reached = np.arange(b) % 4 == 0
    return {"observation": img(), "next_observation": img(), "goal": img(),
            "action": rng.uniform(0.5, 1.0, (b, 4)).astype(np.float32),
            "reward": reached.astype(np.float32), "discount": 1.0 - reached.astype(np.float32)}


@pytest.fixture(scope="module")
def toy_agent():
    settings = {"method": "cql_td3", "action_dim": 4, "networks": dn.network_settings(**TINY),
                **AGENT_SETTINGS}
    agent, _ = td.build_agent(settings)
    traj = cql_td3_agent.trajectory_from_batch(
        {k: tf.constant(v) for k, v in _toy_batch().items()})
    step = tf.function(lambda: agent.train(traj))
    return agent, step


def test_trajectory_from_batch_is_a_terminating_transition():
    batch = {k: tf.constant(v) for k, v in _toy_batch(8).items()}
    traj = cql_td3_agent.trajectory_from_batch(batch)
    assert traj.observation["image"].shape == (8, 2, 64, 64, 3)
    np.testing.assert_array_equal(traj.observation["goal_image"][:, 1], batch["goal"])
    np.testing.assert_array_equal(traj.reward[:, 0], batch["reward"])
    # terminal (reached) transitions: discount 0 and the next step is LAST
    np.testing.assert_array_equal(traj.next_step_type[:, 0] == 2, batch["discount"] == 0)


def test_lagrange_multiplier_moves_with_the_gap(toy_agent):
    agent, step = toy_agent
    agent.cql_tau.assign(-100.0)  # gap > τ: α must grow
    before = float(agent.log_alpha.numpy())
    info = step().extra
    assert float(info.cql_gap) > -100.0
    assert float(agent.log_alpha.numpy()) > before
    # gap < τ: α must shrink. log α has an Adam optimizer whose first moment still holds 90 % of
    # the last (upward) gradient, so the new gap - τ must outweigh it clearly: τ = 1e4 does, for
    # any gap the tiny critic can produce (|gap| << 1e3); τ = +100 did not always (CI, stop 11).
    agent.cql_tau.assign(1e4)
    before = float(agent.log_alpha.numpy())
    info = step().extra
    assert float(info.cql_gap) < 1e3
    assert float(agent.log_alpha.numpy()) < before
    assert np.isfinite(float(info.cql_alpha)) and float(info.cql_alpha) > 0


def _agent_with(**bindings):
    """A tiny CqlTd3Agent with CqlTd3Agent gin bindings (cleared again before returning)."""
    tf.random.set_seed(5)
    settings = {"method": "cql_td3", "action_dim": 4, "networks": dn.network_settings(**TINY),
                **AGENT_SETTINGS}
    try:
        for k, v in bindings.items():
            gin.bind_parameter(f"CqlTd3Agent.{k}", v)
        agent, _ = td.build_agent(settings)
    finally:
        gin.clear_config()
    return agent


def test_cql_action_set_holds_uniform_and_actor_actions_with_their_densities():
    agent = _agent_with(num_cql_actions=5, num_policy_cql_actions=3, cql_policy_noise=0.2)
    batch = _toy_batch(8)
    obs = {"image": tf.constant(batch["observation"]), "goal_image": tf.constant(batch["goal"])}
    acts, neg_logp = agent._cql_actions(obs, tf.constant(batch["action"]))
    acts, neg_logp = acts.numpy(), neg_logp.numpy()
    assert acts.shape == (8, 8, 4) and neg_logp.shape == (8, 8)
    assert np.all(np.abs(acts) <= 1.0)
    np.testing.assert_allclose(neg_logp[:, :5], 4 * math.log(2.0), rtol=1e-6)  # U([-1, 1]^4)
    mu = agent.actor_network(obs)[0].numpy()
    eps = acts[:, 5:] - mu[:, None]
    inside = np.all(np.abs(acts[:, 5:]) < 1.0, axis=-1)  # clipped ones carry the unclipped ε
    want = 0.5 * np.sum(eps ** 2, -1) / 0.04 + 4 * (math.log(0.2) + 0.5 * math.log(2 * math.pi))
    np.testing.assert_allclose(neg_logp[:, 5:][inside], want[inside], rtol=1e-4, atol=1e-4)
    assert np.all(np.linalg.norm(eps, axis=-1) < 2.0)  # around the actor's action


def _actor_gap_after_training(bc_weight, steps=60):
    """Mean ‖π(s, g) − a_data‖² after ``steps`` agent updates on the toy batch."""
    agent = _agent_with(actor_bc_weight=bc_weight)
    batch = _toy_batch()
    traj = cql_td3_agent.trajectory_from_batch({k: tf.constant(v) for k, v in batch.items()})
    step = tf.function(lambda: agent.train(traj))
    for _ in range(steps):
        step()
    obs = {"image": tf.constant(batch["observation"]), "goal_image": tf.constant(batch["goal"])}
    # training-mode batch-norm: the actor's moving averages lag after a few dozen updates
    a = agent.actor_network(obs, training=True)[0].numpy()
    return float(np.mean(np.sum((a - batch["action"]) ** 2, -1)))


def test_actor_bc_weight_keeps_the_actor_near_data_actions():
    # same initial weights (seed 5); data actions lie in [0.5, 1]^4, away from the initial actor
    plain, bc = _actor_gap_after_training(0.0), _actor_gap_after_training(0.25)
    # measured (60 steps, CPU kernels vary run to run): plain 2.7-3.2, β = 0.25 1.58, β = 2.5 1.67
    assert bc < 0.75 * plain, (plain, bc)
    with pytest.raises(ValueError, match="actor_bc_weight"):
        _agent_with(actor_bc_weight=-1.0)


def test_reference_batch_norm_uses_data_rows_only():
    # statistics of the first k rows normalise every row and alone move the averages
    bn = dn.ReferenceBatchNorm(momentum=0.5, epsilon=1e-6)
    rng = np.random.default_rng(0)
    data = rng.normal(2.0, 3.0, (32, 5)).astype(np.float32)
    extra = rng.normal(-50.0, 10.0, (320, 5)).astype(np.float32)
    x = tf.constant(np.concatenate([data, extra]))
    y = bn(x, training=True, reference_rows=32).numpy()
    mu, sd = data.mean(0), data.std(0)
    np.testing.assert_allclose(y[:32], (data - mu) / sd, atol=1e-3)
    np.testing.assert_allclose(y[32:], (extra - mu) / sd, rtol=1e-3, atol=1e-2)
    np.testing.assert_allclose(bn.moving_mean.numpy(), 0.5 * mu, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(), 0.5 + 0.5 * sd ** 2, rtol=1e-4)
    # without reference rows it is Keras batch-norm over all rows
    z = bn(x, training=True).numpy()
    np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-3)


def test_recalibrate_sets_moving_statistics_to_the_batch_average():
    layer = tf.keras.layers.Dense(3, kernel_initializer="ones")
    bn = tf.keras.layers.BatchNormalization(momentum=0.99)
    rng = np.random.default_rng(0)
    batches = [tf.constant(rng.normal(k, 1.0 + k, (40, 2)), tf.float32) for k in range(3)]
    model = tf.keras.Sequential([layer, bn])
    model(batches[0], training=False)
    weights = [w.numpy().copy() for w in model.trainable_weights]
    n = batch_norm.recalibrate([model], lambda b: model(b, training=True), batches)
    assert n == 3 and batch_norm.batch_norm_layers([model]) == [bn]
    h = [layer(b).numpy() for b in batches]
    np.testing.assert_allclose(bn.moving_mean.numpy(), np.mean([x.mean(0) for x in h], 0),
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(bn.moving_variance.numpy(), np.mean([x.var(0) for x in h], 0),
                               rtol=1e-3)
    assert bn.momentum == 0.99  # restored
    for w, before in zip(model.trainable_weights, weights):
        np.testing.assert_array_equal(w.numpy(), before)


def _tiny_critic_and_inputs(seed: int, batch: int):
    """A tiny critic, a random uint8 observation dict [batch], actions [batch, 4], the rng."""
    tf.random.set_seed(seed)
    _, critic, _ = dn.build_networks(dn.network_settings(**TINY))
    rng = np.random.default_rng(seed)
    obs = {k: tf.constant(rng.integers(0, 255, (batch, 64, 64, 3)), tf.uint8)
           for k in ("image", "goal_image")}
    return critic, obs, tf.constant(rng.uniform(-1, 1, (batch, 4)), tf.float32), rng


def test_recalibrated_critic_infers_as_it_trains():
    # stale moving averages (as after weights drift) make inference differ from training;
    # recalibrating on one batch makes inference-mode Q equal training-mode Q on it
    critic, obs, a, _ = _tiny_critic_and_inputs(seed=2, batch=16)
    for layer in batch_norm.batch_norm_layers([critic]):
        layer.moving_mean.assign(layer.moving_mean + 0.5)
    q_train = critic((obs, a), training=True)[0].numpy()
    stale = np.abs(critic((obs, a), training=False)[0].numpy() - q_train).mean()
    batch_norm.recalibrate([critic], lambda b: critic(b, training=True), [(obs, a)])
    fresh = np.abs(critic((obs, a), training=False)[0].numpy() - q_train).mean()
    assert fresh < 1e-3 < stale, (fresh, stale)


def test_critic_joint_pass_matches_separate_inference_calls():
    # data_and_extra_q at inference equals two plain calls; training rows are data-normalised
    critic, obs, a, rng = _tiny_critic_and_inputs(seed=1, batch=6)
    extra = tf.constant(rng.uniform(-1, 1, (6, 3, 4)), tf.float32)
    q_data, q_extra = critic.data_and_extra_q(obs, a, extra, training=False)
    np.testing.assert_allclose(q_data.numpy(), critic((obs, a))[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(q_extra.numpy(), critic((obs, extra))[0].numpy(), atol=1e-5)
    # with the extra actions equal to the data actions, training mode gives them equal Q
    same = tf.repeat(a[:, None], 3, axis=1)
    q_data, q_same = critic.data_and_extra_q(obs, a, same, training=True)
    np.testing.assert_allclose(q_same.numpy(), np.repeat(q_data.numpy()[:, None], 3, 1),
                               atol=1e-5)


def _gap_after_training(method, steps=60):
    """Mean Q(s, a_data) − mean Q(s, a_uniform) of critic 1 after ``steps`` updates on a toy batch."""
    tf.random.set_seed(7)  # the same initial weights for both methods
    settings = {"method": method, "action_dim": 4, "networks": dn.network_settings(**TINY),
                **AGENT_SETTINGS}
    agent, (actor, critic1, critic2) = td.build_agent(settings)
    if method == "cql_td3":
        agent.cql_tau.assign(-5.0)  # keep the penalty active
        agent.log_alpha.assign(2.0)  # α ≈ 7.4: the CQL term dominates the TD loss
    batch = _toy_batch()
    traj = cql_td3_agent.trajectory_from_batch({k: tf.constant(v) for k, v in batch.items()})
    step = tf.function(lambda: agent.train(traj))
    for _ in range(steps):
        step()
    # Q as the agent's CQL term sees it: one training-mode pass whose batch-norm statistics come
    # from the data rows (inference-mode moving averages would lag after a few dozen updates)
    rng = np.random.default_rng(3)
    obs = {"image": tf.constant(batch["observation"]), "goal_image": tf.constant(batch["goal"])}
    rand = tf.constant(rng.uniform(-1, 1, (len(batch["action"]), 10, 4)), tf.float32)
    q_data, q_rand = critic1.data_and_extra_q(obs, tf.constant(batch["action"]), rand,
                                              training=True)
    return float(q_data.numpy().mean() - q_rand.numpy().mean())


def test_cql_lowers_q_of_random_actions():
    # same initial weights and batch; only the CQL term differs
    gap_td3 = _gap_after_training("td3")
    gap_cql = _gap_after_training("cql_td3")
    # data actions lie in [0.5, 1]^4; TD3 leaves Q(data) − Q(uniform) near 0 (measured −0.06
    # to 0.14), CQL opens it (measured 3.6 to 4.0 with the earlier all-rows batch-norm pass)
    assert gap_cql > gap_td3 + 1.0, (gap_td3, gap_cql)
    assert gap_cql > 0, gap_cql  # data actions above random ones


# -- training on a chain --------------------------------------------------------------------------
def chain_arrays(num_episodes=60, length=10, positions=8, seed=0, walk=True):
    """Random walks on a chain: the image shows a bar at the position; action[0] > 0 → +1.

    ``walk=False``: every episode starts at 0 and always moves +1 (position = time).
    """
    rng = np.random.default_rng(seed)
    images, actions, proprio = [], [], []
    for _ in range(num_episodes):
        pos = int(rng.integers(positions)) if walk else 0
        for t in range(length):
            img = np.zeros((64, 64, 3), np.uint8)
            img[:, pos * 8:pos * 8 + 8] = 255
            a = rng.uniform(-1, 1, 4).astype(np.float32)
            if not walk:
                a[0] = abs(a[0]) + 1e-3
            images.append(img)
            actions.append(a)
            proprio.append(np.array([pos, rng.normal()], np.float32))
            pos = int(np.clip(pos + (1 if a[0] > 0 else -1), 0, positions - 1))
    n = num_episodes
    return rlds.EpisodeArrays(
        images=np.stack(images), actions=np.stack(actions), proprio=np.stack(proprio),
        episode_start=np.arange(n, dtype=np.int64) * length,
        episode_length=np.full(n, length, np.int64), episode_ids=np.arange(n, dtype=np.int64),
        privileged={})


def bar_image(pos):
    img = np.zeros((64, 64, 3), np.uint8)
    img[:, pos * 8:pos * 8 + 8] = 255
    return img


@pytest.fixture
def tiny_gin():
    gin.clear_config()
    gin.bind_parameter("network_settings.encoder_filters", (8, 16))
    gin.bind_parameter("network_settings.critic_fc_layers", 2)
    gin.bind_parameter("network_settings.actor_fc_layers", 1)
    gin.bind_parameter("network_settings.fc_units", 32)
    # faster target networks: values must propagate over 4 bootstrapping steps in 300 updates
    gin.bind_parameter("CqlTd3Agent.target_update_tau", 0.05)
    gin.bind_parameter("CqlTd3Agent.target_update_period", 1)
    yield
    gin.clear_config()


def test_learned_distance_orders_chain_states(tmp_path, tiny_gin):
    gin.bind_parameter("distance_dataset.p", 0.2)  # longer hindsight offsets: 5-step paths
    arrays = chain_arrays(num_episodes=60, length=8, positions=5)
    root = str(tmp_path / "chain")
    result = td.train_distance(root, method="td3", arrays=arrays, total_steps=450,
                               batch_size=64, negatives_key="none", learning_rate=1e-3,
                               checkpoint_every=450, summary_every=50, log_every=450)
    assert result["steps"] == 450
    ld = checkpoints.load_distance(root)
    assert isinstance(ld, distances.LearnedDistance)
    with open(os.path.join(root, "config.json")) as f:
        assert json.load(f)["settings"]["method"] == "td3"
    # every ordered pair of distinct positions; the true distance is |s − g| steps
    pairs = [(s, g) for s in range(5) for g in range(5) if s != g]
    d = ld.distance(np.stack([bar_image(s) for s, _ in pairs]),
                    np.stack([bar_image(g) for _, g in pairs])).numpy()
    true = np.array([abs(s - g) for s, g in pairs])
    rho = stats.spearmanr(d, true).correlation
    by_steps = [float(d[true == k].mean()) for k in range(1, 5)]
    # 300 steps, 6 runs (CPU kernels are not bit-reproducible run to run, more so under load):
    # ρ 0.52-0.89, mean distance by true steps e.g. [2.0, 4.3, 7.0, 37.9] or [2.2, 2.9, 5.2, 4.4];
    # an untrained critic gives ρ ≈ 0 ± 0.2 on these 20 pairs
    assert rho >= 0.45, (rho, by_steps)
    assert by_steps[0] < min(by_steps[2], by_steps[3]), by_steps  # 1 step closer than 3-4 steps
    # resuming with other model settings is refused before anything is built
    with pytest.raises(ValueError, match="reward_scheme"):
        td.train_distance(root, method="td3", arrays=arrays, total_steps=300,
                          negatives_key="none", reward_scheme="ten_one")


def test_unknown_method_or_scheme_in_gin_fails_clearly(tmp_path):
    gin.clear_config()
    try:
        gin.parse_config("train_distance.reward_scheme = 'binary'")
        with pytest.raises(ValueError, match=r"'binary'.*\('indicator', 'ten_one'\)"):
            td.train_distance(str(tmp_path / "a"), arrays=chain_arrays(2))
        gin.clear_config()
        gin.parse_config("train_distance.method = 'sorb'")
        with pytest.raises(ValueError, match=r"'sorb'.*'cql_td3', 'td3', 'temporal'"):
            td.train_distance(str(tmp_path / "b"), arrays=chain_arrays(2))
    finally:
        gin.clear_config()
    assert not os.path.exists(tmp_path / "a")


def test_nan_loss_stops_training_naming_the_step(tmp_path):
    gin.clear_config()
    gin.bind_parameter("baseline_settings.encoder_filters", (4,))
    gin.bind_parameter("baseline_settings.gcbc_fc_layers", 1)
    gin.bind_parameter("baseline_settings.gcbc_units", 8)
    try:
        arrays = chain_arrays(4)
        arrays.actions[:] = np.nan
        with pytest.raises(training_lib.NonFiniteLossError, match="at step 1;.*none"):
            td.train_distance(str(tmp_path / "nan"), method="gcbc", arrays=arrays,
                              total_steps=5, batch_size=4, summary_every=1, log_every=1)
    finally:
        gin.clear_config()
    assert not os.path.exists(tmp_path / "nan" / "ckpt" / "checkpoint")


def test_load_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a training run directory"):
        checkpoints.load_distance(str(tmp_path))


def test_actor_health_reads_q_at_actor_and_data_actions():
    from mbold_tf.eval import distance_quality as dq
    tf.random.set_seed(0)
    actor, c1, c2 = dn.build_networks(dn.network_settings(**TINY))
    ld = distances.LearnedDistance(actor, c1, c2)
    arrays = chain_arrays(num_episodes=6, length=8, positions=5)
    h = dq.actor_health(ld, arrays, num_states=16, offset=2, seed=0)
    # the same states the function draws, recomputed directly
    rng = np.random.default_rng(0)
    last = np.repeat(arrays.episode_start + arrays.episode_length - 1, arrays.episode_length)
    i = rng.choice(np.flatnonzero(last - np.arange(arrays.num_steps) >= 2), 16)
    s, g = arrays.images[i], arrays.images[i + 2]
    a = ld.action(s, g).numpy()
    np.testing.assert_allclose(h["q_actor"], ld.q_values(s, g, a).numpy().mean(), rtol=1e-5)
    np.testing.assert_allclose(h["q_data"], ld.q_values(s, g, arrays.actions[i]).numpy().mean(),
                               rtol=1e-5)
    assert h["actor_saturated"] == pytest.approx(np.mean(np.abs(a) > 0.99))


def test_resuming_with_other_agent_settings_fails_naming_them(tmp_path, tiny_gin):
    """The agent's gin settings are part of the run's record: a resumed run with another
    CqlTd3Agent value is refused instead of mixing two trainings in one checkpoint."""
    from mbold_tf.utils import run_config

    arrays = chain_arrays(num_episodes=8, length=8, positions=5)
    root = str(tmp_path / "run")
    kwargs = dict(method="cql_td3", arrays=arrays, total_steps=2, batch_size=16,
                  negatives_key="none", checkpoint_every=2, summary_every=2, log_every=2,
                  bn_recalibration_batches=0)
    td.train_distance(root, **kwargs)
    with open(os.path.join(root, "config.json")) as f:
        assert json.load(f)["settings"]["agent"]["target_update_tau"] == 0.05
    gin.bind_parameter("CqlTd3Agent.actor_bc_weight", 7.0)
    with pytest.raises(run_config.ConfigMismatchError, match="agent: .*actor_bc_weight"):
        td.train_distance(root, **dict(kwargs, total_steps=4))


def test_train_distance_owns_the_agent_settings_it_passes(tmp_path, tiny_gin):
    """γ and τ bound on train_distance reach the run's record and the agent built from it (the
    agent's own parameters are denylisted: tests/test_gin.py)."""
    gin.bind_parameter("train_distance.cql_tau", 10.0)
    gin.bind_parameter("train_distance.gamma", 0.9)
    root = str(tmp_path / "run")
    td.train_distance(root, method="cql_td3", arrays=chain_arrays(num_episodes=8, length=8,
                                                                  positions=5),
                      total_steps=1, batch_size=16, negatives_key="none", checkpoint_every=1,
                      summary_every=1, log_every=1, bn_recalibration_batches=0)
    with open(os.path.join(root, "config.json")) as f:
        settings = json.load(f)["settings"]
    assert (settings["cql_tau"], settings["gamma"]) == (10.0, 0.9)
    agent, _ = td.build_agent(settings)
    assert float(agent.cql_tau.numpy()) == 10.0 and agent._gamma == 0.9


# -- ensembles of learned distances ---------------------------------------------------------------
def _untrained_distance(seed, gamma=0.8):
    tf.random.set_seed(seed)
    return distances.LearnedDistance(*dn.build_networks(dn.network_settings(**TINY)),
                                     gamma=gamma)


def test_ensemble_averages_its_members_q_and_acts_with_the_best_members_actor():
    members = [_untrained_distance(s) for s in (1, 2, 3)]
    ens = distances.DistanceEnsemble(members)
    rng = np.random.default_rng(0)
    s = rng.integers(0, 255, (6, 64, 64, 3), dtype=np.uint8)
    g = rng.integers(0, 255, (6, 64, 64, 3), dtype=np.uint8)
    q = np.stack([m.q_values(s, g).numpy() for m in members])  # each at its own actor's action
    assert np.ptp(q, axis=0).min() > 1e-4  # the members disagree, so the mean is informative
    np.testing.assert_allclose(ens.q_values(s, g).numpy(), q.mean(0), rtol=1e-5)
    a = rng.uniform(-1, 1, (6, 4)).astype(np.float32)
    np.testing.assert_allclose(ens.q_values(s, g, a).numpy(),
                               np.mean([m.q_values(s, g, a).numpy() for m in members], 0),
                               rtol=1e-5)
    np.testing.assert_allclose(ens.distance(s, g).numpy(),
                               distances.q_to_distance(q.mean(0)).numpy(), rtol=1e-5)
    # the ensemble's action: per example, the member actor's action with the highest mean Q
    candidates = [m.action(s, g).numpy() for m in members]
    scores = np.stack([ens.q_values(s, g, c).numpy() for c in candidates])
    expected = np.stack(candidates, 1)[np.arange(6), scores.argmax(0)]
    np.testing.assert_allclose(ens.action(s, g).numpy(), expected, rtol=1e-6)
    with pytest.raises(ValueError, match="at least 2"):
        distances.DistanceEnsemble(members[:1])
    with pytest.raises(ValueError, match="gamma"):
        distances.DistanceEnsemble([members[0], _untrained_distance(4, gamma=0.9)])


def _distance_run(root, seed, gamma=0.8):
    """A distance run directory as training leaves it: config.json and a checkpoint."""
    from mbold_tf.utils import run_config
    ld = _untrained_distance(seed, gamma)
    run_config.check_or_write_config(root, "distance", {
        "method": "td3", "action_dim": 4, "networks": dn.network_settings(**TINY),
        "reward_scheme": "indicator", "gamma": gamma, "negatives_key": "none"})
    tf.train.Checkpoint(actor_network=ld.actor, critic_network_1=ld.critic1,
                        critic_network_2=ld.critic2).save(os.path.join(root, "ckpt", "ckpt"))
    return root


def test_comma_joined_runs_load_as_an_ensemble_and_the_report_names_its_members(tmp_path):
    from mbold_tf.eval import report, results
    from mbold_tf.utils import run_config
    a, b = (_distance_run(str(tmp_path / n), s) for n, s in (("a", 1), ("b", 2)))
    ens = checkpoints.load_distance(f"{a},{b}")
    assert isinstance(ens, distances.DistanceEnsemble) and ens.root_dir == f"{a},{b}"
    s = np.random.default_rng(1).integers(0, 255, (4, 64, 64, 3), dtype=np.uint8)
    g = s[::-1].copy()
    single = [checkpoints.load_distance(r).q_values(s, g).numpy() for r in (a, b)]
    np.testing.assert_allclose(ens.q_values(s, g).numpy(), np.mean(single, 0), rtol=1e-5)
    # runs of another configuration, a run named twice, a blank part: refused, naming why
    other = _distance_run(str(tmp_path / "c"), 3, gamma=0.9)
    with pytest.raises(run_config.ConfigMismatchError, match=r"differ in settings \(gamma"):
        checkpoints.load_distance(f"{a},{other}")
    with pytest.raises(run_config.ConfigMismatchError, match="more than once"):
        checkpoints.load_distance(f"{a},{a}/")
    with pytest.raises(run_config.ConfigMismatchError, match="empty run directory"):
        checkpoints.load_distance(f"{a},")
    # the results header describes each member; the report names them all
    described = results.describe_run(f"{a},{b}")
    assert [m["dir"] for m in described["members"]] == [a, b]
    assert described["step"] == 1 and described["settings"]["ensemble_size"] == 2
    assert described["settings"]["gamma"] == 0.8
    header = {"task": "reach", "hard": False, "goal_seed": 0, "command": "c", "date": "d",
              "machine": {"cpu": "x", "cores": 2, "gpus": [], "platform": "p"},
              "planner_gin_files": [], "models": {"distance": described}}
    from mbold_tf.eval.report import _header_lines  # pylint: disable=import-outside-toplevel
    line = [x for x in _header_lines(header, 1, 1) if x.startswith("- distance")][0]
    assert line == f"- distance: the average of 2 runs `{a}`, `{b}`, 1 training steps each"
    assert report.varying_settings([header]) == {("reach", "distance"): []}
    # an ensemble is not a longer training of its members: no training-length curve with them
    single = dict(header, models={"distance": results.describe_run(a)}, goal_indices=[0],
                  seeds=[0], planner_config={})
    single["models"]["distance"]["step"] = 2
    ensemble = dict(single, models={"distance": described})
    metrics = {"goal_index": 0, "success": 1.0, "start_object_distance": 0.1,
               "object_distance": 0.0, "start_arm_distance": 0.1, "arm_distance": 0.0,
               "object_displacement": 0.0, "object_moved": 1.0}
    episodes = [results.episode_record("mbold", "simulator", "learned_distance", 0, metrics, 1.0)]
    files = [("a.json", {"header": single, "episodes": episodes}),
             ("b.json", {"header": ensemble, "episodes": episodes})]
    assert report.curve_tables(files) == []
    assert report.curve_tables([files[0], ("c.json", {"header": dict(
        single, models={"distance": dict(single["models"]["distance"], step=5)}),
        "episodes": episodes})]) != []
