"""Run a policy over a task's goal set with TF-Agents drivers and collect the paper's metrics."""
from __future__ import annotations

import csv
import json
import os
import time
from typing import Dict, List, Optional, Sequence

from absl import logging
import numpy as np
from tf_agents.drivers import py_driver
from tf_agents.metrics import py_metrics

from mbold_tf.envs import goal_env


class _FinalMetrics:
    """Driver observer: reads the env's episode metrics at each episode's last step."""

    def __init__(self, env: goal_env.GoalConditionedPyEnvironment):
        self.env = env
        self.rows: List[Dict[str, float]] = []

    def __call__(self, trajectory):
        if trajectory.is_last():
            self.rows.append(self.env.episode_metrics())


class _FrameRecorder:
    """Driver observer: keeps the frames of the current episode (image beside goal image)."""

    def __init__(self):
        self.frames: List[np.ndarray] = []

    def __call__(self, trajectory):
        obs = trajectory.observation
        self.frames.append(np.concatenate([obs["image"], obs["goal_image"]], axis=1))


def save_gif(path: str, frames: Sequence[np.ndarray], scale: int = 3, fps: int = 5) -> None:
    """Writes uint8 frames [H, W, 3] (upscaled ``scale``×) as an animated GIF."""
    from PIL import Image  # pylint: disable=g-import-not-at-top

    images = [Image.fromarray(np.asarray(f, np.uint8)).resize(
        (f.shape[1] * scale, f.shape[0] * scale), Image.NEAREST) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps),
                   loop=0)


def evaluate_py_policy(env: goal_env.GoalConditionedPyEnvironment, policy,
                       goal_indices: Sequence[int], gif_dir: Optional[str] = None,
                       num_gifs: int = 0, tag: str = "") -> List[Dict[str, float]]:
    """Runs ``policy`` (a TF-Agents PyPolicy) once on each goal in ``goal_indices``.

    Returns one dict per goal: goal_index, success (0/1), object_distance (m), arm_distance (m).
    With ``gif_dir``, the first ``num_gifs`` episodes are saved as
    ``<gif_dir>/<tag>goal<index>.gif`` (the camera image left, the goal image right).
    """
    final = _FinalMetrics(env)
    steps = py_metrics.EnvironmentSteps()
    recorder = _FrameRecorder()
    observers = [final, steps] + ([recorder] if gif_dir and num_gifs else [])
    driver = py_driver.PyDriver(env, policy, observers=observers, max_episodes=1)
    for n, i in enumerate(goal_indices):
        env.set_goal(int(i))
        time_step = env.reset()
        recorder.frames = []
        start = time.time()
        driver.run(time_step, policy.get_initial_state(batch_size=None))
        row = final.rows[-1] if final.rows else {}
        logging.info("%sepisode %d/%d (goal %d): success %s, object %.3f m, arm %.3f m, %.1f s",
                     tag, n + 1, len(goal_indices), int(i), bool(row.get("success", 0)),
                     row.get("object_distance", float("nan")),
                     row.get("arm_distance", float("nan")), time.time() - start)
        if gif_dir and n < num_gifs and recorder.frames:
            os.makedirs(gif_dir, exist_ok=True)
            save_gif(os.path.join(gif_dir, f"{tag}goal{int(i)}.gif"), recorder.frames)
    return final.rows


def summarize(rows_per_seed: Dict[str, Dict[int, List[Dict[str, float]]]]) -> List[Dict]:
    """Per method: mean ± std over seeds of success rate and mean distances.

    Args:
      rows_per_seed: method -> seed -> per-goal rows from :func:`evaluate_py_policy`.
    Returns:
      list of dicts with method, seeds, goals, success_mean, success_std, object_distance,
      arm_distance.
    """
    table = []
    for method, by_seed in rows_per_seed.items():
        rates = [np.mean([r["success"] for r in rows]) for rows in by_seed.values()]
        everything = [r for rows in by_seed.values() for r in rows]
        table.append({
            "method": method, "seeds": len(by_seed),
            "goals": len(everything) // max(len(by_seed), 1),
            "success_mean": float(np.mean(rates)), "success_std": float(np.std(rates)),
            "object_distance": float(np.mean([r["object_distance"] for r in everything])),
            "arm_distance": float(np.mean([r["arm_distance"] for r in everything]))})
    return table


def format_table(table: List[Dict]) -> str:
    """The summary as a Markdown table (success in %, distances in m)."""
    lines = ["| method | seeds | goals | success % | object dist (m) | arm dist (m) |",
             "|---|---|---|---|---|---|"]
    for r in table:
        lines.append(f"| {r['method']} | {r['seeds']} | {r['goals']} | "
                     f"{100 * r['success_mean']:.1f} ± {100 * r['success_std']:.1f} | "
                     f"{r['object_distance']:.3f} | {r['arm_distance']:.3f} |")
    return "\n".join(lines)


def write_results(out_dir: str, rows_per_seed, table) -> None:
    """Writes results.json (table + per-goal rows) and per_goal.csv under ``out_dir``."""
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump({"table": table, "per_goal": {m: {str(s): rows for s, rows in d.items()}
                                                for m, d in rows_per_seed.items()}}, f, indent=1)
    with open(os.path.join(out_dir, "per_goal.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", "seed", "goal_index", "success", "object_distance",
                    "arm_distance"])
        for m, d in rows_per_seed.items():
            for s, rows in d.items():
                for r in rows:
                    w.writerow([m, s, int(r["goal_index"]), int(r["success"]),
                                f"{r['object_distance']:.4f}", f"{r['arm_distance']:.4f}"])
    with open(os.path.join(out_dir, "table.md"), "w") as f:
        f.write(format_table(table) + "\n")
