"""Export a goal-reaching policy built from trained runs: the shared path of ``launch.export``
and the quickstart.

A tabletop task gives CEM's initial std (its data-collection std) and the tabletop arm's spec;
without one (your own robot) both come from the training data that the runs recorded in
``data_stats.json``. ``mbold_export.json`` records which was used.
"""
from __future__ import annotations

import json
import os
from typing import Dict, Optional

from mbold_tf.data import rlds
from mbold_tf.envs import goal_env
from mbold_tf.envs import tasks
from mbold_tf.export import robot_side
from mbold_tf.export import saved_model
from mbold_tf.planning import factory
from mbold_tf.utils import flops
from mbold_tf.utils import training


def robot_settings(task: Optional[str], run_dirs) -> Dict:
    """CEM's initial std and the observation/action spec, and where they came from.

    A tabletop ``task`` gives its collection std and the tabletop arm's spec; otherwise the first
    of ``run_dirs`` with a ``data_stats.json`` gives the data's per-dimension action std and the
    data's action and proprioception sizes (no gripper entry).
    """
    if task is not None:
        if task not in tasks.TASKS:
            raise training.SettingError(f"Unknown --task={task!r}; choose one of "
                                        f"{sorted(tasks.TASKS)}, or omit it to take CEM's "
                                        f"initial std from the training data.")
        return {"init_std": list(tasks.task_spec(task).collection_std),
                "init_std_source": f"task {task!r} data-collection std", "robot": {}}
    for run_dir in run_dirs:
        stats = rlds.read_data_stats(run_dir) if run_dir else None
        if stats:
            return {"init_std": [max(float(s), 1e-3) for s in stats["action_std"]],
                    "init_std_source": f"action std of {stats['dataset']} "
                                       f"({os.path.join(run_dir, rlds.DATA_STATS_NAME)})",
                    "robot": {"proprio_dim": stats["proprio_dim"], "gripper": False,
                              "action_dim": stats["action_dim"]}}
    raise training.SettingError("No --task and no data_stats.json in the given runs (trained "
                                "before they were recorded): pass --task, or retrain.")


def export(task: Optional[str], method: str, models: dict, out: str, seed: int = 0,
           info=None, run_dirs=()) -> str:
    """Builds ``method``'s policy from ``models`` and writes the SavedModel to ``out``.

    ``task`` None: CEM's initial std and the robot's spec come from ``run_dirs``' training data
    (:func:`robot_settings`); ``mbold_export.json`` records which.
    """
    robot = robot_settings(task, run_dirs)
    time_step_spec, action_spec = goal_env.tf_specs(**robot["robot"])
    policy = factory.make_policy(method, time_step_spec, action_spec, robot["init_std"], models,
                                 seed=seed)
    path = saved_model.export_policy(policy, out, {
        "task": task, "method": method, "init_std": robot["init_std"],
        "init_std_source": robot["init_std_source"], **(info or {})})
    record_timing(path)
    return path


def record_timing(path: str) -> Dict:
    """Loads the export with the robot runner (its warm-up times a first call, a step and a plan)
    and records the seconds, the deadline this machine holds, the machine and its load average
    in ``mbold_export.json`` under ``measured_on_export``; returns that record."""
    load = [round(x, 2) for x in os.getloadavg()]
    measured = dict(robot_side.RobotPolicy(path).warm_up_s, machine=_machine(),
                    load_average_1_5_15min=load,
                    note="other processes share the cores when the load average exceeds them")
    meta_path = os.path.join(path, robot_side.METADATA_FILE)
    with open(meta_path) as f:
        meta = json.load(f)
    meta["measured_on_export"] = measured
    with open(meta_path + ".tmp", "w") as f:
        json.dump(meta, f, indent=1)
    os.replace(meta_path + ".tmp", meta_path)
    return measured


def _machine() -> str:
    """'<CPU model>, <n> logical cores' (:func:`mbold_tf.utils.flops.cpu_model`)."""
    return f"{flops.cpu_model()}, {os.cpu_count()} logical cores"
