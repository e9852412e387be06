"""Exported SavedModel: same actions in a fresh process without mbold_tf; clear errors."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from tf_agents.environments import tf_py_environment

from mbold_tf.envs import goal_env
from mbold_tf.envs import goals
from mbold_tf.export import robot_side
from mbold_tf.export import saved_model
from mbold_tf.planning import cem
from mbold_tf.planning import costs
from mbold_tf.planning import mpc_policy

ROBOT_SIDE = os.path.join(os.path.dirname(robot_side.__file__), "robot_side.py")


class _ShiftModel(tf.keras.Model):
    """A small learned-style image model: shifts the frame by a linear map of the actions."""

    def __init__(self):
        super().__init__()
        self.proj = tf.keras.layers.Dense(3, kernel_initializer=tf.keras.initializers.Constant(0.3))
        self.proj.build([None, 4])

    def predict(self, frames, actions):
        frames = tf.cast(frames[:, -1], tf.float32) / 255.0
        tint = tf.tanh(tf.cumsum(self.proj(actions), axis=1))  # [N, h, 3]
        return tf.clip_by_value(frames[:, None] + 0.2 * tint[:, :, None, None, :], 0.0, 1.0)


def _policy(tf_env, model):
    return mpc_policy.MPCPolicy(
        tf_env.time_step_spec(), tf_env.action_spec(), costs.predictor_model_fn(model),
        costs.make_cost("pixel_l2"), init_std=[0.6, 0.6, 0.3, 0.3],
        config=cem.CEMConfig(num_samples=24, num_elites=4, iterations=2, horizon=5),
        replan_every=2, episode_length=30, seed=3, models=[model])


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    goal_set = goals.generate_goal_set("reach", num_goals=1, seed=2)
    env = goal_env.GoalConditionedPyEnvironment(goal_set)
    tf_env = tf_py_environment.TFPyEnvironment(env)
    model = _ShiftModel()
    policy = _policy(tf_env, model)
    time_step = tf_env.reset()
    state = policy.get_initial_state(1)
    observations, actions = [], []
    for _ in range(5):
        step = policy.action(time_step, state)
        observations.append({k: v.numpy()[0] for k, v in time_step.observation.items()})
        actions.append(step.action.numpy()[0])
        time_step, state = tf_env.step(step.action), step.state
    env.close()
    export_dir = str(root / "policy")
    saved_model.export_policy(policy, export_dir, {"task": "reach"})
    inputs = str(root / "inputs.npz")
    np.savez(inputs, **{k: np.stack([o[k] for o in observations]) for k in observations[0]})
    return {"dir": export_dir, "inputs": inputs, "actions": np.stack(actions), "root": root,
            "observation": observations[0]}


def test_saved_model_matches_in_process_policy_in_fresh_process(exported):
    out = str(exported["root"] / "actions.npz")
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    subprocess.run([sys.executable, ROBOT_SIDE, f"--policy_dir={exported['dir']}",
                    f"--inputs={exported['inputs']}", f"--outputs={out}"], check=True, env=env,
                   cwd=str(exported["root"]))
    replay = np.load(out)
    assert list(replay["loaded_modules"]) == []  # neither mbold_tf nor tf_agents was imported
    np.testing.assert_allclose(replay["actions"], exported["actions"], atol=1e-5)
    assert np.all(np.abs(replay["actions"]) <= 1.0)


def test_robot_policy_validates_inputs_and_bounds(exported):
    policy = robot_side.RobotPolicy(exported["dir"])
    obs = dict(exported["observation"])
    with pytest.raises(ValueError, match=r"'goal_image' has shape \(32, 32, 3\).*\(64, 64, 3\)"):
        policy.act({**obs, "goal_image": np.zeros((32, 32, 3), np.uint8)})
    with pytest.raises(ValueError, match="'image' has dtype float32.*uint8"):
        policy.act({**obs, "image": obs["image"].astype(np.float32)})
    with pytest.raises(ValueError, match="missing 'joint_pos'"):
        policy.act({k: v for k, v in obs.items() if k != "joint_pos"})
    policy.reset()
    action = policy.act(obs)
    assert action.shape == (4,) and np.all(np.isfinite(action)) and np.all(np.abs(action) <= 1)


def test_missing_or_foreign_export_fails_clearly(exported, tmp_path):
    with pytest.raises(robot_side.ExportError, match="does not exist"):
        robot_side.RobotPolicy(str(tmp_path / "nope"))
    with pytest.raises(robot_side.ExportError, match="not an mbold-tf export"):
        robot_side.RobotPolicy(str(tmp_path))
    meta_path = os.path.join(exported["dir"], robot_side.METADATA_FILE)
    meta = json.load(open(meta_path))
    old = dict(meta, format_version=0)
    foreign = tmp_path / "old"
    import shutil
    shutil.copytree(exported["dir"], foreign)
    json.dump(old, open(foreign / robot_side.METADATA_FILE, "w"))
    with pytest.raises(robot_side.ExportError, match="format version 0"):
        robot_side.RobotPolicy(str(foreign))


def test_robot_side_steps_an_environment(exported):
    """The TF-only runner drives the goal-conditioned env through a whole episode."""
    policy = robot_side.RobotPolicy(exported["dir"])
    env = goal_env.make_env("reach", goal=0, num_goals=1, seed=2)
    try:
        result = robot_side.run_episode(policy, env)
    finally:
        env.close()
    assert result["steps"] == 30  # the task's episode length
