"""The true simulator as the planner's model (PRIVILEGED: evaluation only, never for learning).

The control-centric evaluation of the authors' follow-up (VP², Tian, Finn & Wu, ICLR 2023) judges
a video predictor by how well a planner does with it, next to the same planner with the real
simulator as its model. :class:`SimulatorRollouts` is that model: for every candidate action
sequence it restores a private copy of the episode's environment to the current physics state
(MuJoCo's integration state plus the solver's warm start; the copy's frames equal the episode's
own, bit for bit), steps it and renders each frame. The frames come in the video predictor's
layout, so every planning cost scores real future frames instead of predicted ones.

It reads the live episode's physics, which a deployed policy cannot do: tables that use it say
"simulator model (privileged)".
"""
from __future__ import annotations

from concurrent import futures
import time
from typing import Dict, Tuple

import mujoco
import numpy as np

from mbold_tf.envs import metrics
from mbold_tf.envs import tasks

# Integration state + the constraint solver's warm start. Measured on all four tasks: the copy's
# rendered frames equal those of the episode itself, stepped with the same actions, bit for bit
# (tests/test_control_eval.py); its physics state agrees to ~1e-9, with or without the warm start.
_STATE = mujoco.mjtState.mjSTATE_INTEGRATION | mujoco.mjtState.mjSTATE_WARMSTART
# A block-task cost also adds this times the end effector's distance to the goal's moved block,
# so that candidate plans which do not touch the block still differ (a tie-breaker, in metres).
PRIVILEGED_REACH_WEIGHT = 0.1


def _get_state(physics) -> np.ndarray:
    out = np.empty(mujoco.mj_stateSize(physics.model.ptr, _STATE))
    mujoco.mj_getState(physics.model.ptr, physics.data.ptr, out, _STATE)
    return out


class SimulatorRollouts:
    """Rolls candidate action sequences out in a copy of a goal-conditioned environment.

    PRIVILEGED: reads the live episode's physics state; for evaluation upper bounds only.

    Args:
      env: a :class:`~mbold_tf.envs.goal_env.GoalConditionedPyEnvironment` (or any environment
        with ``physics`` (a ``TabletopPhysics``), ``copy_environment()``,
        ``current_goal_privileged()``, ``moved_object`` and ``spec``) whose current episode the
        planner acts in.
    Raises:
      TypeError naming what is missing when ``env``'s state cannot be saved and restored.
    """

    def __init__(self, env):
        missing = [name for name in ("physics", "copy_environment", "current_goal_privileged",
                                     "moved_object", "spec") if not hasattr(env, name)]
        if missing:
            raise TypeError(
                f"The simulator model needs an environment whose physics state can be saved "
                f"and restored (a GoalConditionedPyEnvironment); {type(env).__name__} has no "
                f"{missing}. Use --models=predictor for this environment.")
        self._env = env
        # An EGL context is current in one thread at a time, and TensorFlow calls the model from
        # its own thread pool: one worker thread owns the copy and its renderer.
        self._worker = futures.ThreadPoolExecutor(1, thread_name_prefix="simulator_model")
        self._copy = self._worker.submit(self._make_copy).result()
        self.calls = 0
        self.seconds = 0.0

    def _make_copy(self):
        copy = self._env.copy_environment()
        copy.reset()
        return copy

    @property
    def image_size(self) -> int:
        """Side of the rendered frames."""
        return int(self._copy.task.image_size)

    @property
    def task_spec(self) -> tasks.TaskSpec:
        """The evaluated task's spec (name, success key, threshold, ...)."""
        return self._env.spec

    @property
    def action_scale(self) -> float:
        """Metres the hand moves per unit action per step, along each axis."""
        return float(self._copy.task.action_scale)

    def close(self):
        """Frees the copy's renderer and the worker thread."""
        self._worker.submit(tasks.close, self._copy).result()
        self._worker.shutdown()

    def rollout(self, actions: np.ndarray, current_image: np.ndarray = None
                ) -> Tuple[np.ndarray, np.ndarray]:
        """Steps every sequence from the live episode's current state.

        Args:
          actions: float32 [N, h, A] in [-1, 1].
          current_image: optional uint8 [S, S, 3], the image the policy observed now; when given
            it must equal the restored state's render, else the model is not attached to the
            episode the policy acts in (ValueError).
        Returns:
          frames uint8 [N, h, S, S, 3] (the frames after each action) and privileged costs
          float32 [N, h] (:meth:`privileged_cost` of each of those states).
        """
        return self._worker.submit(self._rollout, actions, current_image).result()

    def _rollout(self, actions, current_image):
        start_time = time.time()
        actions = np.asarray(actions, np.float32)
        if actions.ndim != 3:
            raise ValueError(f"actions must be [N, h, A]; got shape {actions.shape}.")
        source = self._env.physics
        physics, task = self._copy.physics, self._copy.task
        state = _get_state(source)
        n, h = actions.shape[:2]
        size = self.image_size
        frames = np.empty((n, h, size, size, 3), np.uint8)
        privileged = np.empty((n, h), np.float32)
        goal = self._env.current_goal_privileged()
        for i in range(n):
            mujoco.mj_setState(physics.model.ptr, physics.data.ptr, state, _STATE)
            mujoco.mj_forward(physics.model.ptr, physics.data.ptr)
            if i == 0 and current_image is not None:
                now = physics.render_image(size)
                if not np.array_equal(now, np.asarray(current_image)):
                    raise ValueError(
                        "The simulator model's environment is not the one the policy observes: "
                        "the restored state renders another image than the observation. Build "
                        "the simulator model from the environment the evaluation steps.")
            for t in range(h):
                task.before_step(actions[i, t], physics)
                physics.step(tasks.N_SUBSTEPS)
                frames[i, t] = physics.render_image(size)
                privileged[i, t] = self.privileged_cost(tasks.privileged_state(physics), goal)
        self.calls += 1
        self.seconds += time.time() - start_time
        return frames, privileged

    def privileged_cost(self, state: Dict[str, np.ndarray],
                        goal: Dict[str, np.ndarray]) -> float:
        """The task's success distance to the goal (m), a perfect cost for CEM (PRIVILEGED).

        reach: end-effector distance; door: slide distance; push: the moved block's x-y
        distance plus :data:`PRIVILEGED_REACH_WEIGHT` × the end effector's distance to that
        block, so plans that do not touch the block are still ranked.
        """
        spec, moved = self._env.spec, self._env.moved_object
        cost = metrics.object_distance(spec, state, goal, moved)
        if spec.success_key == "block":
            block = np.asarray(state["block_pos"])[moved]
            cost += PRIVILEGED_REACH_WEIGHT * float(
                np.linalg.norm(np.asarray(state["ee_pos"]) - block))
        return cost
