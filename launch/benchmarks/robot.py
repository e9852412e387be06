"""Soak check of the robot runner: an exported CPU-preset MBOLD planner stepped many times.

``python -m launch.benchmark robot`` exports the MBOLD planner at the CPU preset's sizes
(predictor and critic shapes as ``gin/presets/cpu``; the weights are untrained, which costs the
same compute), loads it with :class:`mbold_tf.export.robot_side.RobotPolicy` and calls ``act``
1,000 times (``--quick``: 60) on camera frames of a reach episode, resetting every 30 steps as
an episode would. It reports the latency of ``act`` (p50 / p95 / max; replans are the slow
calls), the resident memory after the first episode and at the end (growth in MiB; the bound
it is checked against is :data:`RSS_GROWTH_BOUND_MIB`), and whether any call after the first
episode was as slow as a first (tracing) call.
"""
import os
import tempfile

import gin
import numpy as np

import mbold_tf
from mbold_tf import configurables  # noqa: F401  (registers every gin configurable)
from mbold_tf.agents import distances
from mbold_tf.envs import goal_env
from mbold_tf.envs import goals
from mbold_tf.envs import tasks
from mbold_tf.export import robot_side
from mbold_tf.export import saved_model
from mbold_tf.models import distance_networks as dn
from mbold_tf.models import video_predictor
from mbold_tf.planning import factory

RSS_GROWTH_BOUND_MIB = 50.0
EPISODE = 30


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def run(quick: bool) -> dict:
    """Steps the exported planner; returns latency, memory growth and the verdict."""
    steps = 60 if quick else 1000
    gin.clear_config()
    gin.parse_config_files_and_bindings(
        [os.path.join(mbold_tf.REPO_ROOT, "gin", "presets", "cpu", f)
         for f in ("predictor.gin", "distance.gin", "planner.gin")], [])
    predictor = video_predictor.VideoPredictor()
    predictor.build_variables()
    nets = dn.build_networks(dn.network_settings(), act_spec=dn.action_spec(4))
    time_step_spec, action_spec = goal_env.tf_specs()
    policy = factory.make_policy("mbold", time_step_spec, action_spec,
                                 tasks.task_spec("reach").collection_std,
                                 {"predictor": predictor,
                                  "distance": distances.LearnedDistance(*nets)})
    goal_set = goals.generate_goal_set("reach", num_goals=1, seed=0)
    env = goal_env.GoalConditionedPyEnvironment(goal_set)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "policy")
        saved_model.export_policy(policy, path)
        robot = robot_side.RobotPolicy(path)
        rss_after_first_episode = None
        try:
            for t in range(steps):
                if t % EPISODE == 0:
                    time_step = env.reset()
                    robot.reset()
                action = robot.act(dict(time_step.observation))
                time_step = env.step(action)
                if t == EPISODE - 1:
                    rss_after_first_episode = _rss_mib()
        finally:
            env.close()
        rss_end = _rss_mib()
    latencies = np.asarray(robot._latencies)  # pylint: disable=protected-access
    first = float(latencies[0])
    later_max = float(latencies[EPISODE:].max()) if steps > EPISODE else float("nan")
    growth = rss_end - rss_after_first_episode
    return {"steps": steps, "latency_s": {k: round(v, 4) if isinstance(v, float) else v
                                          for k, v in robot.latency().items()},
            "first_call_s": round(first, 3), "max_after_first_episode_s": round(later_max, 3),
            "retrace_suspected": bool(later_max > 0.8 * first),
            "rss_after_first_episode_mib": round(rss_after_first_episode, 1),
            "rss_end_mib": round(rss_end, 1), "rss_growth_mib": round(growth, 1),
            "rss_growth_bound_mib": RSS_GROWTH_BOUND_MIB,
            "rss_within_bound": bool(growth <= RSS_GROWTH_BOUND_MIB)}
