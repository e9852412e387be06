"""Goal-conditioned TF-Agents ``PyEnvironment`` over a task and its goal set.

Each episode starts from a goal's start state; the observation carries the current ``image``,
the ``goal_image``, ``joint_pos`` and ``gripper``. The reward is 1.0 on steps where the task's
success metric holds (so TF-Agents' ``AverageReturnMetric`` counts successful steps) and the
episode lasts the task's 30 steps; :meth:`GoalConditionedPyEnvironment.episode_metrics` gives
the final-step success, object distance and arm distance that the paper reports.

Wrap it with ``tf_py_environment.TFPyEnvironment`` for TF drivers and ``TFPolicy``s.
"""
from __future__ import annotations

from typing import Dict, Optional

import numpy as np
from tf_agents.environments import py_environment
from tf_agents.specs import array_spec
from tf_agents.trajectories import time_step as ts_lib

from mbold_tf.envs import goals as goals_lib
from mbold_tf.envs import metrics
from mbold_tf.envs import scene
from mbold_tf.envs import tasks


def array_specs(image_size: int = 64, proprio_dim: int = len(scene.ARM_JOINTS),
                gripper: bool = True, action_dim: int = tasks.ACTION_DIM):
    """(observation spec dict, action spec) of a goal-conditioned robot (numpy specs).

    observation: image, goal_image uint8 [S, S, 3]; joint_pos float32 [proprio_dim] (7 for the
    tabletop arm); gripper float32 [2] when ``gripper``. action: float32 [action_dim] in [-1, 1].
    The defaults are the tabletop tasks'; another robot's come from its training data.
    """
    size = image_size
    obs_spec = {
        "image": array_spec.BoundedArraySpec((size, size, 3), np.uint8, 0, 255, "image"),
        "goal_image": array_spec.BoundedArraySpec((size, size, 3), np.uint8, 0, 255,
                                                  "goal_image"),
        "joint_pos": array_spec.ArraySpec((int(proprio_dim),), np.float32, "joint_pos"),
    }
    if gripper:
        obs_spec["gripper"] = array_spec.ArraySpec((2,), np.float32, "gripper")
    action_spec = array_spec.BoundedArraySpec((int(action_dim),), np.float32, -1.0, 1.0,
                                              "action")
    return obs_spec, action_spec


def tf_specs(image_size: int = 64, **robot):
    """(time_step_spec, action_spec) as TF specs, for building TFPolicies without an env.

    ``robot``: proprio_dim, gripper, action_dim as in :func:`array_specs`.
    """
    from tf_agents.specs import tensor_spec  # pylint: disable=g-import-not-at-top

    obs_spec, action_spec = array_specs(image_size, **robot)
    return (tensor_spec.from_spec(ts_lib.time_step_spec(obs_spec)),
            tensor_spec.from_spec(action_spec))


class GoalConditionedPyEnvironment(py_environment.PyEnvironment):
    """A task whose episodes are the goals of a :class:`~mbold_tf.envs.goals.GoalSet`.

    Args:
      goal_set: the goals; episodes cycle through them in order unless :meth:`set_goal` picks one.
      image_size: passed to :func:`mbold_tf.envs.tasks.load` (the task sets the action scale).
    """

    def __init__(self, goal_set: goals_lib.GoalSet, image_size: int = 64):
        super().__init__(handle_auto_reset=True)  # a step after LAST starts the next goal
        self.goal_set = goal_set
        self.spec = tasks.task_spec(goal_set.task)
        self._env = tasks.load(goal_set.task, seed=0, image_size=image_size)
        self._steps = tasks.EPISODE_STEPS
        self._next_goal = 0
        self._goal: Optional[int] = None
        self._t = 0
        self._start: Optional[Dict[str, np.ndarray]] = None  # privileged state at reset
        self._obs_spec, self._action_spec = array_specs(image_size)

    # -- specs -----------------------------------------------------------------------------------
    def observation_spec(self):
        return self._obs_spec

    def action_spec(self):
        return self._action_spec

    @property
    def physics(self) -> tasks.TabletopPhysics:
        return self._env.physics

    @property
    def goal_index(self) -> Optional[int]:
        """Index of the current episode's goal (None before the first reset)."""
        return self._goal

    def set_goal(self, index: int):
        """The next reset starts goal ``index`` (ValueError names the allowed range)."""
        self._next_goal = self.goal_set.check_index(index)

    # -- episode ---------------------------------------------------------------------------------
    def _observation(self) -> Dict[str, np.ndarray]:
        obs = self._env.task.get_observation(self.physics)
        obs["goal_image"] = self.goal_set.goal_images[self._goal]
        return obs

    def _reset(self):
        self._goal = self._next_goal
        self._next_goal = (self._goal + 1) % len(self.goal_set)
        self._env.reset()
        self.physics.set_state_vector(self.goal_set.start_states[self._goal])
        self._start = tasks.privileged_state(self.physics)
        self._t = 0
        return ts_lib.restart(self._observation())

    def _step(self, action):
        # before_step validates the action before touching the physics: a bad action raises
        # and leaves the state unchanged.
        self._env.task.before_step(action, self.physics)
        self.physics.step(tasks.N_SUBSTEPS)
        self._t += 1
        reward = np.float32(self.is_success())
        obs = self._observation()
        if self._t >= self._steps:
            return ts_lib.termination(obs, reward)
        return ts_lib.transition(obs, reward)

    # -- metrics ---------------------------------------------------------------------------------
    def is_success(self) -> bool:
        """Whether the current state meets the goal (task threshold)."""
        return metrics.success(self.spec, tasks.privileged_state(self.physics),
                               self.goal_set.goal_privileged(self._goal),
                               int(self.goal_set.moved_object[self._goal]))

    def episode_metrics(self) -> Dict[str, float]:
        """The current goal's metrics, read now (at the final step for the paper's numbers).

        Returns floats: goal_index; success (0/1); object_distance and arm_distance (m, now);
        start_object_distance and start_arm_distance (m, at the episode's reset);
        object_displacement (m the task's object moved since the reset, any block for push
        tasks) and object_moved (1.0 when that exceeds :data:`metrics.MOVED_THRESHOLD`), so a
        policy that leaves the object where it was cannot pass for one that moved it closer.
        """
        if self._goal is None or self._start is None:
            raise RuntimeError("episode_metrics() before the first reset(): no episode yet.")
        final = tasks.privileged_state(self.physics)
        goal = self.goal_set.goal_privileged(self._goal)
        moved = int(self.goal_set.moved_object[self._goal])
        displacement = metrics.object_displacement(self.spec, self._start, final)
        return {"goal_index": float(self._goal),
                "success": float(metrics.success(self.spec, final, goal, moved)),
                "object_distance": metrics.object_distance(self.spec, final, goal, moved),
                "arm_distance": metrics.arm_distance(final, goal),
                "start_object_distance": metrics.object_distance(self.spec, self._start, goal,
                                                                 moved),
                "start_arm_distance": metrics.arm_distance(self._start, goal),
                "object_displacement": displacement,
                "object_moved": float(displacement > metrics.MOVED_THRESHOLD)}

    def copy_environment(self):
        """A new dm_control environment of the same task, action scale and image size.

        Its physics takes this one's state through ``get_state_vector``/``set_state_vector``;
        the simulator-as-model evaluation (:mod:`mbold_tf.envs.simulator`) steps it.
        """
        task = self._env.task
        return tasks.load(self.goal_set.task, seed=0, image_size=task.image_size)

    def current_goal_privileged(self) -> Dict[str, np.ndarray]:
        """Privileged state of the current episode's goal (evaluation only)."""
        if self._goal is None:
            raise RuntimeError("No episode yet: call reset() first.")
        return self.goal_set.goal_privileged(self._goal)

    @property
    def moved_object(self) -> int:
        """Index of the block the current goal moves (0 without blocks)."""
        return int(self.goal_set.moved_object[self._goal or 0])

    def render(self, mode: str = "rgb_array"):
        return self.physics.render_image()

    def close(self):
        tasks.close(self._env)


def make_env(task: str = "push1", goal: int = 0, num_goals: int = 100, hard: bool = False,
             seed: int = 0) -> GoalConditionedPyEnvironment:
    """The goal-conditioned env of ``task`` set to goal ``goal`` of its seeded goal set.

    A ``module:callable`` for ``mbold_tf/export/robot_side.py --env``; episodes start from that
    goal's start state.
    """
    goal_set = goals_lib.generate_goal_set(task, num_goals=num_goals, hard=hard, seed=seed)
    env = GoalConditionedPyEnvironment(goal_set)
    env.set_goal(goal)
    return env
