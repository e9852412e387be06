"""Success and distance metrics with the paper's thresholds (Table 4, App. E.1).

All functions take privileged-state dicts as returned by
:func:`mbold_tf.envs.tasks.privileged_state` (``ee_pos`` [3], ``block_pos`` [n, 3],
``door_pos`` [1]).
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from mbold_tf.envs.tasks import TaskSpec

MOVED_THRESHOLD = 0.01  # m: an object displaced less than this "did not move" (App. A.3's 1 cm)


def object_distance(spec: TaskSpec, final: Mapping[str, np.ndarray],
                    goal: Mapping[str, np.ndarray], moved_object: int = 0) -> float:
    """Distance (m) of the task's relevant quantity to its goal value.

    reach: end-effector distance (3-D); push: the goal's moved block, x-y distance;
    door_slide: |slide − goal slide|.
    """
    if spec.success_key == "ee":
        return float(np.linalg.norm(np.asarray(final["ee_pos"]) - np.asarray(goal["ee_pos"])))
    if spec.success_key == "block":
        if not 0 <= moved_object < spec.num_blocks:
            raise ValueError(f"moved_object={moved_object} is out of range "
                             f"[0, {spec.num_blocks - 1}] for task {spec.name!r}.")
        f = np.asarray(final["block_pos"])[moved_object, :2]
        g = np.asarray(goal["block_pos"])[moved_object, :2]
        return float(np.linalg.norm(f - g))
    if spec.success_key == "door":
        return float(abs(float(np.asarray(final["door_pos"])[0]) -
                         float(np.asarray(goal["door_pos"])[0])))
    raise ValueError(f"Unknown success_key {spec.success_key!r}")


def arm_distance(final: Mapping[str, np.ndarray], goal: Mapping[str, np.ndarray]) -> float:
    """End-effector distance (m) to the goal's end effector (App. E.1's arm-position metric)."""
    return float(np.linalg.norm(np.asarray(final["ee_pos"]) - np.asarray(goal["ee_pos"])))


def success(spec: TaskSpec, final: Mapping[str, np.ndarray], goal: Mapping[str, np.ndarray],
            moved_object: int = 0) -> bool:
    """True when :func:`object_distance` is within the task's threshold (0.05/0.05/0.075 m)."""
    return object_distance(spec, final, goal, moved_object) <= spec.success_threshold


def object_displacement(spec: TaskSpec, start: Mapping[str, np.ndarray],
                        final: Mapping[str, np.ndarray]) -> float:
    """How far (m) the task's object moved between two privileged states.

    reach: the end effector (3-D); push: the largest x-y displacement of any block (moving a
    distractor counts as moving); door_slide: |Δ slide|.
    """
    if spec.success_key == "ee":
        return float(np.linalg.norm(np.asarray(final["ee_pos"]) - np.asarray(start["ee_pos"])))
    if spec.success_key == "block":
        delta = np.asarray(final["block_pos"])[:, :2] - np.asarray(start["block_pos"])[:, :2]
        return float(np.max(np.linalg.norm(delta, axis=-1))) if len(delta) else 0.0
    if spec.success_key == "door":
        return float(abs(float(np.asarray(final["door_pos"])[0]) -
                         float(np.asarray(start["door_pos"])[0])))
    raise ValueError(f"Unknown success_key {spec.success_key!r}")
