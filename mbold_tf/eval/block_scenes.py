"""Does a distance value keeping the block in play? Scenes built from a push task's test goals.

For every goal of a push :class:`~mbold_tf.envs.goals.GoalSet` the episode's start scene is
rendered four ways, the arm always at its start pose and the other blocks where they start; only
the goal's moved block changes place (PRIVILEGED: the scenes are built from simulator state, for
evaluation only):

* ``at_goal``: the block where the goal image has it (the task solved, the arm elsewhere);
* ``start``: the block where it starts (nothing done);
* ``far``: the block ``far_m`` beyond its goal, on the line from the start through the goal (an
  overshoot), kept on the table;
* ``removed``: the block off the table, out of the camera's view (swept off).

A distance that plans pushes well orders them at_goal < start < removed, and at_goal < far. The
share of goals where ``removed`` scores closer than ``start`` is how often the distance prefers
sweeping the block off the table to leaving it alone.
"""
from __future__ import annotations

from typing import Dict

import numpy as np

from mbold_tf.envs import goal_env
from mbold_tf.envs import goals as goals_lib
from mbold_tf.envs import scene

SCENES = ("at_goal", "start", "far", "removed")
# The table top spans x in [-0.5, 0.5], y in [0.18, 1.02] (scene.py); keep a block's centre
# this far inside its edges.
TABLE_XY = ((-0.45, 0.45), (0.23, 0.97))
OFF_TABLE = (3.0, 3.0, -1.0)


def _far_xy(start_xy: np.ndarray, goal_xy: np.ndarray, far_m: float) -> np.ndarray:
    """float [2]: ``far_m`` past the goal along start → goal, clipped to the table top."""
    direction = goal_xy - start_xy
    norm = np.linalg.norm(direction)
    direction = direction / norm if norm > 1e-6 else np.array([1.0, 0.0])
    xy = goal_xy + far_m * direction
    return np.array([np.clip(xy[0], *TABLE_XY[0]), np.clip(xy[1], *TABLE_XY[1])])


def scene_images(goal_set: goals_lib.GoalSet, far_m: float = 0.25) -> Dict[str, np.ndarray]:
    """{scene: uint8 [G, 64, 64, 3]} for every goal, plus 'goal_image' uint8 [G, 64, 64, 3]
    and 'block_xy' float32 [G, 4, 2] (the moved block's x-y in each scene, SCENES order)."""
    if not goal_set.task.startswith("push"):
        raise ValueError(f"Block scenes need a push task; the goal set is for "
                         f"{goal_set.task!r}.")
    env = goal_env.GoalConditionedPyEnvironment(goal_set)
    out = {name: [] for name in SCENES}
    xys = []
    try:
        for i in range(len(goal_set)):
            env.set_goal(i)
            env.reset()
            physics = env.physics
            block = env.moved_object
            qadr = int(physics.model.jnt_qposadr[physics.model.name2id(f"block{block}",
                                                                         "joint")])
            start_xy = physics.block_pos()[block, :2].copy()
            goal_xy = np.asarray(goal_set.goal_privileged(i)["block_pos"])[block, :2]
            places = {"at_goal": (*goal_xy, scene.BLOCK_HALF),
                      "start": (*start_xy, scene.BLOCK_HALF),
                      "far": (*_far_xy(start_xy, goal_xy, far_m), scene.BLOCK_HALF),
                      "removed": OFF_TABLE}
            for name in SCENES:
                physics.data.qpos[qadr:qadr + 7] = [*places[name], 1, 0, 0, 0]
                physics.forward()
                out[name].append(physics.render_image(goal_set.goal_images.shape[1]))
            xys.append([places[n][:2] for n in SCENES])
    finally:
        env.close()
    result = {name: np.stack(v) for name, v in out.items()}
    result["goal_image"] = np.asarray(goal_set.goal_images)
    result["block_xy"] = np.asarray(xys, np.float32)
    return result


def scene_distances(distance_obj, images: Dict[str, np.ndarray]) -> Dict:
    """Scores :func:`scene_images` with ``distance_obj.distance`` (float32 [B] from image, goal).

    Returns a JSON-able dict: ``mean`` and ``per_goal`` (lists of G floats) for each scene, and
    the share of goals where a scene scores closer than another (``closer['removed<start']``,
    ``'far<start'``, ``'at_goal<start'``, ``'at_goal<far'``, ``'at_goal<removed'``).
    """
    goal = images["goal_image"]
    d = {name: np.asarray(distance_obj.distance(images[name], goal), np.float64)
         for name in SCENES}
    pairs = (("removed", "start"), ("far", "start"), ("at_goal", "start"), ("at_goal", "far"),
             ("at_goal", "removed"))
    return {"goals": int(len(goal)),
            "mean": {n: float(v.mean()) for n, v in d.items()},
            "per_goal": {n: [round(float(x), 4) for x in v] for n, v in d.items()},
            "closer": {f"{a}<{b}": float(np.mean(d[a] < d[b])) for a, b in pairs}}
