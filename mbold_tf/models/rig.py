"""RIG: Reinforcement learning with Imagined Goals (Nair et al., 2018; paper App. B.1).

* A β-VAE over single 64×64×3 images (latent ``latent_dim`` = 8, KL weight 1e-3): the
  project's :class:`~mbold_tf.models.baselines.VAE` (the App. A.1 convolutional encoder →
  ``vae_units`` FC, ReLU + batch-norm → mean and log-variance; decoder: 2 × ``vae_units`` FC
  with batch-norm + ReLU → transposed convolutions back to 64×64×3, sigmoid; loss: mean pixel
  error + ``kl_weight`` × KL) built from :func:`vae_settings`.
* Soft actor-critic on the latent MDP: observation = z(s) ‖ z_g (z = the VAE's posterior mean,
  float32 [2 · latent_dim]), reward = :func:`latent_reward` = −‖z(s') − z_g‖₂. The networks are
  TF-Agents' ``ActorDistributionNetwork`` (tanh-squashed normal) and ``CriticNetwork`` with
  ``actor_fc_layers`` / ``critic_fc_layers`` × ``fc_units`` ReLU layers (RLKit's SAC, 2 → 6
  layers as in the paper).

A RIG run directory (``launch.train_rig``) holds ``config.json`` (kind :data:`KIND`: these
settings plus ``action_dim``), ``vae/`` (the VAE stage: ``config.json`` of kind
:data:`VAE_KIND`, ``ckpt/``) and ``sac/`` (the SAC stage: ``config.json`` of kind
:data:`SAC_KIND`, ``ckpt/``, :data:`ENV_STEPS_FILE`).
:func:`mbold_tf.agents.checkpoints.load_rig` rebuilds a :class:`RigModel` (VAE + actor) from
them; the planning side wraps it in
``mbold_tf.planning.rig_policy.RigPolicy``.
"""
from __future__ import annotations

import json
import os
from typing import Dict, Optional, Sequence

import gin
import tensorflow as tf
from tf_agents.agents.ddpg import critic_network
from tf_agents.agents.sac import tanh_normal_projection_network
from tf_agents.networks import actor_distribution_network
from tf_agents.specs import tensor_spec

from mbold_tf.models import baselines
from mbold_tf.models import distance_networks as dn
from mbold_tf.utils import run_config
from mbold_tf.utils import training

KIND = "rig"            # <root_dir>/config.json: the model (rig_settings) and the action size
VAE_KIND = "rig_vae"    # <root_dir>/vae/config.json: the VAE stage's training settings
SAC_KIND = "rig_sac"    # <root_dir>/sac/config.json: the SAC stage's training settings
VAE_DIR = "vae"
SAC_DIR = "sac"
ENV_STEPS_FILE = "env_steps.json"  # in <root_dir>/sac: online environment steps collected


@gin.configurable
def rig_settings(latent_dim: int = 8, kl_weight: float = 1e-3,
                 encoder_filters: Sequence[int] = (8, 16, 32, 64), kernel_size: int = 4,
                 strides: int = 2, batch_norm_layers: Sequence[int] = (2, 3),
                 vae_units: int = 128, actor_fc_layers: int = 6, critic_fc_layers: int = 6,
                 fc_units: int = 256, gamma: float = 0.95, episode_steps: int = 30) -> Dict:
    """RIG's model settings (App. B.1 defaults) as a JSON-able dict (gin-configurable).

    ``latent_dim`` / ``kl_weight``: the β-VAE (8, 1e-3). ``encoder_filters`` … ``vae_units``:
    the VAE (App. A.1 encoder, 128-unit FC layers). ``actor_fc_layers`` / ``critic_fc_layers`` ×
    ``fc_units``: SAC's MLPs (RLKit's 256 units, 6 layers in the paper). ``gamma``: SAC's
    discount (0.95). ``episode_steps``: steps per collected episode (30).
    Raises ValueError naming a setting out of its range.
    """
    for name, value in (("latent_dim", latent_dim), ("vae_units", vae_units),
                        ("actor_fc_layers", actor_fc_layers),
                        ("critic_fc_layers", critic_fc_layers), ("fc_units", fc_units),
                        ("episode_steps", episode_steps), ("kernel_size", kernel_size),
                        ("strides", strides)):
        if int(value) < 1:
            raise ValueError(f"rig_settings.{name} must be ≥ 1, got {value!r}.")
    if not 0.0 < gamma < 1.0:
        raise ValueError(f"rig_settings.gamma must be in (0, 1), got {gamma!r}.")
    if kl_weight < 0:
        raise ValueError(f"rig_settings.kl_weight must be ≥ 0, got {kl_weight!r}.")
    filters = [int(f) for f in encoder_filters]
    if not filters or 64 % (int(strides) ** len(filters)):
        raise ValueError(f"rig_settings.encoder_filters {filters} with strides {strides} must "
                         f"divide the 64-pixel image side evenly (the decoder mirrors them).")
    return {"latent_dim": int(latent_dim), "kl_weight": float(kl_weight),
            "encoder_filters": filters, "kernel_size": int(kernel_size),
            "strides": int(strides), "batch_norm_layers": [int(i) for i in batch_norm_layers],
            "vae_units": int(vae_units), "actor_fc_layers": int(actor_fc_layers),
            "critic_fc_layers": int(critic_fc_layers), "fc_units": int(fc_units),
            "gamma": float(gamma), "episode_steps": int(episode_steps)}


def vae_settings(settings: Dict) -> Dict:
    """The :class:`baselines.VAE` settings dict of RIG's β-VAE (from :func:`rig_settings`)."""
    return {"encoder_filters": list(settings["encoder_filters"]),
            "kernel_size": settings["kernel_size"], "strides": settings["strides"],
            "batch_norm_layers": list(settings["batch_norm_layers"]),
            "vae_latent_dim": settings["latent_dim"], "vae_units": settings["vae_units"],
            "vae_kl_weight": settings["kl_weight"]}


def build_vae(settings: Dict) -> baselines.VAE:
    """RIG's β-VAE with its variables created (eval-mode call on one zero image)."""
    vae = baselines.VAE(vae_settings(settings), name="rig_vae")
    vae(tf.zeros([1, 64, 64, 3], tf.float32), training=False)
    return vae


def observation_spec(settings: Dict) -> tf.TensorSpec:
    """SAC's observation: float32 [2 · latent_dim] = z(s) ‖ z_g."""
    return tf.TensorSpec([2 * settings["latent_dim"]], tf.float32, name="latent_observation")


def action_spec(action_dim: int = 4) -> tensor_spec.BoundedTensorSpec:
    """float32 [action_dim] in [-1, 1]."""
    return tensor_spec.BoundedTensorSpec([int(action_dim)], tf.float32, -1.0, 1.0,
                                         name="action")


def build_actor(settings: Dict, action_dim: int = 4):
    """SAC's actor: ``ActorDistributionNetwork`` (tanh-normal) with variables created.

    Input float32 [B, 2 · latent_dim]; output a distribution over float32 [B, action_dim] in
    [-1, 1].
    """
    actor = actor_distribution_network.ActorDistributionNetwork(
        observation_spec(settings), action_spec(action_dim),
        fc_layer_params=(settings["fc_units"],) * settings["actor_fc_layers"],
        continuous_projection_net=tanh_normal_projection_network.TanhNormalProjectionNetwork,
        name="rig_actor")
    actor.create_variables()
    return actor


def build_critic(settings: Dict, action_dim: int = 4, name: str = "rig_critic"):
    """A SAC critic: ``CriticNetwork`` on (latent observation [B, 2L], action [B, A]) → [B]."""
    return critic_network.CriticNetwork(
        (observation_spec(settings), action_spec(action_dim)),
        joint_fc_layer_params=(settings["fc_units"],) * settings["critic_fc_layers"],
        kernel_initializer="glorot_uniform", last_kernel_initializer="glorot_uniform",
        name=name)


def latent_reward(z, z_goal) -> tf.Tensor:
    """float32 [...]: −‖z − z_goal‖₂ over the last axis (0 at the goal, negative elsewhere)."""
    z = tf.convert_to_tensor(z, tf.float32)
    z_goal = tf.convert_to_tensor(z_goal, tf.float32)
    return -tf.norm(z - z_goal, axis=-1)


class RigModel(tf.Module):
    """RIG's trained parts: the β-VAE (``vae``) and SAC's actor (``actor``).

    Args:
      settings: :func:`rig_settings` (as stored in the run's ``config.json``).
      action_dim: the action size (4 for the tabletop tasks).
    """

    def __init__(self, settings: Dict, action_dim: int = 4, name: str = "rig_model"):
        super().__init__(name=name)
        self.settings = dict(settings)
        self.action_dim = int(action_dim)
        self.latent_dim = int(settings["latent_dim"])
        self.vae = build_vae(settings)
        self.actor = build_actor(settings, action_dim)

    def encode(self, image, training: bool = False) -> tf.Tensor:
        """image [B, 64, 64, 3] uint8 or float32 in [0, 1] → float32 [B, latent_dim] (mean)."""
        image = dn.to_float_image(dn.check_image(image, "image"), "image")
        return self.vae.encode_mean(image, training=training)

    def encode_pair(self, image, goal_image) -> tf.Tensor:
        """float32 [B, 2 · latent_dim]: z(image) ‖ z(goal_image), encoded in one VAE call."""
        image = dn.to_float_image(dn.check_image(image, "image"), "image")
        goal_image = dn.to_float_image(dn.check_image(goal_image, "goal_image"), "goal_image")
        both = self.vae.encode_mean(tf.concat([image, goal_image], 0), training=False)
        z, z_goal = tf.split(both, 2, axis=0)
        return tf.concat([z, z_goal], -1)

    def action_distribution(self, latent_observation):
        """SAC's action distribution for float32 [B, 2 · latent_dim] observations."""
        dist, _ = self.actor(latent_observation, step_type=(), network_state=(), training=False)
        return dist

    def action(self, image, goal_image) -> tf.Tensor:
        """float32 [B, action_dim] in [-1, 1]: the actor's mode (deterministic) at (s, g)."""
        return self.action_distribution(self.encode_pair(image, goal_image)).mode()


def latest_checkpoint(ckpt_dir: str) -> str:
    """The newest checkpoint path in ``ckpt_dir``; FileNotFoundError naming how to train one."""
    latest = tf.train.latest_checkpoint(ckpt_dir)
    if not latest:
        raise FileNotFoundError(f"No checkpoint in {ckpt_dir}; train RIG with python -m "
                                f"launch.train_rig --root_dir=<run dir> --gin_file=...")
    return latest


def checkpoint_step(path: str) -> int:
    """The step number of a ``.../ckpt-N`` checkpoint path."""
    return int(path.rsplit("-", 1)[-1])


def read_settings(root_dir: str) -> Dict:
    """The stored :func:`rig_settings` plus ``action_dim`` (int) of a RIG run directory.

    Raises FileNotFoundError when ``root_dir`` holds no run and ConfigMismatchError (a
    ValueError) when it holds another kind of model.
    """
    return run_config.read_config(root_dir, KIND)


def restore_vae(vae: baselines.VAE, root_dir: str) -> str:
    """Restores the latest VAE-stage checkpoint of ``root_dir`` into ``vae``; returns its path."""
    latest = latest_checkpoint(os.path.join(root_dir, VAE_DIR, "ckpt"))
    tf.train.Checkpoint(model=vae).restore(latest).expect_partial() \
        .assert_existing_objects_matched()
    training.check_finite_weights({"vae": vae}, latest)
    return latest


def read_env_steps(root_dir: str) -> Optional[Dict]:
    """The SAC stage's record of online collection (env_steps, episodes...), or None."""
    path = os.path.join(root_dir, SAC_DIR, ENV_STEPS_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)
