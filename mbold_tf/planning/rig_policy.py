"""RIG's goal-reaching policy (App. B.1) as a TF-Agents ``TFPolicy``.

:class:`RigPolicy` encodes the observation's ``image`` and ``goal_image`` (uint8
[B, 64, 64, 3]) with the β-VAE's posterior mean and runs SAC's actor deterministically (the
mode of its tanh-squashed normal): ``a = tanh(μ(z(s) ‖ z(g)))``, float32 [B, action_dim] in
[-1, 1]. It is stateless and exports with ``tf_agents.policies.policy_saver.PolicySaver``
(the model is tracked by the policy)::

    from mbold_tf.agents import checkpoints
    from mbold_tf.planning import rig_policy
    policy = rig_policy.RigPolicy(time_step_spec, action_spec, checkpoints.load_rig(root_dir))
"""
from __future__ import annotations

from typing import Optional

import tensorflow as tf
from tf_agents.policies import tf_policy
from tf_agents.trajectories import policy_step

from mbold_tf.models import distance_networks as dn
from mbold_tf.models import rig
from mbold_tf.planning import policies

IMAGE_KEYS = ("image", "goal_image")


def _check_specs(time_step_spec, action_spec, model: rig.RigModel) -> None:
    obs = time_step_spec.observation
    if not hasattr(obs, "keys") or any(k not in obs for k in IMAGE_KEYS):
        raise ValueError("RigPolicy needs a dict observation spec with 'image' and 'goal_image' "
                         f"(uint8 [64, 64, 3]); got {obs!r}. Use goal_env.tf_specs().")
    for key in IMAGE_KEYS:
        shape = tuple(obs[key].shape.as_list())
        if shape != dn.IMAGE_SHAPE:
            raise ValueError(f"RigPolicy's observation spec has {key} of shape {list(shape)}; "
                             f"RIG's VAE reads [64, 64, 3] images. Render or resize the "
                             f"{key.replace('_', ' ')} to 64x64x3.")
    shape = action_spec.shape.as_list()
    if shape != [model.action_dim]:
        raise ValueError(f"The action spec has shape {shape} but the RIG model acts in "
                         f"[{model.action_dim}]: the model was trained for another robot.")


class RigPolicy(tf_policy.TFPolicy):
    """RIG's deterministic policy: VAE means of (image, goal_image) → SAC actor's mode.

    Args:
      time_step_spec: the goal-conditioned environment's time step spec (observation dict
        with 'image' and 'goal_image' uint8 [64, 64, 3], other keys ignored), e.g.
        ``goal_env.tf_specs()[0]``.
      action_spec: BoundedTensorSpec float32 [A] (A = the model's action size).
      model: :class:`~mbold_tf.models.rig.RigModel`, e.g. ``checkpoints.load_rig(root_dir)``.
    Raises:
      ValueError when the specs' images are not 64×64×3 or the action size differs.
    Actions are float32 [B, A], finite and clipped into the action spec's bounds; info is ().
    """

    def __init__(self, time_step_spec, action_spec, model: rig.RigModel,
                 name: Optional[str] = None):
        _check_specs(time_step_spec, action_spec, model)
        self._model = model  # tracked: PolicySaver exports the VAE's and actor's weights
        super().__init__(time_step_spec, action_spec, name=name)

    @property
    def model(self) -> rig.RigModel:
        """The wrapped :class:`~mbold_tf.models.rig.RigModel` (VAE and actor)."""
        return self._model

    def _action(self, time_step, policy_state, seed=None):
        del seed
        obs = time_step.observation
        image = dn.check_image(obs["image"], "image")
        goal_image = dn.check_image(obs["goal_image"], "goal_image")
        action = tf.cast(self._model.action(image, goal_image), tf.float32)
        action = policies.safe_action(action, self.action_spec)
        return policy_step.PolicyStep(action, policy_state, ())
