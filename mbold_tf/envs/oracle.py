"""Privileged observations for oracle planners (debugging and tests only, never for learning).

:class:`PrivilegedObservation` adds the end-effector position and the goal's end-effector
position to a :class:`~mbold_tf.envs.goal_env.GoalConditionedPyEnvironment`'s observation, so a
planner with a perfect cost (true distance) can be checked without any learned model.
"""
import numpy as np
from tf_agents.environments import wrappers
from tf_agents.specs import array_spec


class PrivilegedObservation(wrappers.PyEnvironmentBaseWrapper):
    """Adds ``ee_pos`` and ``goal_ee_pos`` (float32 [3], metres) to the observation."""

    def observation_spec(self):
        spec = dict(self._env.observation_spec())
        spec["ee_pos"] = array_spec.ArraySpec((3,), np.float32, "ee_pos")
        spec["goal_ee_pos"] = array_spec.ArraySpec((3,), np.float32, "goal_ee_pos")
        return spec

    def _augment(self, time_step):
        obs = dict(time_step.observation)
        obs["ee_pos"] = self._env.physics.ee_pos().astype(np.float32)
        obs["goal_ee_pos"] = self._env.goal_set.goal_ee[self._env.goal_index].astype(np.float32)
        return time_step._replace(observation=obs)

    def _reset(self):
        return self._augment(self._env.reset())

    def _step(self, action):
        return self._augment(self._env.step(action))
