"""RIG baseline (App. B.1): β-VAE, latent rewards and relabelling, SAC with online collection,
resume, the exported policy, and clear errors (tiny, CPU)."""
import json
import os

import gin
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from tf_agents.environments import tf_py_environment
from tf_agents.policies import policy_saver
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import time_step as ts_lib

from mbold_tf.agents import checkpoints
from mbold_tf.envs import goal_env
from mbold_tf.envs import goals
from mbold_tf.models import rig
from mbold_tf.planning import rig_policy
from mbold_tf.training import rig as rig_training
from mbold_tf.utils import run_config
import tfds_builders  # noqa: F401  (registers mbold_tabletop)
from tests.test_distance import chain_arrays

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_PRESET = os.path.join(REPO, "gin", "presets", "tiny", "rig.gin")
# Autograph converting TF-Agents' policy-state check (`policy_state is ()`), as in conftest.py.
pytestmark = pytest.mark.filterwarnings('ignore:"is" with a literal:SyntaxWarning')


def _tiny_preset(data_dir):
    """The tiny preset, reading its dataset (reach_tiny) from ``data_dir``."""
    gin.clear_config()
    gin.add_config_file_search_path(REPO)
    gin.parse_config_file(TINY_PRESET)
    gin.bind_parameter("train_rig_vae.data_dir", data_dir)


@pytest.fixture(scope="module")
def reach_tiny_dir(tmp_path_factory):
    """A data_dir holding mbold_tabletop/reach_tiny, built here (6 train episodes)."""
    d = str(tmp_path_factory.mktemp("reach_tiny_data"))
    tfds.builder("mbold_tabletop/reach_tiny", data_dir=d).download_and_prepare()
    return d


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, reach_tiny_dir):
    """Both stages of the tiny preset on reach_tiny (online SAC for 40 steps)."""
    _tiny_preset(reach_tiny_dir)
    root = str(tmp_path_factory.mktemp("rig") / "run")
    try:
        vae = rig_training.train_rig_vae(root)
        sac = rig_training.train_rig_sac(root)
        yield {"root": root, "vae": vae, "sac": sac}
    finally:
        gin.clear_config()


# -- (a) the VAE ----------------------------------------------------------------------------------
def test_vae_reconstruction_loss_falls(tmp_path):
    gin.clear_config()
    try:
        gin.bind_parameter("rig_settings.encoder_filters", (8, 16))
        gin.bind_parameter("rig_settings.vae_units", 32)
        arrays = chain_arrays(num_episodes=8, length=8)   # bar images at 8 positions
        root = str(tmp_path / "vae")
        settings = rig.rig_settings()
        images = arrays.images[::3]
        x = tf.cast(images, tf.float32) / 255.0

        def reconstruction(vae):
            return float(vae.losses_for({"observation": images}, training=False)
                         ["reconstruction"])

        before = reconstruction(rig.build_vae(settings))  # untrained
        result = rig_training.train_rig_vae(root, arrays=arrays, total_steps=120, batch_size=16,
                                            learning_rate=1e-3, checkpoint_every=120,
                                            log_every=120, bn_recalibration_batches=5)
        assert result["steps"] == 120
        model = checkpoints.load_rig(root, vae_only=True)
        after = reconstruction(model.vae)
        print(f"VAE reconstruction error: {before:.4f} untrained, {after:.4f} trained")
        assert after < 0.3 * before, (before, after)
        assert model.encode(images).shape == (len(images), 8)
        recon, _, _ = model.vae(x)
        assert recon.shape == x.shape and float(tf.reduce_min(recon)) >= 0.0
    finally:
        gin.clear_config()


# -- (b) rewards and relabelling ------------------------------------------------------------------
def test_latent_reward_is_zero_at_the_goal_and_falls_away_from_it():
    goal = np.array([0.5, -1.0, 2.0], np.float32)
    direction = np.array([1.0, 2.0, -2.0], np.float32) / 3.0   # unit vector
    d = np.array([0.0, 0.1, 0.5, 1.0, 3.0], np.float32)
    z = goal[None] + d[:, None] * direction[None]
    r = rig.latent_reward(z, np.repeat(goal[None], len(d), 0)).numpy()
    np.testing.assert_allclose(r, -d, atol=1e-6)
    assert r[0] == 0.0 and np.all(np.diff(r) < 0)


def _line_buffer(episodes=3, steps=5):
    """Episodes whose latent at step t is (t, e): distances along the line are exact."""
    buf = rig_training.LatentReplayBuffer(capacity=4, episode_steps=steps, latent_dim=2,
                                          action_dim=4)
    t = np.arange(steps + 1, dtype=np.float32)
    latents = np.stack([np.stack([t, np.full_like(t, e)], -1) for e in range(episodes)])
    actions = np.tile((np.arange(steps, dtype=np.float32)[:, None] / 10), (episodes, 1, 4))
    prior = np.array([[100.0, 0.0]] * episodes, np.float32)
    buf.add(latents, actions.reshape(episodes, steps, 4), prior)
    return buf


def test_relabelled_rewards_have_the_known_values():
    steps = 5
    buf = _line_buffer(steps=steps)
    b = {k: v.numpy() for k, v in buf.sample(256, [1, 2], 1.0, 0.0).items()}
    t = b["observation"][:, 0]
    np.testing.assert_array_equal(b["goal_source"], 1)
    # final goal z_T = (T, e): reward −(T − (t + 1)), 0 for the last transition
    np.testing.assert_allclose(b["observation"][:, 2:], np.stack([np.full_like(t, steps),
                                                                  b["observation"][:, 1]], -1))
    np.testing.assert_allclose(b["reward"], -(steps - (t + 1)), atol=1e-6)
    np.testing.assert_allclose(b["next_observation"][:, 0], t + 1)
    np.testing.assert_allclose(b["action"][:, 0], t / 10, atol=1e-6)
    assert set(t.astype(int)) == set(range(steps))
    # future goals lie in (t, T]: rewards in [−(T − t − 1), 0]; prior goals (100, 0) are far
    b = {k: v.numpy() for k, v in buf.sample(512, [3, 4], 0.0, 1.0).items()}
    t, g = b["observation"][:, 0], b["observation"][:, 2]
    assert np.all(g > t) and np.all(g <= steps) and np.all(b["reward"] <= 0)
    assert np.any(b["reward"] == 0) and np.any(b["reward"] < -1)
    b = {k: v.numpy() for k, v in buf.sample(512, [5, 6], 0.25, 0.25).items()}
    share = np.bincount(b["goal_source"], minlength=3) / 512
    np.testing.assert_allclose(share, [0.5, 0.25, 0.25], atol=0.07)
    prior = b["goal_source"] == 0
    np.testing.assert_allclose(b["observation"][prior, 2], 100.0)
    # the ring overwrites the oldest episode
    buf.add(np.zeros([2, steps + 1, 2]), np.zeros([2, steps, 4]), np.zeros([2, 2]))
    assert int(buf.num_added.numpy()) == 5 and buf.size == 4
    np.testing.assert_allclose(buf.latents.numpy()[0], 0.0)


# -- (c) SAC with online collection, checkpoint and resume ----------------------------------------
def test_sac_collects_online_trains_and_resumes(tiny_run, reach_tiny_dir):
    _tiny_preset(reach_tiny_dir)
    root, sac = tiny_run["root"], tiny_run["sac"]
    assert tiny_run["vae"]["steps"] == 40
    # steps 0..39 need 1 initial + 1 + 39 // 20 episodes of 30 steps
    assert sac["steps"] == 40 and sac["online_episodes"] == 3 and sac["env_steps"] == 90
    assert sac["offline_episodes"] == 5 and sac["replay_episodes"] == 8
    assert all(np.isfinite(sac[k]) for k in ("critic_loss", "actor_loss", "alpha"))
    record = rig.read_env_steps(root)
    assert record["env_steps"] == 90 and record["task"] == "reach"
    assert tf.train.latest_checkpoint(os.path.join(root, "sac", "ckpt")).endswith("ckpt-40")
    with open(os.path.join(root, "config.json")) as f:
        stored = json.load(f)
    assert stored["kind"] == "rig" and stored["settings"]["latent_dim"] == 8
    assert stored["settings"]["gamma"] == 0.95 and stored["settings"]["action_dim"] == 4
    resumed = rig_training.train_rig_sac(root, total_steps=60)
    # restored counters and buffer: one more episode (step 59 needs 4), not a re-seeded buffer
    assert resumed["steps"] == 60 and resumed["online_episodes"] == 4
    assert resumed["env_steps"] == 120 and resumed["replay_episodes"] == 9
    assert rig.read_env_steps(root)["env_steps"] == 120
    # the VAE stage is complete: rerunning it trains nothing
    assert rig_training.train_rig_vae(root)["steps"] == 40


# -- (d) the policy and its export ----------------------------------------------------------------
def test_policy_acts_in_range_and_exports(tiny_run, tmp_path):
    model = checkpoints.load_rig(tiny_run["root"])
    time_step_spec, action_spec = goal_env.tf_specs()
    policy = rig_policy.RigPolicy(time_step_spec, action_spec, model)
    goal_set = goals.generate_goal_set("reach", num_goals=1, seed=2)
    env = tf_py_environment.TFPyEnvironment(goal_env.GoalConditionedPyEnvironment(goal_set))
    try:
        time_step = env.reset()
        for _ in range(3):
            action = policy.action(time_step).action
            assert action.dtype == tf.float32 and action.shape == (1, 4)
            assert np.all(np.abs(action.numpy()) <= 1.0)
            time_step = env.step(action)
    finally:
        env.close()
    rng = np.random.default_rng(0)
    obs = {"image": rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8),
           "goal_image": rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8),
           "joint_pos": np.zeros((3, 7), np.float32), "gripper": np.zeros((3, 2), np.float32)}
    batch = ts_lib.restart(tf.nest.map_structure(tf.constant, obs), batch_size=3)
    action = policy.action(batch).action.numpy()
    np.testing.assert_allclose(action, model.action(obs["image"], obs["goal_image"]).numpy(),
                               atol=1e-6)
    assert action.shape == (3, 4) and np.all(np.abs(action) <= 1.0)
    export_dir = str(tmp_path / "rig_policy")
    policy_saver.PolicySaver(policy, batch_size=None).save(export_dir)
    loaded = tf.saved_model.load(export_dir)
    replay = loaded.action(batch, ()).action.numpy()
    np.testing.assert_allclose(replay, action, atol=1e-5)


# -- (e) bad input --------------------------------------------------------------------------------
def test_bad_images_and_specs_fail_clearly(tiny_run):
    model = checkpoints.load_rig(tiny_run["root"])
    time_step_spec, action_spec = goal_env.tf_specs()
    policy = rig_policy.RigPolicy(time_step_spec, action_spec, model)
    image = np.zeros((1, 64, 64, 3), np.uint8)
    with pytest.raises(ValueError, match=r"goal image must be \[B,64,64,3\]"):
        model.action(image, np.zeros((1, 32, 32, 3), np.uint8))
    small = {"image": image, "goal_image": np.zeros((1, 32, 32, 3), np.uint8),
             "joint_pos": np.zeros((1, 7), np.float32), "gripper": np.zeros((1, 2), np.float32)}
    with pytest.raises(ValueError, match=r"goal image must be \[B,64,64,3\]"):
        policy.action(ts_lib.restart(small, batch_size=1))
    small_goal = dict(time_step_spec.observation,
                      goal_image=tensor_spec.BoundedTensorSpec((32, 32, 3), tf.uint8, 0, 255))
    with pytest.raises(ValueError, match="goal_image of shape \\[32, 32, 3\\].*64x64x3"):
        rig_policy.RigPolicy(time_step_spec._replace(observation=small_goal), action_spec, model)
    with pytest.raises(ValueError, match="action spec has shape \\[3\\]"):
        rig_policy.RigPolicy(time_step_spec, goal_env.tf_specs(action_dim=3)[1], model)


def test_run_dirs_of_other_kinds_or_settings_fail_naming_them(tiny_run, reach_tiny_dir,
                                                             tmp_path):
    _tiny_preset(reach_tiny_dir)
    root = tiny_run["root"]
    other = str(tmp_path / "distance_run")
    run_config.check_or_write_config(other, "distance", {"method": "vae"})
    with pytest.raises(run_config.ConfigMismatchError, match="'distance' model, not a 'rig'"):
        checkpoints.load_rig(other)
    with pytest.raises(FileNotFoundError, match="not a training run directory"):
        checkpoints.load_rig(str(tmp_path / "empty"))
    with pytest.raises(run_config.ConfigMismatchError, match="batch_size: 32 .*vs 64"):
        rig_training.train_rig_sac(root, batch_size=64)
    with pytest.raises(ValueError, match="task = 'push1'.*reach"):
        rig_training.train_rig_sac(root, task="push1")
    gin.bind_parameter("rig_settings.latent_dim", 4)
    try:
        with pytest.raises(run_config.ConfigMismatchError,
                           match=r"latent_dim: 8 \(checkpoint\) vs 4 \(requested\)"):
            rig_training.train_rig_vae(root)
    finally:
        gin.clear_config()
