"""The goal-conditioned Dreamer policy (App. B.2) as a TF-Agents ``TFPolicy``.

At every step the observation image is filtered through the RSSM posterior (its mean) from the
policy state, and the actor's mode action (tanh of its Gaussian mean) for the goal embedding of
``goal_image`` is taken. The policy state carries the RSSM state and the previous action; it is
reset to zeros at the first step of an episode (``time_step.is_first()``), as the model was
trained from the zero state. Deterministic, so it exports with ``PolicySaver`` and the
SavedModel replays the same actions.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import tensorflow as tf
from tf_agents.policies import tf_policy
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import policy_step
from tf_agents.utils import nest_utils

from mbold_tf.models import distance_networks as dn
from mbold_tf.models import dreamer as dreamer_model


def check_images(observation):
    """(image, goal_image) of an observation dict, each [B, 64, 64, 3] uint8 or float32.

    Raises ValueError naming the key, the shape and dtype received and the fix.
    """
    out = []
    for k in dn.IMAGE_KEYS:
        if k not in observation:
            raise ValueError(f"DreamerPolicy needs observation key {k!r} ([B, 64, 64, 3] uint8); "
                             f"got keys {sorted(observation)}.")
        x = tf.convert_to_tensor(observation[k])
        shape = x.shape.as_list() if x.shape.rank is not None else None
        if shape is None or len(shape) != 4 or any(
                d is not None and d != e for d, e in zip(shape[1:], dn.IMAGE_SHAPE)):
            raise ValueError(f"{k} must be [B, 64, 64, 3] uint8 (batched 64x64 RGB), got "
                             f"{shape} {x.dtype.name}; render or resize it to 64x64 and add the "
                             f"batch axis.")
        out.append(dn.check_image(x, k))
    return tuple(out)


class DreamerPolicy(tf_policy.TFPolicy):
    """Dreamer's actor on the filtered RSSM state.

    Args:
      time_step_spec: the goal-conditioned environment's, with observation keys 'image' and
        'goal_image' (uint8 [64, 64, 3]; other keys are ignored).
      action_spec: float32 [A] bounded in [−1, 1], A = ``model.action_dim``.
      model: a built :class:`~mbold_tf.models.dreamer.DreamerModel` (e.g.
        :func:`mbold_tf.training.dreamer.load_dreamer`).
    Policy state: 'deter' float32 [B, D], 'stoch' float32 [B, S], 'prev_action' float32 [B, A].
    Actions: float32 [B, A] in [−1, 1].
    Raises ValueError for a spec without the image keys, an action spec of another size or
    bounds, and (when acting) images that are not [B, 64, 64, 3].
    """

    def __init__(self, time_step_spec, action_spec, model: dreamer_model.DreamerModel,
                 name: Optional[str] = None):
        obs_spec = time_step_spec.observation
        missing = [k for k in dn.IMAGE_KEYS if k not in obs_spec]
        if missing:
            raise ValueError(f"DreamerPolicy needs observation keys {list(dn.IMAGE_KEYS)}; the "
                             f"time_step_spec lacks {missing} (has {sorted(obs_spec)}).")
        for k in dn.IMAGE_KEYS:
            if tuple(obs_spec[k].shape) != dn.IMAGE_SHAPE:
                raise ValueError(f"observation spec '{k}' has shape {tuple(obs_spec[k].shape)}; "
                                 f"DreamerPolicy needs {dn.IMAGE_SHAPE} images.")
        if tuple(action_spec.shape) != (model.action_dim,):
            raise ValueError(f"action_spec has shape {tuple(action_spec.shape)}; the Dreamer "
                             f"model acts in [{model.action_dim}].")
        low = np.broadcast_to(action_spec.minimum, action_spec.shape)
        high = np.broadcast_to(action_spec.maximum, action_spec.shape)
        if not (np.allclose(low, -1.0) and np.allclose(high, 1.0)):
            raise ValueError(f"action_spec bounds are [{low.tolist()}, {high.tolist()}]; the "
                             f"Dreamer model was trained on actions in [-1, 1].")
        self._model = model.build()  # tracked by tf.Module: PolicySaver exports its weights
        s = model.settings
        state_spec = {"deter": tensor_spec.TensorSpec([s["deter_size"]], tf.float32, "deter"),
                      "stoch": tensor_spec.TensorSpec([s["stoch_size"]], tf.float32, "stoch"),
                      "prev_action": tensor_spec.TensorSpec([model.action_dim], tf.float32,
                                                            "prev_action")}
        # TF-Agents' own input check (it names no input) and state reset run in _action, after
        # check_images.
        super().__init__(time_step_spec, action_spec, policy_state_spec=state_spec,
                         validate_args=False, automatic_state_reset=False, name=name)

    @property
    def model(self) -> dreamer_model.DreamerModel:
        """The Dreamer model acting."""
        return self._model

    def _action(self, time_step, policy_state, seed=None):
        del seed
        obs = time_step.observation
        image, goal = check_images(obs)  # first: the error names the image and the fix
        nest_utils.is_batched_nested_tensors(time_step, self.time_step_spec, num_outer_dims=1)
        keep = 1.0 - tf.cast(time_step.is_first(), tf.float32)[:, None]
        state = {k: policy_state[k] * keep for k in dreamer_model.STATE_KEYS}
        prev_action = policy_state["prev_action"] * keep
        state = self._model.filter_step(state, prev_action, image)
        action = self._model.act(state, goal)
        action = tf.clip_by_value(action, -1.0, 1.0)
        return policy_step.PolicyStep(action, {**state, "prev_action": action}, ())
