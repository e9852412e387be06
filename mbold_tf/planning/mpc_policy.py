"""Model-predictive control with CEM as a TF-Agents ``TFPolicy`` (§4 "Control via MBOLD").

Every ``replan_every`` steps the policy runs :func:`mbold_tf.planning.cem.cem` over action
sequences, predicting their outcome with ``model_fn`` and scoring it with ``cost_fn``; between
replans it executes the stored plan. The remaining plan and the step counter live in the policy
state, so the exported SavedModel (``PolicySaver``) replans on the same schedule.

* ``model_fn(observation, actions) -> prediction``: ``observation`` is the batch-1 observation
  nest tiled to N samples, ``actions`` float32 [N, h, A]. For MBOLD it is the video predictor
  (frames [N, h, 64, 64, 3]).
* ``cost_fn(prediction, observation, actions) -> float32 [N]``: lower is better (e.g. the
  learned distance of the last predicted frame to ``observation['goal_image']``); ``prediction``
  and ``actions`` are cut at the episode's end.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import tensorflow as tf
from tf_agents.policies import tf_policy
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import policy_step

from mbold_tf.planning import cem as cem_lib
from mbold_tf.planning import costs
from mbold_tf.utils import flops


def replans_per_episode(episode_length: int, replan_every: int,
                        closed_loop_final_steps: int = 0, final_action_steps: int = 0) -> int:
    """How often :class:`MPCPolicy` runs CEM in an episode of ``episode_length`` steps (int).

    It replans at steps s with s % replan_every == 0, and at every step of the last
    ``closed_loop_final_steps``, except over the last ``final_action_steps`` (no plan there).
    """
    start = episode_length - closed_loop_final_steps
    return sum(1 for s in range(episode_length - final_action_steps)
               if s % replan_every == 0 or s >= start)


class MPCPolicy(tf_policy.TFPolicy):
    """CEM-MPC planner as a TFPolicy; acts on batched time steps (each element planned alone).

    Args:
      time_step_spec, action_spec: the environment's (``TFPyEnvironment``) specs.
      model_fn, cost_fn: see the module docstring.
      init_std: per-dimension std of the initial sampling distribution (the task's collection
        std, Table 4).
      config: :class:`~mbold_tf.planning.cem.CEMConfig` (N, K, I, h); None: the gin-configured
        one, built when the policy is.
      replan_every: execute this many planned actions before replanning (the paper's k = 6;
        1 replans every step).
      warm_start: start each CEM from the previous plan shifted (else from zeros).
      seed: base seed of the planner's stateless sampling.
      episode_length: if given, predictions are cut at the episode's last step before scoring
        (near the end the cost sees the frame at the final step, as the authors' planner did).
      closed_loop_final_steps: replan at every one of the episode's last this many steps (needs
        ``episode_length``): success is judged on the final frame, and there the open-loop
        tail of a plan accumulates the predictor's error. 0 keeps ``replan_every`` throughout.
      final_action_fn: ``(observation nest, batched) -> float32 [B, A]``, the action of the
        episode's last ``final_action_steps`` steps, taken from the real observation instead of
        a plan (e.g. the distance's actor: Eq. 3 scores a plan's last frame by the value of the
        actor's action there, so the plan's implied next action is the actor's).
      final_action_steps: how many of the episode's last steps take ``final_action_fn`` (needs
        ``episode_length`` and ``final_action_fn``); plans then score the frame at step
        ``episode_length - final_action_steps`` and no plan is made inside those steps.
      models: the Keras models / modules ``model_fn`` and ``cost_fn`` use; tracked by the policy
        so that ``PolicySaver`` exports their weights.
      episode_seeds: lockstep evaluation: the batch elements are episodes that advance together
        (all at the same step); each element's base seed is the policy state's ``'seed'``
        (int64 [B], set by the caller after ``get_initial_state``; no automatic state reset
        at FIRST steps) instead of ``seed``, and at
        each CEM iteration the samples of all elements go through ``model_fn`` and ``cost_fn``
        as one batch of B × N (:func:`~mbold_tf.planning.cem.cem_batch`). An element plans as
        the policy without it, of base seed ``state['seed'][b]``, plans alone.
    """

    def __init__(self, time_step_spec, action_spec, model_fn: Callable, cost_fn: Callable,
                 init_std: Sequence[float], config: Optional[cem_lib.CEMConfig] = None,
                 replan_every: int = 6, warm_start: bool = False, seed: int = 0,
                 episode_length: Optional[int] = None, closed_loop_final_steps: int = 0,
                 final_action_fn: Optional[Callable] = None, final_action_steps: int = 0,
                 models: Sequence[tf.Module] = (), episode_seeds: bool = False,
                 name: Optional[str] = None):
        config = cem_lib.CEMConfig() if config is None else config
        if not 1 <= replan_every <= config.horizon:
            raise ValueError(f"replan_every={replan_every} must be in [1, horizon="
                             f"{config.horizon}].")
        if closed_loop_final_steps < 0 or (closed_loop_final_steps and episode_length is None):
            raise ValueError(f"closed_loop_final_steps={closed_loop_final_steps} must be >= 0 "
                             f"and needs episode_length (got {episode_length}).")
        if final_action_steps < 0 or (final_action_steps and (
                episode_length is None or final_action_fn is None
                or final_action_steps >= episode_length)):
            raise ValueError(f"final_action_steps={final_action_steps} must be >= 0 and, when set, "
                             f"needs episode_length (got {episode_length}) greater than it and "
                             f"a final_action_fn (got {final_action_fn}).")
        self._model_fn = model_fn
        self._cost_fn = cost_fn
        self._config = config
        self._replan_every = int(replan_every)
        self._warm_start = warm_start
        self._seed = int(seed)
        self._episode_length = episode_length
        # First step from which the policy replans every step (never when 0 final steps).
        self._closed_loop_from = (episode_length - closed_loop_final_steps
                                  if closed_loop_final_steps else None)
        # First step whose action is final_action_fn's (never when 0 final steps); plans end there.
        self._final_from = episode_length - final_action_steps if final_action_steps else None
        self._final_action_fn = final_action_fn
        self._models = tuple(models)  # tracked by tf.Module for PolicySaver
        self._action_dim = int(action_spec.shape[-1])
        self._init_std = tf.constant(init_std, tf.float32)
        state_spec = {
            "plan": tensor_spec.TensorSpec([config.horizon, self._action_dim], tf.float32),
            "step": tensor_spec.TensorSpec([], tf.int64),
        }
        self._episode_seeds = bool(episode_seeds)
        if self._episode_seeds:
            state_spec["seed"] = tensor_spec.TensorSpec([], tf.int64)
        super().__init__(time_step_spec, action_spec, policy_state_spec=state_spec,
                         name=name,
                         # a reset at FIRST would zero the seeds: the caller starts each
                         # lockstep block from get_initial_state with its seeds filled in
                         automatic_state_reset=not self._episode_seeds)

    def sample_memory_bytes(self) -> int:
        """Estimated working memory (bytes, int) of one CEM sample in a predict-and-score call:
        the growth of :func:`mbold_tf.utils.flops.graph_peak_bytes` of ``cost_fn(model_fn(...))``
        from 1 to 2 samples. A CEM iteration holds about ``N × B`` times this."""
        h = self._config.horizon
        obs_spec = self.time_step_spec.observation

        def call(observation, actions):
            return self._cost_fn(self._model_fn(observation, actions), observation, actions)

        def peak(n):
            return flops.graph_peak_bytes(call, tf.nest.map_structure(
                lambda s: tf.TensorSpec([n] + s.shape.as_list(), s.dtype), obs_spec),
                tf.TensorSpec([n, h, self._action_dim], tf.float32))

        return max(peak(2) - peak(1), 0)

    def _plan_one(self, observation, init_mean, seed, step):
        """CEM for one batch element. observation: nest of [...] tensors; returns [h, A]."""
        n = self._config.num_samples
        tiled = tf.nest.map_structure(
            lambda x: tf.repeat(x[None], n, axis=0), observation)
        end = self._final_from if self._final_from is not None else self._episode_length
        keep = costs.scoring_horizon(step, self._config.horizon, end)

        def cost(actions):
            prediction = tf.nest.map_structure(lambda p: p[:, :keep],
                                               self._model_fn(tiled, actions))
            return self._cost_fn(prediction, tiled, actions[:, :keep])

        best, _ = cem_lib.cem(cost, init_mean, self._init_std, seed, self._config)
        return best

    def _plan_lockstep(self, observation, init_mean, seeds, step):
        """CEM for all B elements at once (``episode_seeds``): observation nest of [B, ...],
        init_mean float32 [B, h, A], seeds and step int64 [B] (every step equal); returns
        float32 [B, h, A]."""
        n, h = self._config.num_samples, self._config.horizon
        check = tf.debugging.assert_equal(
            step, step[0], message="Lockstep planning needs every episode at the same step.")
        with tf.control_dependencies([check]):
            tiled = tf.nest.map_structure(lambda x: tf.repeat(x, n, axis=0), observation)
        end = self._final_from if self._final_from is not None else self._episode_length
        keep = costs.scoring_horizon(step[0], h, end)

        def cost(actions):  # [B, N, h, A] -> [B, N]; element b's samples are rows b*N...
            flat = tf.reshape(actions, [-1, h, self._action_dim])
            prediction = tf.nest.map_structure(lambda p: p[:, :keep],
                                               self._model_fn(tiled, flat))
            return tf.reshape(self._cost_fn(prediction, tiled, flat[:, :keep]), [-1, n])

        best, _ = cem_lib.cem_batch(cost, init_mean, self._init_std,
                                    tf.stack([seeds, step], axis=1), self._config)
        return best

    def _action(self, time_step, policy_state, seed=None):
        del seed  # the planner is seeded by (base seed, step counter) for reproducibility
        plan, step = policy_state["plan"], policy_state["step"]
        seeds = policy_state["seed"] if self._episode_seeds else None
        phase = tf.math.floormod(step, self._replan_every)  # [B]: actions since the last plan
        if self._closed_loop_from is not None:
            phase = tf.where(step >= self._closed_loop_from, tf.zeros_like(phase), phase)

        def replan():
            # Actions executed since the last plan: replan_every on the regular schedule (or the
            # remainder where the closed-loop phase starts), 1 inside that phase.
            executed = tf.math.floormod(step - 1, self._replan_every) + 1
            if self._closed_loop_from is not None:
                executed = tf.where(step > self._closed_loop_from, tf.ones_like(step), executed)
            shifted = tf.map_fn(lambda args: cem_lib.shift_plan(*args), (plan, executed),
                                fn_output_signature=tf.float32) \
                if self._warm_start else tf.zeros_like(plan)
            if seeds is not None:
                return self._plan_lockstep(time_step.observation, shifted, seeds, step)

            def one(args):
                obs, mean, s = args
                seed_pair = tf.stack([tf.constant(self._seed, tf.int64), s])
                return self._plan_one(obs, mean, seed_pair, s)

            return tf.map_fn(one, (time_step.observation, shifted, step),
                             fn_output_signature=tf.TensorSpec(plan.shape[1:], tf.float32))

        plans_now = tf.equal(phase, 0)
        if self._final_from is not None:
            final = step >= self._final_from  # [B]: these steps take final_action_fn's action
            plans_now = tf.logical_and(plans_now, tf.logical_not(final))
        new_plan = tf.cond(tf.reduce_any(plans_now), replan, lambda: plan)
        new_plan = tf.where(plans_now[:, None, None], new_plan, plan)
        action = tf.gather(new_plan, tf.cast(phase, tf.int32), axis=1, batch_dims=1)
        if self._final_from is not None:
            action = tf.cond(tf.reduce_any(final),
                             lambda: tf.where(final[:, None], tf.cast(self._final_action_fn(
                                 time_step.observation), tf.float32), action),
                             lambda: action)
        action = tf.clip_by_value(tf.where(tf.math.is_finite(action), action,
                                           tf.zeros_like(action)), -1.0, 1.0)
        state = {"plan": new_plan, "step": step + 1}
        if seeds is not None:
            state["seed"] = seeds
        return policy_step.PolicyStep(action, state, ())
