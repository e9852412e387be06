"""Model-free goal-reaching policies the planner is compared with, and the PyPolicy wrapper.

* :class:`QShootingPolicy` — the Q-function alone (App. C.3): at every step, sample
  ``num_actions`` actions uniformly over the action box and take the one with the highest
  ``Q(s, a, g)``.
* :class:`GCBCPolicy` — goal-conditioned behaviour cloning (App. B.3): ``a = π(s, g)``.
* :func:`as_py_policy` — any of our ``TFPolicy``s (including :class:`MPCPolicy`) as a TF-Agents
  ``PyPolicy`` for ``dm_env``/``PyEnvironment`` loops and ``PyDriver``.

All act on the goal-conditioned observation ``{'image', 'goal_image', ...}`` (uint8
[B, 64, 64, 3] each) and always return finite actions inside the action spec's bounds.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import tensorflow as tf
from tf_agents.policies import py_tf_eager_policy
from tf_agents.policies import tf_policy
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import policy_step


def safe_action(action: tf.Tensor, action_spec) -> tf.Tensor:
    """Replaces non-finite entries by 0 and clips into the spec's bounds."""
    action = tf.where(tf.math.is_finite(action), action, tf.zeros_like(action))
    return tf.clip_by_value(action, action_spec.minimum, action_spec.maximum)


class QShootingPolicy(tf_policy.TFPolicy):
    """argmax over ``num_actions`` uniform random actions of ``q_fn(image, goal, action)``.

    Args:
      time_step_spec, action_spec: the environment's (TF) specs.
      q_fn: ``(image [N,64,64,3], goal_image [N,64,64,3], action [N,A]) -> float32 [N]``, e.g.
        ``LearnedDistance.q_values``.
      num_actions: candidates per step (the paper: 100).
      seed: base seed; candidates are drawn with stateless ops keyed on (seed, step), so the
        policy is deterministic and exports with ``PolicySaver``.
      models: modules ``q_fn`` uses (tracked for export).
      episode_seeds: lockstep evaluation: each batch element's base seed is the policy state's
        ``'seed'`` (int64 [B], set by the caller; no automatic state reset at FIRST steps) instead
        of ``seed``, and the candidates of all
        elements go through ``q_fn`` as one batch of B × ``num_actions``; element b acts as the
        policy of base seed ``state['seed'][b]`` does alone.
    """

    def __init__(self, time_step_spec, action_spec, q_fn: Callable, num_actions: int = 100,
                 seed: int = 0, models: Sequence[tf.Module] = (), episode_seeds: bool = False,
                 name: Optional[str] = None):
        self._q_fn = q_fn
        self._num_actions = int(num_actions)
        self._seed = int(seed)
        self._models = tuple(models)
        self._episode_seeds = bool(episode_seeds)
        state_spec = {"step": tensor_spec.TensorSpec([], tf.int64)}
        if self._episode_seeds:
            state_spec["seed"] = tensor_spec.TensorSpec([], tf.int64)
        super().__init__(time_step_spec, action_spec, policy_state_spec=state_spec, name=name,
                         # a reset at FIRST would zero the seeds: the caller starts each
                         # lockstep block from get_initial_state with its seeds filled in
                         automatic_state_reset=not self._episode_seeds)

    def _candidates(self, seed_pair: tf.Tensor) -> tf.Tensor:
        """float32 [num_actions, A] uniform over the action box, from an int64 [2] seed."""
        spec, a = self.action_spec, int(self.action_spec.shape[-1])
        low = tf.broadcast_to(tf.constant(spec.minimum, tf.float32), [a])
        high = tf.broadcast_to(tf.constant(spec.maximum, tf.float32), [a])
        return low + (high - low) * tf.random.stateless_uniform([self._num_actions, a],
                                                                seed_pair)

    def _lockstep_action(self, observation, seeds, step):
        """float32 [B, A]: every element's best candidate, all scored in one ``q_fn`` call."""
        n, a = self._num_actions, int(self.action_spec.shape[-1])
        cand = tf.map_fn(self._candidates, tf.stack([seeds, step], axis=1),
                         fn_output_signature=tf.TensorSpec([n, a], tf.float32))  # [B, n, A]
        q = self._q_fn(tf.repeat(observation["image"], n, 0),
                       tf.repeat(observation["goal_image"], n, 0), tf.reshape(cand, [-1, a]))
        q = tf.reshape(q, [-1, n])
        q = tf.where(tf.math.is_finite(q), q, tf.fill(tf.shape(q), -float("inf")))
        return tf.gather(cand, tf.argmax(q, axis=1), batch_dims=1)

    def _action(self, time_step, policy_state, seed=None):
        del seed
        spec = self.action_spec
        n, a = self._num_actions, int(spec.shape[-1])
        step = policy_state["step"]
        obs = time_step.observation
        if self._episode_seeds:
            action = self._lockstep_action(obs, policy_state["seed"], step)
            return policy_step.PolicyStep(safe_action(action, spec), {
                "step": step + 1, "seed": policy_state["seed"]}, ())

        def one(args):
            image, goal, s = args
            cand = self._candidates(tf.stack([tf.constant(self._seed, tf.int64), s]))
            q = self._q_fn(tf.repeat(image[None], n, 0), tf.repeat(goal[None], n, 0), cand)
            q = tf.where(tf.math.is_finite(q), q, tf.fill(tf.shape(q), -float("inf")))
            return tf.gather(cand, tf.argmax(q))

        action = tf.map_fn(one, (obs["image"], obs["goal_image"], step),
                           fn_output_signature=tf.TensorSpec([a], tf.float32))
        return policy_step.PolicyStep(safe_action(action, spec), {"step": step + 1}, ())


class GCBCPolicy(tf_policy.TFPolicy):
    """``a = action_fn(image, goal_image)`` (goal-conditioned behaviour cloning, App. B.3).

    ``action_fn``: ``(image [B,64,64,3], goal_image [B,64,64,3]) -> float32 [B, A]``.
    """

    def __init__(self, time_step_spec, action_spec, action_fn: Callable,
                 models: Sequence[tf.Module] = (), name: Optional[str] = None):
        self._bc_action_fn = action_fn
        self._models = tuple(models)
        super().__init__(time_step_spec, action_spec, name=name)

    def _action(self, time_step, policy_state, seed=None):
        del seed
        obs = time_step.observation
        action = tf.cast(self._bc_action_fn(obs["image"], obs["goal_image"]), tf.float32)
        return policy_step.PolicyStep(safe_action(action, self.action_spec), policy_state, ())


class UnbatchedPyPolicy(py_tf_eager_policy.PyTFEagerPolicy):
    """``PyTFEagerPolicy`` for unbatched environments whose policy state is kept batched.

    TF-Agents batches each unbatched time step to [1, ...] before calling the TFPolicy; this
    makes ``get_initial_state(None)`` (what ``PyDriver`` users pass for unbatched envs) return a
    batch-1 state to match, so stateful policies such as :class:`MPCPolicy` work in dm_env loops.
    """

    def _get_initial_state(self, batch_size):
        return self._policy.get_initial_state(batch_size=1 if not batch_size else batch_size)


def as_py_policy(policy: tf_policy.TFPolicy) -> py_tf_eager_policy.PyTFEagerPolicy:
    """A ``PyPolicy`` running ``policy`` compiled (``tf.function``) on unbatched time steps."""
    return UnbatchedPyPolicy(policy, use_tf_function=True, batch_time_steps=True)
