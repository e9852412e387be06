"""Evaluate several policies (by method name) over a goal set and several seeds.

Writes ``results.json`` (table + per-goal rows), ``per_goal.csv``, ``table.md`` and GIFs of the
first episodes of each method (camera beside goal image) under ``out_dir``.
"""
from __future__ import annotations

import os
import time
from typing import Any, Dict, List, Sequence, Tuple

from absl import logging
from tf_agents.specs import tensor_spec

from mbold_tf.envs import goal_env
from mbold_tf.envs import goals as goals_lib
from mbold_tf.envs import tasks
from mbold_tf.eval import goal_eval
from mbold_tf.planning import factory
from mbold_tf.planning import policies


def evaluate_methods(goal_set: goals_lib.GoalSet, methods: Sequence[str],
                     models: Dict[str, Any], seeds: Sequence[int], out_dir: str,
                     num_gifs: int = 3, goal_indices: Sequence[int] = None
                     ) -> Tuple[Dict[str, Dict[int, List[Dict]]], List[Dict]]:
    """Runs every method on every goal for every seed; returns (rows_per_seed, table).

    Args:
      goal_set: the task's test goals.
      methods: names from :data:`mbold_tf.planning.factory.METHODS`.
      models: trained models by role (see :func:`mbold_tf.planning.factory.make_policy`).
      seeds: policy seeds (the env is deterministic given the goal's start state).
      out_dir: where results and GIFs go.
      num_gifs: episodes saved as GIFs per method (first seed only).
      goal_indices: subset of goals (default: all).
    """
    for m in methods:  # fail before any episode runs
        if m not in factory.METHODS:
            raise ValueError(f"Unknown method {m!r}; choose from {factory.METHODS}.")
        missing = [k for k in factory.REQUIRES[m] if models.get(k) is None]
        if missing:
            raise ValueError(f"Method {m!r} needs trained model(s) {missing}.")
    env = goal_env.GoalConditionedPyEnvironment(goal_set)
    time_step_spec = tensor_spec.from_spec(env.time_step_spec())
    action_spec = tensor_spec.from_spec(env.action_spec())
    init_std = tasks.task_spec(goal_set.task).collection_std
    indices = list(goal_indices if goal_indices is not None else range(len(goal_set)))
    rows: Dict[str, Dict[int, List[Dict]]] = {}
    try:
        for method in methods:
            rows[method] = {}
            for seed in seeds:
                t0 = time.time()
                tf_pol = factory.make_policy(method, time_step_spec, action_spec, init_std,
                                             models, seed=seed)
                policy = policies.as_py_policy(tf_pol)
                rows[method][seed] = goal_eval.evaluate_py_policy(
                    env, policy, indices, gif_dir=os.path.join(out_dir, "gifs"),
                    num_gifs=num_gifs if seed == seeds[0] else 0, tag=f"{method}_seed{seed}_")
                rate = sum(r["success"] for r in rows[method][seed]) / max(len(indices), 1)
                logging.info("%s seed %d: success %.1f%% over %d goals (%.1f s/episode)",
                             method, seed, 100 * rate, len(indices),
                             (time.time() - t0) / max(len(indices), 1))
    finally:
        env.close()
    table = goal_eval.summarize(rows)
    goal_eval.write_results(out_dir, rows, table)
    return rows, table
