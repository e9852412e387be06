"""Q-values → expected steps to the goal, and the trained distance function for planning.

Reward schemes (γ = discount, d = steps to the goal):

* ``'indicator'`` (§4): reward 1[s_{t+1} = g], episode ends at the goal, so Q = γ^d with d the
  shortest-path distance *after* the action (the paper's convention: d = 0 when the action
  reaches the goal) and d = log_γ Q. Q is clipped into [tiny, 1].
* ``'ten_one'`` (App. A.1 / authors' code): reward 10 when the next state is the goal, else 1.
  A goal reached by the d-th action (d ≥ 1) gives
  Q = Σ_{k<d−1} γ^k + 10·γ^{d−1} = c + (10 − c)·γ^{d−1} with c = 1/(1 − γ),
  so d = 1 + log_γ((Q − c)/(10 − c)). For γ = 0.8, c = 5: d = 1 + log_γ((Q − 5)/5) (DESIGN §2b).
  The ratio is clipped into [tiny, 1]; γ = 0.9 (c = 10) makes Q independent of d and is refused.

Both return finite float32 distances ≥ 0 (indicator) or ≥ 1 (ten_one) for any finite Q.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import tensorflow as tf

from mbold_tf.models import distance_networks as dn

REWARD_SCHEMES = ("indicator", "ten_one")
GOAL_REWARD, STEP_REWARD = 10.0, 1.0  # 'ten_one'
_TINY = 1e-6


def _check(reward_scheme: str, gamma: float):
    if reward_scheme not in REWARD_SCHEMES:
        raise ValueError(f"Unknown reward scheme {reward_scheme!r}; choose one of "
                         f"{REWARD_SCHEMES}.")
    if not 0.0 < gamma < 1.0:
        raise ValueError(f"gamma={gamma} must be in (0, 1).")
    if reward_scheme == "ten_one" and abs(GOAL_REWARD - STEP_REWARD / (1 - gamma)) < 1e-6:
        raise ValueError(f"With reward_scheme='ten_one' and gamma={gamma}, Q does not depend on "
                         f"the distance (goal reward 10 = 1/(1-gamma)); choose another gamma.")


def q_bounds(reward_scheme: str, gamma: float):
    """(low, high): the range of the true Q-values under a reward scheme (episodes end only at
    the goal): [0, 1] for 'indicator', [1/(1-γ), 10] (sorted) for 'ten_one'."""
    _check(reward_scheme, gamma)
    if reward_scheme == "indicator":
        return 0.0, 1.0
    c = STEP_REWARD / (1 - gamma)
    return min(c, GOAL_REWARD), max(c, GOAL_REWARD)


def q_to_distance(q, reward_scheme: str = "indicator", gamma: float = 0.8) -> tf.Tensor:
    """Expected steps to the goal from Q-values (float32, same shape as ``q``; never NaN)."""
    _check(reward_scheme, gamma)
    q = tf.cast(q, tf.float32)
    log_gamma = math.log(gamma)
    if reward_scheme == "indicator":
        ratio = tf.clip_by_value(q, _TINY, 1.0)
        base = 0.0
    else:
        c = STEP_REWARD / (1.0 - gamma)
        ratio = tf.clip_by_value((q - c) / (GOAL_REWARD - c), _TINY, 1.0)
        base = 1.0
    ratio = tf.where(tf.math.is_nan(ratio), tf.fill(tf.shape(ratio), _TINY), ratio)
    return base + tf.math.log(ratio) / log_gamma


def distance_to_q(d, reward_scheme: str = "indicator", gamma: float = 0.8) -> tf.Tensor:
    """Inverse of :func:`q_to_distance` (for tests and plots)."""
    _check(reward_scheme, gamma)
    d = tf.cast(d, tf.float32)
    if reward_scheme == "indicator":
        return tf.pow(gamma, d)
    c = STEP_REWARD / (1.0 - gamma)
    return c + (GOAL_REWARD - c) * tf.pow(gamma, d - 1.0)


class LearnedDistance(tf.Module):
    """The trained actor and twin critics as a goal-conditioned distance (eval-mode batch-norm).

    ``q_values(image, goal_image, action=None)`` → float32 [B]: min over the twin critics of
    Q(s, a, g); ``action=None`` uses the actor's action (max_a Q as in the paper's planner cost).
    ``distance(image, goal_image)`` → float32 [B]: expected steps via :func:`q_to_distance`.
    Images: [B, 64, 64, 3], uint8 in [0, 255] or float32 in [0, 1]; actions float32 [B, 4].
    """

    def __init__(self, actor, critic1, critic2, reward_scheme: str = "indicator",
                 gamma: float = 0.8, name: str = "learned_distance"):
        super().__init__(name=name)
        _check(reward_scheme, gamma)
        self.actor, self.critic1, self.critic2 = actor, critic1, critic2
        self.reward_scheme, self.gamma = reward_scheme, float(gamma)
        spec = actor._output_tensor_spec  # pylint: disable=protected-access
        self.action_dim = int(spec.shape[-1])
        img = lambda dt: tf.TensorSpec([None, 64, 64, 3], dt)
        act = tf.TensorSpec([None, self.action_dim], tf.float32)
        fn = lambda f, *sig: tf.function(f, input_signature=list(sig))
        dtypes = (tf.uint8, tf.float32)
        self._q_policy = {dt.name: fn(self._q_actor, img(dt), img(dt)) for dt in dtypes}
        self._q_given = {dt.name: fn(self._q_action, img(dt), img(dt), act) for dt in dtypes}
        self._act = {dt.name: fn(self._actor_action, img(dt), img(dt)) for dt in dtypes}

    # -- traced bodies ---------------------------------------------------------------------------
    def _obs(self, image, goal_image):
        return {"image": image, "goal_image": goal_image}

    def _actor_action(self, image, goal_image):
        a, _ = self.actor(self._obs(image, goal_image), training=False)
        return a

    def _q_action(self, image, goal_image, action):
        obs = self._obs(image, goal_image)
        q1, _ = self.critic1((obs, action), training=False)
        q2, _ = self.critic2((obs, action), training=False)
        return tf.minimum(q1, q2)

    def _q_actor(self, image, goal_image):
        return self._q_action(image, goal_image, self._actor_action(image, goal_image))

    # -- public API ------------------------------------------------------------------------------
    def _inputs(self, image, goal_image):
        image = dn.check_image(image, "image")
        goal_image = dn.check_image(goal_image, "goal_image")
        if image.dtype == tf.uint8 and goal_image.dtype == tf.uint8:
            dt = tf.uint8
        else:  # float (or mixed): both to float32 [0, 1]
            dt = tf.float32
            image, goal_image = dn.to_float_image(image), dn.to_float_image(goal_image)
        if image.shape[0] is not None and goal_image.shape[0] is not None and \
                image.shape[0] != goal_image.shape[0]:
            raise ValueError(f"image and goal image batch sizes differ: {image.shape[0]} vs "
                             f"{goal_image.shape[0]}.")
        return image, goal_image, dt

    def q_values(self, image, goal_image, action: Optional[tf.Tensor] = None) -> tf.Tensor:
        """float32 [B]: min(Q1, Q2)(image, action, goal); action None → the actor's action."""
        image, goal_image, dt = self._inputs(image, goal_image)
        if action is None:
            return self._q_policy[dt.name](image, goal_image)
        action = tf.convert_to_tensor(action, tf.float32)
        if action.shape.rank != 2 or action.shape[-1] != self.action_dim:
            raise ValueError(f"action must be [B, {self.action_dim}] float32, got "
                             f"{action.shape.as_list()}.")
        return self._q_given[dt.name](image, goal_image, action)

    def action(self, image, goal_image) -> tf.Tensor:
        """float32 [B, A]: the actor's action (the Q-function policy)."""
        image, goal_image, dt = self._inputs(image, goal_image)
        return self._act[dt.name](image, goal_image)

    def distance(self, image, goal_image) -> tf.Tensor:
        """float32 [B]: expected steps to the goal (q_to_distance of q_values with the actor)."""
        return q_to_distance(self.q_values(image, goal_image), self.reward_scheme, self.gamma)


class DistanceEnsemble(tf.Module):
    """Several trained :class:`LearnedDistance` s of one configuration as one distance.

    One critic training's planning success varies from seed to seed (docs/measurements.md,
    "Data that reaches the goals"); the average of M independently trained
    critics' Q is a lower-variance estimate of the same function.

    ``q_values(image, goal_image, action=None)`` → float32 [B]: the mean over the members of each
    member's min(Q1, Q2); ``action=None`` evaluates each member at its own actor's action (its
    own max_a Q, the paper's planner cost). ``action(image, goal_image)`` → float32 [B, A]: of
    the members' actor actions, the one with the highest mean Q. ``distance`` → float32 [B]:
    :func:`q_to_distance` of the mean Q. Images as :class:`LearnedDistance`.
    """

    def __init__(self, members: Sequence[LearnedDistance], name: str = "distance_ensemble"):
        super().__init__(name=name)
        members = tuple(members)
        if len(members) < 2:
            raise ValueError(f"A distance ensemble averages at least 2 trained distances; got "
                             f"{len(members)}. Load a single run as a LearnedDistance.")
        for attr in ("reward_scheme", "gamma", "action_dim"):
            values = [getattr(m, attr) for m in members]
            if len(set(values)) > 1:
                raise ValueError(f"The ensemble's members differ in {attr}: {values}; average "
                                 f"runs trained with the same settings.")
        self.members = members
        first = members[0]
        self.reward_scheme, self.gamma, self.action_dim = (first.reward_scheme, first.gamma,
                                                           first.action_dim)

    def q_values(self, image, goal_image, action: Optional[tf.Tensor] = None) -> tf.Tensor:
        """float32 [B]: the members' mean min(Q1, Q2); action None → each member's own actor."""
        q = [m.q_values(image, goal_image, action) for m in self.members]
        return tf.add_n(q) / float(len(q))

    def action(self, image, goal_image) -> tf.Tensor:
        """float32 [B, A]: per example, the member actor's action with the highest mean Q."""
        candidates = [m.action(image, goal_image) for m in self.members]  # M × [B, A]
        scores = tf.stack([self.q_values(image, goal_image, a) for a in candidates])  # [M, B]
        best = tf.argmax(scores, axis=0, output_type=tf.int32)  # [B]
        return tf.gather(tf.stack(candidates, axis=1), best, axis=1, batch_dims=1)

    def distance(self, image, goal_image) -> tf.Tensor:
        """float32 [B]: expected steps to the goal, :func:`q_to_distance` of the mean Q."""
        return q_to_distance(self.q_values(image, goal_image), self.reward_scheme, self.gamma)
