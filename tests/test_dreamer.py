"""Offline goal-conditioned Dreamer (App. B.2) and its arm-ℓ2 oracle: model, data, training,
resume, the policy and its export (tiny, CPU)."""
import dataclasses
import os

import numpy as np
import pytest
import tensorflow as tf
from tf_agents.policies import policy_saver
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import time_step as ts

from mbold_tf.agents import checkpoints
from mbold_tf.envs import goal_env
from mbold_tf.models import dreamer as dm
from mbold_tf.planning import dreamer_policy as dp
from mbold_tf.training import dreamer as td
from mbold_tf.utils import run_config
from tests.test_distance import bar_image, chain_arrays

TINY = dict(encoder_filters=(4, 8, 8, 8), goal_encoder_filters=(4, 8, 8, 8), deter_size=16,
            stoch_size=4, hidden_size=16, units=16, reward_layers=1, value_layers=1,
            actor_layers=1, horizon=3)
LENGTH = 4  # frames per training window


def _bind_tiny():
    import gin

    gin.clear_config()
    for k, v in TINY.items():
        gin.bind_parameter(f"dreamer_settings.{k}", v)


@pytest.fixture(scope="module")
def arrays():
    """Bar-on-a-chain episodes with a privileged "end effector" at the bar (1/8 per cell)."""
    a = chain_arrays(num_episodes=12, length=6)
    pos = a.proprio[:, 0]
    ee = np.stack([pos / 8.0, np.zeros_like(pos), np.full_like(pos, 0.1)], 1)
    return dataclasses.replace(a, privileged={"ee_pos": ee.astype(np.float32)})


@pytest.fixture(scope="module")
def trained(arrays, tmp_path_factory):
    """A run trained 4 steps, then resumed to 6 (oracle reward)."""
    import gin

    root = str(tmp_path_factory.mktemp("dreamer") / "run")
    _bind_tiny()
    try:
        kw = dict(arrays=arrays, reward="arm_l2", batch_size=4, sequence_length=LENGTH,
                  checkpoint_every=2, log_every=2, summary_every=2)
        first = td.train_dreamer(root, total_steps=4, **kw)
        weights_at_4 = [v.numpy() for v in checkpoints.load_dreamer(root).trainable_variables]
        second = td.train_dreamer(root, total_steps=6, **kw)
    finally:
        gin.clear_config()
    return {"root": root, "first": first, "second": second, "weights_at_4": weights_at_4,
            "kw": kw}


def test_world_model_loss_falls_on_chain_episodes(arrays):
    model = dm.DreamerModel(dm.dreamer_settings(**TINY))
    trainer = td.DreamerTrainer(model, model_lr=3e-3)
    data = iter(td.dreamer_dataset(arrays, 8, LENGTH, "pixel_mse", seed=1))
    step = tf.function(lambda b: trainer.world_model_step(b)[0])
    losses = [step(next(data)) for _ in range(30)]
    image = [float(x["image_loss"]) for x in losses]
    # 30 steps at lr 3e-3: the reconstruction loss (½Σ over 12,288 pixels) e.g. 1,530 → 610.
    assert np.mean(image[-5:]) < 0.7 * np.mean(image[:5]), image
    assert all(np.isfinite(float(x["model_loss"])) for x in losses)
    assert float(losses[-1]["kl"]) >= 0.0


def test_imagined_rollouts_are_time_major_and_returns_are_lambda_returns():
    s = dm.dreamer_settings(**TINY)
    model = dm.build_model(s)
    n, horizon = 5, s["horizon"]
    start = {"deter": tf.random.normal([n, s["deter_size"]]),
             "stoch": tf.random.normal([n, s["stoch_size"]])}
    goal = tf.constant(np.stack([bar_image(i) for i in range(n)]))
    traj = model.imagine(start, model.goal_embedding("actor", goal))
    assert traj["deter"].shape == (horizon, n, s["deter_size"])
    assert traj["stoch"].shape == (horizon, n, s["stoch_size"])
    assert traj["feat"].shape == (horizon, n, s["deter_size"] + s["stoch_size"])
    assert traj["action"].shape == (horizon, n, 4)
    assert np.all(np.abs(traj["action"]) <= 1.0)
    targets = model.behaviour_targets(traj, goal, repeats=1)
    assert targets["reward"].shape == targets["value"].shape == (horizon, n)
    assert targets["returns"].shape == (horizon - 1, n)
    # λ-returns against the definition on known numbers
    r = tf.constant([[1.0], [2.0], [3.0]])
    v = tf.constant([[10.0], [20.0], [30.0]])
    boot = tf.constant([40.0])
    g = 0.5
    np.testing.assert_allclose(dm.lambda_returns(r, v, boot, g, 1.0)[:, 0],  # Monte Carlo
                               [1 + g * 2 + g ** 2 * 3 + g ** 3 * 40, 2 + g * 3 + g ** 2 * 40,
                                3 + g * 40], rtol=1e-6)
    np.testing.assert_allclose(dm.lambda_returns(r, v, boot, g, 0.0)[:, 0],  # one-step TD
                               [1 + g * 20, 2 + g * 30, 3 + g * 40], rtol=1e-6)
    lam = 0.25
    r2 = 3 + g * 40
    r1 = 2 + g * ((1 - lam) * 30 + lam * r2)
    np.testing.assert_allclose(dm.lambda_returns(r, v, boot, g, lam)[:, 0],
                               [1 + g * ((1 - lam) * 20 + lam * r1), r1, r2], rtol=1e-6)


@pytest.mark.parametrize("reward", dm.REWARDS)
def test_reward_targets_equal_the_definitions(arrays, reward):
    batch = next(iter(td.dreamer_dataset(arrays, 6, LENGTH, reward, seed=3)))
    idx, goal_idx = batch["step_index"].numpy(), batch["goal_index"].numpy()
    # the goal is a frame of the same window (same episode), uniformly placed
    assert np.all(goal_idx == idx[np.arange(6), batch["goal_offset"].numpy()])
    episode = arrays.step_episode()
    assert np.all(episode[idx] == episode[goal_idx][:, None])
    np.testing.assert_array_equal(batch["images"], arrays.images[idx])
    np.testing.assert_array_equal(batch["goal"], arrays.images[goal_idx])
    np.testing.assert_array_equal(batch["actions"], arrays.actions[idx[:, :-1]])
    got = batch["reward"].numpy()
    assert got.shape == (6, LENGTH)
    if reward == "arm_l2":
        ee = arrays.privileged["ee_pos"].astype(np.float64)
        want = -np.linalg.norm(ee[idx] - ee[goal_idx][:, None], axis=-1)
    else:
        x = arrays.images[idx].astype(np.float64) / 255.0
        g = arrays.images[goal_idx].astype(np.float64) / 255.0
        want = -np.mean((x - g[:, None]) ** 2, axis=(2, 3, 4))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert np.any(want < 0) and np.all(want <= 0)
    frame_is_goal = idx == goal_idx[:, None]
    np.testing.assert_allclose(got[frame_is_goal], 0.0, atol=1e-6)  # at the goal: reward 0


def test_train_dreamer_resumes_from_its_checkpoint(trained):
    root = trained["root"]
    assert trained["first"]["steps"] == 4 and trained["second"]["steps"] == 6
    for key in ("model_loss", "image_loss", "reward_loss", "kl", "actor_loss", "value_loss",
                "imagined_reward"):
        assert np.isfinite(trained["second"][key]), key
    assert trained["second"]["actor_grad_norm"] > 0  # gradients through the imagined dynamics
    latest = tf.train.latest_checkpoint(os.path.join(root, "ckpt"))
    assert latest.endswith("-6")
    # the optimisers were restored too: 6 updates each, not 2 after a fresh start
    names = dict(tf.train.list_variables(latest))
    for opt in ("model_optimizer", "actor_optimizer", "value_optimizer"):
        key = [k for k in names if k.startswith(f"{opt}/_iterations")][0]
        assert int(tf.train.load_variable(latest, key)) == 6, opt
    model = checkpoints.load_dreamer(root)
    assert model.reward_name == "arm_l2" and model.run_settings["model"]["deter_size"] == 16
    now = [v.numpy() for v in model.trainable_variables]
    assert any(not np.array_equal(a, b) for a, b in zip(now, trained["weights_at_4"]))


def _time_steps(arrays, batch=2):
    tss, act_spec = goal_env.tf_specs()
    obs = []
    for t in range(3):
        o = {"image": np.stack([bar_image(t + i) for i in range(batch)]),
             "goal_image": np.stack([bar_image(6)] * batch),
             "joint_pos": np.zeros((batch, 7), np.float32),
             "gripper": np.zeros((batch, 2), np.float32)}
        obs.append({k: tf.constant(v) for k, v in o.items()})
    steps = [ts.restart(obs[0], batch_size=batch)] + [
        ts.transition(o, tf.zeros([batch])) for o in obs[1:]]
    return tss, act_spec, steps


def test_policy_acts_in_range_carries_state_and_exports(trained, arrays, tmp_path):
    model = checkpoints.load_dreamer(trained["root"])
    tss, act_spec, steps = _time_steps(arrays)
    policy = dp.DreamerPolicy(tss, act_spec, model)
    state = policy.get_initial_state(2)
    actions, states = [], []
    for step in steps:
        out = policy.action(step, state)
        assert out.action.shape == (2, 4) and out.action.dtype == tf.float32
        assert np.all(np.abs(out.action) <= 1.0) and np.all(np.isfinite(out.action))
        actions.append(out.action.numpy())
        states.append(state)
        state = out.state
    np.testing.assert_allclose(state["prev_action"], actions[-1])
    # the state matters: the last step from the zero state acts differently ...
    fresh = policy.action(steps[-1], policy.get_initial_state(2)).action.numpy()
    assert not np.allclose(fresh, actions[-1])
    # ... and a first step resets it: any state gives the zero state's action
    np.testing.assert_allclose(policy.action(steps[0], state).action, actions[0], atol=1e-6)
    export_dir = str(tmp_path / "dreamer_policy")
    policy_saver.PolicySaver(policy, batch_size=None).save(export_dir)
    loaded = tf.saved_model.load(export_dir)
    state = loaded.get_initial_state(2)
    for step, want in zip(steps, actions):
        out = loaded.action(step, state)
        np.testing.assert_allclose(out.action, want, atol=1e-5)
        state = out.state


def test_bad_inputs_fail_clearly(trained, arrays, tmp_path):
    model = checkpoints.load_dreamer(trained["root"])
    tss, act_spec, steps = _time_steps(arrays)
    policy = dp.DreamerPolicy(tss, act_spec, model)
    obs = dict(steps[0].observation, goal_image=tf.zeros([2, 32, 32, 3], tf.uint8))
    with pytest.raises(ValueError, match=r"goal_image must be \[B, 64, 64, 3\].*\[2, 32, 32, 3\]"
                                         r".*resize it to 64x64"):
        policy.action(steps[0]._replace(observation=obs), policy.get_initial_state(2))
    with pytest.raises(ValueError, match=r"goal image must be \[B,64,64,3\]"):
        model.act(model.rssm.initial(2), np.zeros((2, 32, 32, 3), np.uint8))
    # a run directory of another configuration: the differing settings are named
    with pytest.raises(run_config.ConfigMismatchError,
                       match=r"reward: 'arm_l2' \(checkpoint\) vs 'pixel_mse' \(requested\)"):
        _bind_tiny()
        try:
            td.train_dreamer(trained["root"], total_steps=8,
                             **dict(trained["kw"], reward="pixel_mse"))
        finally:
            import gin

            gin.clear_config()
    with pytest.raises(run_config.ConfigMismatchError, match=r"deter_size.*16.*200"):
        td.train_dreamer(trained["root"], total_steps=8, **trained["kw"])  # paper sizes
    with pytest.raises(ValueError, match=r"Unknown reward 'mse'; choose one of \('pixel_mse', "
                                         r"'arm_l2'\)"):
        td.train_dreamer(str(tmp_path / "x"), reward="mse", arrays=arrays)
    assert not os.path.exists(tmp_path / "x")
    no_ee = dataclasses.replace(arrays, privileged={})
    with pytest.raises(ValueError, match=r"reward='arm_l2'.*privileged\['ee_pos'\].*keys \[\]"):
        td.train_dreamer(str(tmp_path / "y"), reward="arm_l2", arrays=no_ee)
    with pytest.raises(ValueError, match="privileged"):
        td.dreamer_dataset(no_ee, 2, LENGTH, "arm_l2")
    with pytest.raises(ValueError, match="sequence_length = 7 is longer than every episode"):
        td.dreamer_dataset(arrays, 2, 7, "pixel_mse")
    with pytest.raises(FileNotFoundError, match="not a training run directory"):
        checkpoints.load_dreamer(str(tmp_path / "nothing"))
    with pytest.raises(ValueError, match="action_spec bounds"):
        dp.DreamerPolicy(tss, tensor_spec.BoundedTensorSpec((4,), tf.float32, -1.0, 2.0), model)


def test_a_run_loads_only_as_the_method_of_its_reward(trained):
    models = checkpoints.load_models({"dreamer_arm_l2": trained["root"]})  # an 'arm_l2' run
    assert models["dreamer_arm_l2"].reward_name == "arm_l2"
    with pytest.raises(run_config.ConfigMismatchError,
                       match=r"--dreamer_dir=.* was trained with reward 'arm_l2'.*pass it as "
                             r"--dreamer_arm_l2_dir"):
        checkpoints.load_models({"dreamer": trained["root"]})
