"""Planning costs and the predictor model function for CEM-MPC (§4 "Control via MBOLD", App. C).

A cost scores predicted frames against the goal image; lower is better. All costs score the
*last* frame of the prediction they are given (the planner truncates predictions at the
episode's end, so near the end this is the frame at the final step, as in the authors' code).

* ``'learned_distance'`` (MBOLD): ``−Q(ŝ, π(ŝ, g), g)`` — the twin critics' min at the actor's
  action, i.e. ``−max_α Q`` as the paper writes it (Eq. 3, ``q_action='actor'``). With
  ``q_action='plan'`` the critic scores the plan's own last transition instead,
  ``−Q(ŝ_{t+h−1}, a_{t+h−1}, g)``: the ideal ``max_α Q(ŝ_{t+h}, α, g)`` is the same for every
  final frame from which one action reaches g, the plan's own last transition is not (off by
  default: docs/design.md, "Planner"). With ``q_action='zero'`` it scores the last frame at the
  zero action, ``−Q(ŝ_{t+h}, 0, g)``: for the ideal critic that is 1 only at the goal itself and
  γ·max_α Q one step short of it (off by default as well). ``steps=True`` scores the expected
  number of steps ``d(Q)`` instead (same ranking, other elite weights for the 'authors' refit).
* ``'pixel_l2'`` (Visual Foresight): mean squared pixel difference, images in [0, 1].
* ``'vae'``: ℓ2 between VAE latents (App. C.1); ``'temporal'``: regressed temporal distance
  (App. C.2). Both use the baseline model's ``distance(image, goal_image)``.
* ``'privileged'`` (PRIVILEGED, evaluation upper bounds only): the task's true distance of the
  simulated state to the goal, from :func:`simulator_model_fn` with ``privileged=True``; it needs
  the simulator as the model and cannot score predicted frames.
* ``'ideal_eq3'`` (PRIVILEGED, reach only): Eq. 3 with the *ideal* critic of the indicator
  reward, as expected steps to the goal: ``max(1, ceil(d / ideal_step))`` for the true hand
  distance ``d`` (m) and ``ideal_step`` one action's reach. Every state within ``ideal_step``
  of the goal, the goal included, gets the same cost: what Eq. 3 can resolve at best, whatever
  the critic's training. (One action moves each axis up to ``action_scale``, so states up to
  √3 × that away can be one step away too: the ideal critic is flatter still.)

Every cost function has the signature ``cost_fn(prediction, observation, actions) -> float32
[N]`` with ``prediction`` float32 [N, h, 64, 64, 3] in [0, 1], ``observation['image']`` and
``observation['goal_image']`` uint8 [N, 64, 64, 3] and ``actions`` float32 [N, h, A] (the
sequences that produced ``prediction``; ``None`` is allowed for costs that do not read them), as
:class:`~mbold_tf.planning.mpc_policy.MPCPolicy` calls it.
"""
from __future__ import annotations

from typing import Callable, Optional

import gin
import tensorflow as tf

from mbold_tf.agents.distances import q_to_distance
from mbold_tf.models.distance_networks import to_float_image

COSTS = ("learned_distance", "pixel_l2", "vae", "temporal", "privileged", "ideal_eq3")
SIMULATOR_ONLY_COSTS = ("privileged", "ideal_eq3")  # they read the true simulated state
Q_ACTIONS = ("actor", "plan", "zero")


def pixel_l2(frames: tf.Tensor, goal_images: tf.Tensor) -> tf.Tensor:
    """float32 [N]: mean squared difference of frames [N, 64, 64, 3] and goals, both in [0, 1]."""
    return tf.reduce_mean(tf.square(to_float_image(frames) - to_float_image(goal_images)),
                          axis=[1, 2, 3])


# The cost's name and model come from the method (planning/factory.py), never from gin: a gin
# binding of make_cost.name or make_cost.model is an error instead of a setting that is ignored.
@gin.configurable(denylist=["name", "model", "ideal_step"])
def make_cost(name: str = "learned_distance", model=None, steps: bool = False,
              q_action: str = "actor", ideal_step: Optional[float] = None) -> Callable:
    """Returns ``cost_fn(prediction, observation, actions=None) -> float32 [N]`` for a cost name.

    Args:
      name: one of ``COSTS``.
      model: the scoring model: a ``LearnedDistance`` (``q_values``/``distance``) for
        'learned_distance', a VAE or temporal-distance model (``distance``) for 'vae' and
        'temporal'; unused by 'pixel_l2'.
      steps: for 'learned_distance', score expected steps-to-goal instead of −Q.
      q_action: for 'learned_distance', 'actor' (Eq. 3: Q of the last predicted frame at the
        actor's action), 'plan' (Q of the frame before it at the plan's last action) or 'zero'
        (Q of the last predicted frame at the zero action: the value of staying there).
      ideal_step: for 'ideal_eq3' (required there), one step's reach in metres.
    """
    if name not in COSTS:
        raise ValueError(f"Unknown planning cost {name!r}; choose one of {COSTS}.")
    if q_action not in Q_ACTIONS:
        raise ValueError(f"Unknown make_cost.q_action {q_action!r}; choose one of {Q_ACTIONS}.")
    if name == "ideal_eq3" and not (ideal_step and ideal_step > 0):
        raise ValueError(f"Planning cost 'ideal_eq3' needs ideal_step > 0 (metres); got "
                         f"{ideal_step!r}.")
    if name not in ("pixel_l2",) + SIMULATOR_ONLY_COSTS and model is None:
        raise ValueError(f"Planning cost {name!r} needs a trained model (got model=None).")
    if name == "learned_distance" and not hasattr(model, "q_values"):
        raise ValueError(f"Planning cost 'learned_distance' needs a LearnedDistance with "
                         f"q_values(); got {type(model).__name__}.")

    def cost_fn(prediction, observation, actions=None):
        if name in SIMULATOR_ONLY_COSTS:
            if not isinstance(prediction, dict) or "privileged" not in prediction:
                raise ValueError(f"The {name!r} cost needs the simulator as the planner's "
                                 "model (simulator_model_fn(..., privileged=True)); it cannot "
                                 "score predicted frames.")
            distance = prediction["privileged"][:, -1]
            if name == "privileged":
                return distance
            return tf.maximum(1.0, tf.math.ceil(distance / ideal_step))
        frame = prediction[:, -1]
        goal = observation["goal_image"]
        if name == "pixel_l2":
            return pixel_l2(frame, goal)
        if name == "learned_distance" and q_action == "plan":
            if actions is None:
                raise ValueError("make_cost(q_action='plan') scores the plan's last action; "
                                 "call cost_fn(prediction, observation, actions).")
            # The frame the last action starts from: the previous prediction, or the current
            # camera image when only one frame is left before the episode's end.
            n = tf.shape(prediction)[1]
            before = tf.where(n >= 2, tf.gather(prediction, tf.maximum(n - 2, 0), axis=1),
                              to_float_image(observation["image"]))
            q = model.q_values(before, goal, actions[:, -1])
            return q_to_distance(q, model.reward_scheme, model.gamma) if steps else -q
        if name == "learned_distance" and q_action == "zero":
            q = model.q_values(frame, goal,
                               tf.zeros([tf.shape(frame)[0], model.action_dim], tf.float32))
            return q_to_distance(q, model.reward_scheme, model.gamma) if steps else -q
        if name == "learned_distance" and not steps:
            return -model.q_values(frame, goal)
        return model.distance(frame, goal)

    return cost_fn


def predictor_model_fn(predictor) -> Callable:
    """``model_fn(observation, actions) -> frames`` for MPCPolicy from a video predictor.

    ``observation['image']`` uint8 [N, 64, 64, 3] is the single context frame (the paper plans
    from one context frame); a state-conditioned predictor also reads the robot's state
    ``observation['joint_pos']`` float32 [N, P]; ``actions`` float32 [N, h, A]; returns float32
    [N, h, 64, 64, 3].
    """
    context = getattr(predictor, "context", 1)
    if context != 1:
        raise ValueError(f"Planning feeds one context frame, but the predictor was trained with "
                         f"context={context}; train it with context=1.")
    with_state = bool(getattr(predictor, "state_conditioned", False))

    def model_fn(observation, actions):
        if with_state:
            if "joint_pos" not in observation:
                raise ValueError(
                    "The predictor is state-conditioned but the observation has no 'joint_pos' "
                    f"(keys: {sorted(observation)}); the robot's state must reach the planner.")
            states = tf.cast(observation["joint_pos"], tf.float32)[:, None]
            return predictor.predict(observation["image"][:, None], actions, states)
        return predictor.predict(observation["image"][:, None], actions)

    return model_fn


def simulator_model_fn(simulator, privileged: bool = False) -> Callable:
    """``model_fn(observation, actions)`` that rolls the plans out in the true simulator.

    PRIVILEGED (evaluation upper bounds only): ``simulator`` is a
    :class:`mbold_tf.envs.simulator.SimulatorRollouts` attached to the evaluated episode. Returns
    frames float32 [N, h, S, S, 3] in [0, 1], the video predictor's layout, so every cost scores
    real future frames; with ``privileged=True`` a dict ``{'frames', 'privileged'}`` whose
    'privileged' float32 [N, h] feeds the 'privileged' cost. Runs the simulator through
    ``tf.numpy_function``, so the policy cannot be exported.
    """
    size = simulator.image_size

    def rollout(image, actions):
        frames, cost = simulator.rollout(actions, current_image=image)
        return frames, cost

    def model_fn(observation, actions):
        frames, cost = tf.numpy_function(rollout, [observation["image"][0], actions],
                                         [tf.uint8, tf.float32], stateful=True)
        n, h = tf.shape(actions)[0], actions.shape[1]
        frames = tf.ensure_shape(tf.reshape(frames, [n, h, size, size, 3]),
                                 [None, h, size, size, 3])
        frames = tf.cast(frames, tf.float32) / 255.0
        if privileged:
            return {"frames": frames, "privileged": tf.reshape(cost, [n, h])}
        return frames

    return model_fn


def scoring_horizon(step: tf.Tensor, horizon: int, episode_length: Optional[int]) -> tf.Tensor:
    """int32 []: how many predicted frames to keep so the last one is at most the episode's end.

    ``step`` is the number of actions already executed in the episode (int64 []).
    """
    if episode_length is None:
        return tf.constant(horizon, tf.int32)
    left = tf.cast(episode_length, tf.int64) - tf.cast(step, tf.int64)
    return tf.cast(tf.clip_by_value(left, 1, horizon), tf.int32)
