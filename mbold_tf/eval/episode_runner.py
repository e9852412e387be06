"""Runs evaluation episodes of (method, planning model, seed) policies on one goal set.

Shared by the sequential evaluation (:mod:`mbold_tf.eval.policy_eval`) and the Beam one
(:mod:`mbold_tf.eval.beam_eval`), so that both build the same policies and write the same
per-episode records.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

from absl import logging
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
        tag = f"{method}_seed{seed}_" if model in ("none", "predictor") else \
            f"{method}_{model}_seed{seed}_"
        rows = goal_eval.evaluate_py_policy(
            self.env, self.policy(method, model, seed), goal_indices, gif_dir=gif_dir,
            num_gifs=num_gifs, tag=tag, title=f"{report.cell_name((method, model))}, seed {seed},")
        cost = factory.PLANNER_COST.get(method, "none")
        return [results_lib.episode_record(method, model, cost, seed, r, r["seconds"])
                for r in rows]

    def close(self):
        """Closes the environment and the simulator (logging the simulator's call rate)."""
        self.env.close()
        if self.simulator is not None:
            logging.info("Simulator model: %d rollout calls, %.3f s per call",
                         self.simulator.calls,
                         self.simulator.seconds / max(self.simulator.calls, 1))
            self.simulator.close()
