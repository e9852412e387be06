"""How well planning costs rank candidate plans by their true outcome (a check without MPC).

For each goal of a goal set: sample N action sequences from CEM's first sampling distribution
(zero mean, the task's collection std, the correlated-noise filter), predict their frames with the
video predictor, run each in the simulator from the goal's start state (real frames and the true
final distance of the task's object to its goal: end effector for reach, the moved block for
push, the slide for the door), and score every sequence with each planning cost twice: on the
predicted frames, as the planner does, and on the real ones. Per cost it reports

* ``spearman_predicted`` / ``spearman_real``: Spearman ρ between the cost and the true final
  distance, averaged over goals;
* ``elite_distance_predicted`` / ``elite_distance_real``: the mean true final distance of the K
  best-scored sequences (CEM's first elites), against ``best_elite_distance`` (the K truly best)
  and ``mean_distance`` (any K).

A cost that ranks real outcomes badly is limited by the distance it reads; a drop from real to
predicted frames is the predictor's share.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf

from mbold_tf.envs import goal_env
from mbold_tf.envs import goals as goals_lib
from mbold_tf.envs import metrics
from mbold_tf.envs import tasks
from mbold_tf.eval import stats
from mbold_tf.planning import cem


def rollout(env: goal_env.GoalConditionedPyEnvironment, goal_index: int,
            actions: np.ndarray) -> Dict[str, np.ndarray]:
    """Runs action sequences from a goal's start state in the simulator.

    Args:
      env: the goal set's environment; goal_index: which goal's start state and goal.
      actions: float32 [N, h, A].
    Returns:
      dict: ``frames`` uint8 [N, h, 64, 64, 3] (the observation after each action) and
      ``distance`` float64 [N], the task's object distance to the goal after the last action.
    """
    frames, distance = [], []
    goal = env.goal_set.goal_privileged(goal_index)
    moved = int(env.goal_set.moved_object[goal_index])
    for sequence in actions:
        env.set_goal(goal_index)
        env.reset()
        frames.append(np.stack([env.step(a).observation["image"] for a in sequence]))
        final = tasks.privileged_state(env.physics)
        distance.append(metrics.object_distance(env.spec, final, goal, moved))
    return {"frames": np.stack(frames), "distance": np.asarray(distance)}


def rank_costs(goal_set: goals_lib.GoalSet, predictor, cost_fns: Dict[str, Callable],
               num_sequences: int = 100, num_elites: int = 10, beta: float = 0.5,
               seed: int = 0, goal_indices: Optional[Sequence[int]] = None) -> Dict:
    """Scores sampled plans with each cost and compares the ranking with their true outcome.

    Args:
      goal_set: the task's test goals.
      predictor: a trained ``VideoPredictor`` (its horizon is the plans' length).
      cost_fns: name -> ``cost_fn(prediction, observation, actions) -> float32 [N]`` (lower is
        better), as :func:`mbold_tf.planning.costs.make_cost` returns.
      num_sequences: N plans per goal; num_elites: K; beta: the correlated-noise filter's β.
      seed: sampling seed; goal_indices: subset of goals (default: all).
    Returns:
      dict with ``summary`` (per cost name: spearman_predicted, spearman_real,
      elite_distance_predicted, elite_distance_real), ``best_elite_distance``,
      ``mean_distance``, ``num_goals``, ``num_sequences``, and ``per_goal`` rows.
    """
    if not 1 <= num_elites <= num_sequences:
        raise ValueError(f"num_elites={num_elites} must be in [1, num_sequences="
                         f"{num_sequences}].")
    indices = list(goal_indices if goal_indices is not None else range(len(goal_set)))
    horizon = int(predictor.horizon)
    std = cem.as_std(tasks.task_spec(goal_set.task).collection_std)
    env = goal_env.GoalConditionedPyEnvironment(goal_set)
    per_goal: List[Dict] = []
    try:
        for i in indices:
            actions = cem.correlated_samples(
                tf.zeros([horizon, std.shape[0]]), std, num_sequences, beta,
                tf.constant([seed, i], tf.int64)).numpy()
            env.set_goal(i)
            start = env.reset().observation
            start_image = start["image"]
            tile = lambda x: np.repeat(x[None], num_sequences, axis=0)
            observation = {"image": tf.constant(tile(start_image)),
                           "goal_image": tf.constant(tile(goal_set.goal_images[i]))}
            predicted = (predictor.predict(tile(start_image)[:, None], actions,
                                           tile(start["joint_pos"])[:, None])
                         if getattr(predictor, "state_conditioned", False)
                         else predictor.predict(tile(start_image)[:, None], actions))
            real = rollout(env, i, actions)
            real_frames = tf.constant(real["frames"], tf.float32) / 255.0
            true = real["distance"]
            order = np.sort(true)
            row = {"goal_index": int(i), "best_elite_distance": float(order[:num_elites].mean()),
                   "mean_distance": float(true.mean())}
            for name, cost_fn in cost_fns.items():
                for frames_name, frames in (("predicted", predicted), ("real", real_frames)):
                    cost = np.asarray(cost_fn(frames, observation, tf.constant(actions)))
                    row[f"{name}/spearman_{frames_name}"] = stats.spearman(cost, true)
                    row[f"{name}/elite_distance_{frames_name}"] = float(
                        true[np.argsort(cost, kind="stable")[:num_elites]].mean())
            per_goal.append(row)
    finally:
        env.close()
    summary = {name: {key: float(np.mean([r[f"{name}/{key}"] for r in per_goal]))
                      for key in ("spearman_predicted", "spearman_real",
                                  "elite_distance_predicted", "elite_distance_real")}
               for name in cost_fns}
    return {"summary": summary, "num_goals": len(per_goal), "num_sequences": num_sequences,
            "num_elites": num_elites,
            "best_elite_distance": float(np.mean([r["best_elite_distance"] for r in per_goal])),
            "mean_distance": float(np.mean([r["mean_distance"] for r in per_goal])),
            "per_goal": per_goal}


def format_table(result: Dict) -> str:
    """A fixed-width text table of :func:`rank_costs`' summary."""
    lines = [f"{'cost':<24}{'rho pred':>10}{'rho real':>10}{'elite d pred':>14}"
             f"{'elite d real':>14}"]
    for name, s in result["summary"].items():
        lines.append(f"{name:<24}{s['spearman_predicted']:>10.3f}{s['spearman_real']:>10.3f}"
                     f"{s['elite_distance_predicted']:>14.3f}{s['elite_distance_real']:>14.3f}")
    lines.append(f"(true distance of the {result['num_elites']} truly best plans "
                 f"{result['best_elite_distance']:.3f} m, of any plan "
                 f"{result['mean_distance']:.3f} m; {result['num_goals']} goals × "
                 f"{result['num_sequences']} plans)")
    return "\n".join(lines)
