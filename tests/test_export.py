"""Exported MBOLD SavedModel (predictor + distance + CEM): same actions in a fresh process without mbold_tf; clear errors."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
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


@pytest.mark.parametrize("damage", ["metadata_json", "variables_data", "variables_index"])
def test_a_damaged_export_names_the_problem_and_says_re_export(exported, tmp_path, damage):
    import shutil

    bad = str(tmp_path / "bad")
    shutil.copytree(exported["dir"], bad)
    if damage == "metadata_json":
        path = os.path.join(bad, robot_side.METADATA_FILE)
    else:
        var_dir = os.path.join(bad, "variables")
        suffix = ".index" if damage == "variables_index" else ".data-00000-of-00001"
        path = os.path.join(var_dir, [f for f in os.listdir(var_dir) if f.endswith(suffix)][0])
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
    with pytest.raises(robot_side.ExportError, match="re-export"):
        robot_side.RobotPolicy(bad).act(exported["observation"])
    if damage == "metadata_json":
        with pytest.raises(robot_side.ExportError, match="mbold_export.json is not valid JSON"):
            robot_side.read_metadata(bad)


def test_deadline_falls_back_to_the_previous_plan_and_never_blocks(exported, caplog):
    """A planner made slow on purpose: act() answers within the deadline with the previous
    plan's next action (zeros before any plan), and adopts the late plan when it arrives."""
    import threading
    import time

    robot = robot_side.RobotPolicy(exported["dir"], deadline_s=60.0)
    obs = dict(exported["observation"], extra_sensor=np.zeros(3))
    robot.reset()
    first = robot.act(obs)  # in time (the first call traces): a plan of 4 actions
    robot.deadline_s = 0.5
    plan = np.asarray(robot._plan)  # pylint: disable=protected-access
    np.testing.assert_allclose(first, np.clip(plan[0], -1, 1), atol=1e-6)
    release = threading.Event()
    real_action = robot._policy.action  # pylint: disable=protected-access

    def slow_action(time_step, state):
        release.wait(10)
        return real_action(time_step, state)

    robot._policy.action = slow_action  # pylint: disable=protected-access
    t0 = time.monotonic()
    second = robot.act(obs)
    third = robot.act(obs)
    assert time.monotonic() - t0 < 1.5  # two deadlines, never the 10 s of the slow call
    np.testing.assert_allclose(second, np.clip(plan[1], -1, 1), atol=1e-6)
    np.testing.assert_allclose(third, np.clip(plan[2], -1, 1), atol=1e-6)
    assert robot.deadline_misses == 2
    release.set()
    robot._policy.action = real_action  # pylint: disable=protected-access
    robot.deadline_s = 60.0
    fourth = robot.act(obs)  # the late call answers: its plan, after the 2 skipped actions
    assert np.all(np.isfinite(fourth)) and robot.deadline_misses == 2
    lat = robot.latency()
    assert lat["calls"] == 4 and lat["deadline_misses"] == 2 and lat["max"] >= lat["p50"]
    assert max(robot._latencies[1:3]) < 1.0  # pylint: disable=protected-access
    assert sum("missed the 0.500 s deadline" in r.getMessage() for r in caplog.records) == 2
    assert sum("extra_sensor" in r.getMessage() for r in caplog.records) == 1  # warned once


def test_loading_warms_up_times_a_plan_and_records_the_deadline_it_holds(exported, caplog,
                                                                         tmp_path):
    """The runner traces and plans on a blank observation at load, says what deadline this
    machine holds (warning when the requested one is shorter) and leaves no state behind."""
    import logging
    import shutil

    from mbold_tf.export import planner_export

    caplog.set_level(logging.INFO)
    robot = robot_side.RobotPolicy(exported["dir"], deadline_s=1e-4)
    timed = robot.warm_up_s
    assert set(timed) == {"first_call_s", "step_s", "plan_s", "wake_margin_s",
                          "holds_deadline_s"}
    assert timed["first_call_s"] > 0 and timed["plan_s"] > 0
    assert timed["holds_deadline_s"] == pytest.approx(timed["plan_s"] + timed["wake_margin_s"],
                                                      abs=1e-3)
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("Warm-up on a blank observation: first call") for m in messages)
    assert any("deadline_s = 0.000 s is shorter than a plan here" in m for m in messages)
    robot.act(exported["observation"])  # misses its deadline: the overrun is reported
    assert robot.latency()["deadline_misses"] == 1 and robot.latency()["max_overrun_s"] >= 0
    # The warm-up leaves no trace in the episode: the first action equals a cold runner's.
    cold = robot_side.RobotPolicy(exported["dir"], warm_up=False)
    assert cold.warm_up_s is None
    warm = robot_side.RobotPolicy(exported["dir"])
    np.testing.assert_allclose(warm.act(exported["observation"]),
                               cold.act(exported["observation"]), atol=1e-6)
    # The export records what this machine measured, with the machine and its load.
    copy = str(tmp_path / "policy")
    shutil.copytree(exported["dir"], copy)
    measured = planner_export.record_timing(copy)
    meta = robot_side.read_metadata(copy)
    assert meta["measured_on_export"] == measured
    assert "logical cores" in measured["machine"] and len(measured["load_average_1_5_15min"]) == 3
    assert measured["holds_deadline_s"] >= measured["plan_s"]
