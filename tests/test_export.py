"""Exported MBOLD SavedModel (predictor + distance + CEM): same actions in a fresh process without mbold_tf; clear errors."""
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
from mbold_tf.agents import distances
from mbold_tf.models import distance_networks as dn
from mbold_tf.models import video_predictor
from mbold_tf.planning import factory

ROBOT_SIDE = os.path.join(os.path.dirname(robot_side.__file__), "robot_side.py")


def _policy(tf_env):
    """MBOLD at tiny scale: an (untrained) video predictor, learned distance and CEM."""
    predictor = video_predictor.VideoPredictor(horizon=4, width=4, norm="none",
                                               num_transformed=1, full_resolution_heads=False)
    predictor.build_variables()
    nets = dn.build_networks(dn.network_settings(encoder_filters=(8, 16), critic_fc_layers=1,
                                                 actor_fc_layers=1, fc_units=16))
    return factory.make_policy(
        "mbold", tf_env.time_step_spec(), tf_env.action_spec(), [0.6, 0.6, 0.3, 0.3],
        {"predictor": predictor, "distance": distances.LearnedDistance(*nets)}, seed=3,
        config=cem.CEMConfig(num_samples=16, num_elites=4, iterations=2, horizon=4),
        replan_every=2)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    goal_set = goals.generate_goal_set("reach", num_goals=1, seed=2)
    env = goal_env.GoalConditionedPyEnvironment(goal_set)
    tf_env = tf_py_environment.TFPyEnvironment(env)
    policy = _policy(tf_env)
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
