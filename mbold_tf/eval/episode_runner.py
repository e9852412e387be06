"""Runs evaluation episodes of (method, planning model, seed) policies on one goal set.

Shared by the sequential evaluation (:mod:`mbold_tf.eval.policy_eval`) and the Beam one
(:mod:`mbold_tf.eval.beam_eval`), so that both build the same policies and write the same
per-episode records. :meth:`EpisodeRunner.run_lockstep` runs several episodes of one cell (any
goals and seeds) together: one environment each, stepped as a TF-Agents batched environment,
and one lockstep policy (``make_policy(..., episode_seeds=True)``) whose state carries each
episode's seed, so every episode's record equals its sequential one.
"""
from __future__ import annotations

import os
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from absl import logging
import numpy as np
from tf_agents.drivers import py_driver
from tf_agents.environments import batched_py_environment
from tf_agents.policies import py_tf_eager_policy
from tf_agents.specs import tensor_spec

from mbold_tf.envs import goal_env
from mbold_tf.envs import goals as goals_lib
from mbold_tf.envs import simulator as simulator_lib
from mbold_tf.envs import tasks
from mbold_tf.eval import goal_eval
from mbold_tf.eval import report
from mbold_tf.eval import results as results_lib
from mbold_tf.planning import factory
from mbold_tf.planning import policies


class EpisodeRunner:
    """The goal set's environment, the trained models and one policy per (method, model, seed).

    Args:
      goal_set: the task's goals.
      models: trained models by role (:func:`mbold_tf.agents.checkpoints.load_models`); the
        simulator model (PRIVILEGED) is built on first use.
    """

    def __init__(self, goal_set: goals_lib.GoalSet, models: Dict[str, Any]):
        self.goal_set = goal_set
        self.env = goal_env.GoalConditionedPyEnvironment(goal_set)
        self.models = dict(models)
        self.simulator: Optional[simulator_lib.SimulatorRollouts] = None
        self._time_step_spec = tensor_spec.from_spec(self.env.time_step_spec())
        self._action_spec = tensor_spec.from_spec(self.env.action_spec())
        self._init_std = tasks.task_spec(goal_set.task).collection_std
        self._policies: Dict[Tuple[str, str, int], Any] = {}
        self._lockstep: Dict[Tuple[str, str], Any] = {}  # (method, model) -> TFPolicy
        self._envs: List[goal_env.GoalConditionedPyEnvironment] = []  # lockstep episodes'

    def policy(self, method: str, model: str, seed: int):
        """The PyPolicy of a cell ('none' as the model of model-free methods) and seed."""
        key = (method, model, int(seed))
        if key not in self._policies:
            if model == "simulator" and self.simulator is None:
                self.simulator = simulator_lib.SimulatorRollouts(self.env)
                self.models["simulator"] = self.simulator
            tf_pol = factory.make_policy(method, self._time_step_spec, self._action_spec,
                                         self._init_std, self.models, seed=int(seed),
                                         model="predictor" if model == "none" else model)
            self._policies[key] = policies.as_py_policy(tf_pol)
        return self._policies[key]

    def run_goals(self, method: str, model: str, seed: int, goal_indices: Sequence[int],
                  gif_dir: Optional[str] = None, num_gifs: int = 0) -> List[Dict[str, Any]]:
        """One episode per goal; returns their records (:func:`results.episode_record`)."""
        tag = gif_tag(method, model, seed)
        rows = goal_eval.evaluate_py_policy(
            self.env, self.policy(method, model, seed), goal_indices, gif_dir=gif_dir,
            num_gifs=num_gifs, tag=tag, title=f"{report.cell_name((method, model))}, seed {seed},")
        cost = factory.PLANNER_COST.get(method, "none")
        return [results_lib.episode_record(method, model, cost, seed, r, r["seconds"])
                for r in rows]

    def lockstep_policy(self, method: str, model: str):
        """The cell's lockstep TFPolicy (``episode_seeds=True``), built once; ValueError where
        ``factory.lockstep_supported`` is False."""
        key = (method, model)
        if key not in self._lockstep:
            self._lockstep[key] = factory.make_policy(
                method, self._time_step_spec, self._action_spec, self._init_std, self.models,
                model="predictor" if model == "none" else model, episode_seeds=True)
        return self._lockstep[key]

    def run_lockstep(self, method: str, model: str, episodes: Sequence[Tuple[int, int]],
                     gif_dir: Optional[str] = None,
                     gif_choice: Optional[goal_eval.GifChoice] = None,
                     goal_positions: Optional[Dict[int, int]] = None) -> List[Dict[str, Any]]:
        """Runs the (seed, goal index) ``episodes`` of one cell together; returns their records
        in that order, each equal to :meth:`run_goals`'s for its seed and goal (``seconds``: the
        block's wall time over its episodes). With ``gif_dir``, the episodes ``gif_choice`` keeps
        (keyed by cell and seed, at their goal's position in ``goal_positions``: goal index ->
        position in the evaluated goals, default the index) are saved as GIFs there."""
        while len(self._envs) < len(episodes):
            self._envs.append(goal_env.GoalConditionedPyEnvironment(self.goal_set))
        envs = self._envs[:len(episodes)]
        for env, (_, goal) in zip(envs, episodes):
            env.set_goal(int(goal))
        batched = batched_py_environment.BatchedPyEnvironment(envs, multithreading=False)
        tf_policy = self.lockstep_policy(method, model)
        policy = py_tf_eager_policy.PyTFEagerPolicy(tf_policy, use_tf_function=True,
                                                    batch_time_steps=False)
        state = tf_policy.get_initial_state(len(episodes))
        if "seed" in state:
            state = dict(state, seed=np.array([s for s, _ in episodes], np.int64))
        frames: List[np.ndarray] = []
        observers = [lambda traj: frames.append(np.concatenate(
            [traj.observation["image"], traj.observation["goal_image"]], axis=2))] \
            if gif_dir and gif_choice is not None else []
        driver = py_driver.PyDriver(batched, policy, observers=observers,
                                    max_episodes=len(episodes), end_episode_on_boundary=False)
        start = time.time()
        driver.run(batched.reset(), state)
        seconds = (time.time() - start) / len(episodes)
        cost = factory.PLANNER_COST.get(method, "none")
        records = []
        for b, (env, (seed, goal)) in enumerate(zip(envs, episodes)):
            row = env.episode_metrics()
            records.append(results_lib.episode_record(method, model, cost, seed, row, seconds))
            logging.info("%s, seed %d, goal %d (lockstep %d/%d): success %s, object %.3f -> "
                         "%.3f m", report.cell_name((method, model)), seed, int(goal), b + 1,
                         len(episodes), bool(row["success"]), row["start_object_distance"],
                         row["object_distance"])
            position = (goal_positions or {}).get(int(goal), int(goal))
            if frames and gif_choice.keep((method, model, seed), position,
                                          bool(row["success"]), seed):
                os.makedirs(gif_dir, exist_ok=True)
                tag = gif_tag(method, model, seed)
                goal_eval.save_gif(os.path.join(gif_dir, f"{tag}goal{int(goal)}.gif"),
                                   [f[b] for f in frames], title=f"{tag} goal {int(goal)}",
                                   success=bool(row["success"]))
        return records

    def close(self):
        """Closes the environments and the simulator (logging the simulator's call rate)."""
        for env in self._envs:
            env.close()
        self.env.close()
        if self.simulator is not None:
            logging.info("Simulator model: %d rollout calls, %.3f s per call",
                         self.simulator.calls,
                         self.simulator.seconds / max(self.simulator.calls, 1))
            self.simulator.close()


def gif_tag(method: str, model: str, seed: int) -> str:
    """The GIF file prefix of a cell's episode of ``seed``."""
    return f"{method}_seed{seed}_" if model in ("none", "predictor") else \
        f"{method}_{model}_seed{seed}_"
