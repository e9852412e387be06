"""Search on the Replay Buffer (SoRB, Eysenbach et al. 2019; paper App. B.4): the distance model.

SoRB learns a *distributional* goal-conditioned critic: Q(s, a, g) gives logits over
``num_bins`` distance bins, bin k meaning "k + 1 steps to go after taking a" and the last bin
"``num_bins`` steps or more". Its Bellman target for a transition (s, a, s', g) is

* all mass on bin 0 when s' reaches g (the pipeline's indicator reward), otherwise
* the target critic's distribution at (s', π_target(s', g) + clipped noise, g) shifted one bin
  to the right, the last two bins merging (the mass at "num_bins or more" stays there);

the loss is the cross-entropy to that target (the KL divergence up to the target's entropy).
Undiscounted: a distance is a count of steps. The deterministic actor π(s, g) (tanh, 4-d)
minimises the critic's expected distance E[d] = Σ_k p_k·(k + 1) (TD3 style, Polyak targets).

Networks (App. B.4: "the same architecture and training scheme" as the MBOLD distance, App. A.1):
the project's convolutional encoder on state ‖ goal stacked on channels, then
``critic_fc_layers`` × ``fc_units`` → ``num_bins`` (critic, action concatenated to the features)
and :class:`~mbold_tf.models.distance_networks.DistanceActorNetwork` (actor); separate encoders.

:class:`SorbModel` holds the four networks (online and target actor / critic) and gives

* ``distance(image, goal_image)`` → float32 [B]: E[d] at the actor's action (eval mode);
* ``pairwise_distances(images, goal_images)`` → float32 [N, M], in blocks of pairs, for the
  graph over replay-buffer observations (``SorbGraph``, saved as ``graph.npz`` in the run).

Images: uint8 [B, 64, 64, 3] in [0, 255] or float32 in [0, 1].
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Dict, Optional, Sequence

import gin
import numpy as np
import tensorflow as tf
from tf_agents.networks import network
from tf_agents.utils import common

from mbold_tf.models import distance_networks as dn

KIND = "sorb"  # run_config kind of a SoRB run directory
GRAPH_FILE = "graph.npz"


@gin.configurable
def sorb_settings(encoder_filters: Sequence[int] = (8, 16, 32, 64), kernel_size: int = 4,
                  strides: int = 2, batch_norm_layers: Sequence[int] = (2, 3),
                  critic_fc_layers: int = 6, actor_fc_layers: int = 10, fc_units: int = 128,
                  critic_fc_norm: str = "batch", batch_norm_momentum: float = 0.99,
                  num_bins: int = 10, max_dist: float = 4.0, graph_size: int = 2000) -> Dict:
    """SoRB's model settings (App. B.4 / A.1 defaults), as a JSON-able dict (gin-configurable).

    The network arguments are those of :func:`distance_networks.network_settings` (same meaning,
    owned here so that a SoRB run is configured apart from the MBOLD distance: a binding of
    ``network_settings`` does not reach SoRB).
    ``num_bins``: distance bins of the critic (10 in the paper). ``max_dist``: graph edges join
    observations whose predicted distance is ≤ this many steps (4 in the paper).
    ``graph_size``: observations of the training data in the graph (2,000 in the paper).
    Returns {'networks': dict, 'num_bins': int, 'max_dist': float, 'graph_size': int}.
    Raises ValueError naming a setting out of range.
    """
    if int(num_bins) < 2:
        raise ValueError(f"sorb_settings.num_bins must be >= 2 (the paper: 10), got {num_bins}.")
    if not float(max_dist) > 0:
        raise ValueError(f"sorb_settings.max_dist must be > 0 steps (the paper: 4), got "
                         f"{max_dist}.")
    if int(graph_size) < 2:
        raise ValueError(f"sorb_settings.graph_size must be >= 2 observations (the paper: 2000), "
                         f"got {graph_size}.")
    networks = dn.networks_dict(
        encoder_filters=encoder_filters, kernel_size=kernel_size, strides=strides,
        batch_norm_layers=batch_norm_layers, critic_fc_layers=critic_fc_layers,
        actor_fc_layers=actor_fc_layers, fc_units=fc_units, critic_fc_norm=critic_fc_norm,
        batch_norm_momentum=batch_norm_momentum)
    return {"networks": networks, "num_bins": int(num_bins), "max_dist": float(max_dist),
            "graph_size": int(graph_size)}


class DistributionalCriticNetwork(network.Network):
    """Q(s, a, g) as logits over distance bins: inputs ``(observation dict, action)``.

    Output float32 [B, num_bins] (bin k: k + 1 steps to go; the last: num_bins or more).
    Observation: ``{'image', 'goal_image'}`` uint8 [B, 64, 64, 3] or float32 in [0, 1] (other
    keys ignored); action float32 [B, A].
    """

    def __init__(self, input_tensor_spec, num_bins: int = 10, encoder_filters=(8, 16, 32, 64),
                 kernel_size=4, strides=2, batch_norm_layers=(2, 3), critic_fc_layers=6,
                 actor_fc_layers=10, fc_units=128, critic_fc_norm="batch",
                 batch_norm_momentum=0.99, name="DistributionalCriticNetwork"):
        del actor_fc_layers  # accepted so that the 'networks' settings can be passed whole
        observation_spec, action_spec = input_tensor_spec
        spec = (dn.float_observation_spec(observation_spec), action_spec)
        super().__init__(input_tensor_spec=spec, state_spec=(), name=name)
        self._num_bins = int(num_bins)
        self._encoder = dn.ConvEncoder(encoder_filters, kernel_size, strides, batch_norm_layers,
                                       batch_norm_momentum)
        self._mlp = dn.MLP(critic_fc_layers, fc_units, self._num_bins, name="critic_mlp",
                           norm=critic_fc_norm, batch_norm_momentum=batch_norm_momentum)

    def __call__(self, inputs, *args, **kwargs):
        observation, action = inputs
        return super().__call__((dn.preprocess_observation(observation),
                                 tf.cast(action, tf.float32)), *args, **kwargs)

    def call(self, inputs, step_type=None, network_state=(), training=False):
        del step_type
        observation, action = inputs
        stacked = tf.concat([observation["image"], observation["goal_image"]], axis=-1)
        features = self._encoder(stacked, training=training)
        h = tf.concat([features, action], axis=-1)
        return self._mlp(h, training=training), network_state


def expected_distance(logits: tf.Tensor) -> tf.Tensor:
    """float32 [...]: Σ_k softmax(logits)_k · (k + 1) over the last axis (steps to go, ≥ 1)."""
    logits = tf.cast(logits, tf.float32)
    steps = tf.range(1, tf.shape(logits)[-1] + 1, dtype=tf.float32)
    return tf.reduce_sum(tf.nn.softmax(logits, axis=-1) * steps, axis=-1)


def shifted_target(probs: tf.Tensor, reached: tf.Tensor) -> tf.Tensor:
    """SoRB's distributional Bellman target, float32 [B, K].

    Args:
      probs: float32 [B, K], the target critic's distribution at (s', π(s'), g).
      reached: bool [B], s' is the goal.
    Returns: one-hot bin 0 where ``reached``; elsewhere ``probs`` shifted one bin right
    (bin 0 gets 0, bin k gets p_{k-1}, the last bin gets p_{K-2} + p_{K-1}).
    """
    probs = tf.cast(probs, tf.float32)
    shifted = tf.concat([tf.zeros_like(probs[:, :1]), probs[:, :-2],
                         tf.reduce_sum(probs[:, -2:], axis=1, keepdims=True)], axis=1)
    one_hot = tf.one_hot(tf.zeros_like(reached, tf.int32), tf.shape(probs)[1], dtype=tf.float32)
    return tf.where(reached[:, None], one_hot, shifted)


class SorbModel(tf.Module):
    """SoRB's actor and distributional critic with their Polyak target copies.

    Args:
      settings: :func:`sorb_settings`.
      action_dim: A (4 for the tabletop tasks).
      max_pairs: pairs per network call in ``distance`` / ``pairwise_distances`` (memory bound:
        about max_pairs × 64 × 64 × 6 floats per call); not a model setting.
    """

    def __init__(self, settings: Dict, action_dim: int = 4, max_pairs: int = 2048,
                 name: str = "sorb"):
        super().__init__(name=name)
        # Kept as JSON, so the settings stay a plain dict (not a tracked structure).
        self._settings_json = json.dumps(settings, sort_keys=True)
        nets = dict(settings["networks"])
        obs_spec, act_spec = dn.observation_spec(), dn.action_spec(action_dim)
        self.actor = dn.DistanceActorNetwork(obs_spec, act_spec, name="SorbActor", **nets)
        self.critic = DistributionalCriticNetwork((obs_spec, act_spec), settings["num_bins"],
                                                  name="SorbCritic", **nets)
        self.target_actor = self.actor.copy(name="SorbTargetActor")
        self.target_critic = self.critic.copy(name="SorbTargetCritic")
        for net in (self.actor, self.critic, self.target_actor, self.target_critic):
            net.create_variables()
        self.update_targets(1.0)
        self.action_dim = int(action_dim)
        self.max_pairs = int(max_pairs)
        img = lambda dt: tf.TensorSpec([None, 64, 64, 3], dt)
        self._fns = {dt.name: tf.function(self._chunked_distance, input_signature=[img(dt),
                                                                                  img(dt)])
                     for dt in (tf.uint8, tf.float32)}
        self._block_fns = {dt.name: tf.function(self._block_distance,
                                                input_signature=[img(dt), img(dt)])
                           for dt in (tf.uint8, tf.float32)}

    @property
    def settings(self) -> Dict:
        """The :func:`sorb_settings` this model was built with (a fresh dict)."""
        return json.loads(self._settings_json)

    @property
    def num_bins(self) -> int:
        return int(self.settings["num_bins"])

    # -- training ---------------------------------------------------------------------------
    @staticmethod
    def _observations(batch):
        obs = {"image": batch["observation"], "goal_image": batch["goal"]}
        next_obs = {"image": batch["next_observation"], "goal_image": batch["goal"]}
        return obs, next_obs

    def critic_loss(self, batch: Dict[str, tf.Tensor], training: bool = True,
                    target_policy_noise: float = 0.1,
                    target_policy_noise_clip: float = 0.2) -> Dict[str, tf.Tensor]:
        """The distributional TD loss on a :func:`pipelines.distance_dataset` batch.

        ``batch``: observation, next_observation, goal uint8 [B, 64, 64, 3]; action float32
        [B, A]; reward float32 [B] (indicator: 1 where next_observation reaches the goal).
        Returns float32 scalars: 'critic_loss' (cross-entropy to the target distribution),
        'kl' (the same minus the target's entropy), 'expected_distance' (E[d] of Q(s, a, g)),
        'target_distance' (E[d] of the target distribution), 'reached_fraction'.
        """
        obs, next_obs = self._observations(batch)
        target_action, _ = self.target_actor(next_obs, training=False)
        if target_policy_noise > 0:
            noise = tf.random.normal(tf.shape(target_action), stddev=target_policy_noise)
            noise = tf.clip_by_value(noise, -target_policy_noise_clip, target_policy_noise_clip)
            target_action = tf.clip_by_value(target_action + noise, -1.0, 1.0)
        target_logits, _ = self.target_critic((next_obs, target_action), training=False)
        reached = tf.cast(batch["reward"], tf.float32) > 0.5
        target = tf.stop_gradient(shifted_target(tf.nn.softmax(target_logits), reached))
        action = tf.clip_by_value(tf.cast(batch["action"], tf.float32), -1.0, 1.0)
        logits, _ = self.critic((obs, action), training=training)
        log_p = tf.nn.log_softmax(logits)
        ce = -tf.reduce_sum(target * log_p, axis=-1)
        entropy = -tf.reduce_sum(tf.math.xlogy(target, target), axis=-1)
        steps = tf.range(1, self.num_bins + 1, dtype=tf.float32)
        return {"critic_loss": tf.reduce_mean(ce), "kl": tf.reduce_mean(ce - entropy),
                "expected_distance": tf.reduce_mean(expected_distance(logits)),
                "target_distance": tf.reduce_mean(tf.reduce_sum(target * steps, -1)),
                "reached_fraction": tf.reduce_mean(tf.cast(reached, tf.float32))}

    def actor_loss(self, batch: Dict[str, tf.Tensor], training: bool = True,
                   bc_weight: float = 0.0) -> tf.Tensor:
        """float32 scalar: mean E[d] of Q(s, π(s, g), g) (the actor minimises it).

        ``bc_weight`` > 0 (not in the paper): TD3+BC's loss, α·E[d] / mean E[d] (held fixed) +
        mean ‖π(s, g) − a‖², α = ``bc_weight``, which keeps the actor, and so the critic's
        bootstrapped targets, near the data's actions.
        """
        obs, _ = self._observations(batch)
        action, _ = self.actor(obs, training=training)
        logits, _ = self.critic((obs, action), training=False)
        distance = tf.reduce_mean(expected_distance(logits))
        if bc_weight <= 0:
            return distance
        data_action = tf.clip_by_value(tf.cast(batch["action"], tf.float32), -1.0, 1.0)
        bc = tf.reduce_mean(tf.reduce_sum(tf.square(action - data_action), axis=-1))
        return bc_weight * distance / tf.stop_gradient(distance) + bc

    def update_targets(self, tau: float) -> None:
        """Polyak update of every target variable (incl. batch-norm statistics):
        target ← (1 − tau)·target + tau·online; tau = 1 copies."""
        common.soft_variables_update(self.actor.variables, self.target_actor.variables, tau)
        common.soft_variables_update(self.critic.variables, self.target_critic.variables, tau)

    # -- distances --------------------------------------------------------------------------
    def _eval_distance(self, image, goal_image):
        obs = {"image": image, "goal_image": goal_image}
        action, _ = self.actor(obs, training=False)
        logits, _ = self.critic((obs, action), training=False)
        return expected_distance(logits)

    def _chunked_distance(self, image, goal_image):
        n = tf.shape(image)[0]
        chunk = tf.constant(self.max_pairs, tf.int32)
        num_chunks = tf.maximum((n + chunk - 1) // chunk, 1)
        out = tf.TensorArray(tf.float32, size=num_chunks, infer_shape=False)
        for i in tf.range(num_chunks):
            lo = i * chunk
            hi = tf.minimum(lo + chunk, n)
            out = out.write(i, self._eval_distance(image[lo:hi], goal_image[lo:hi]))
        return tf.reshape(out.concat(), [n])

    def _block_distance(self, images, goal_images):
        """[r] images × [M] goals → float32 [r, M] (r·M pairs, chunked)."""
        r, m = tf.shape(images)[0], tf.shape(goal_images)[0]
        rows = tf.repeat(images, m, axis=0)
        cols = tf.tile(goal_images, [r, 1, 1, 1])
        return tf.reshape(self._chunked_distance(rows, cols), tf.stack([r, m]))

    def distance(self, image, goal_image) -> tf.Tensor:
        """float32 [B]: expected steps from ``image`` to ``goal_image`` (E[d] at π(s, g)).

        Both uint8 [B, 64, 64, 3] or float32 in [0, 1]; evaluated ``max_pairs`` pairs at a
        time. Raises ValueError naming the input for other shapes.
        """
        image = dn.check_image(image, "image")
        goal_image = dn.check_image(goal_image, "goal_image")
        if image.shape[0] is not None and goal_image.shape[0] is not None and \
                image.shape[0] != goal_image.shape[0]:
            raise ValueError(f"image and goal image must have the same batch size, got "
                             f"{image.shape[0]} and {goal_image.shape[0]}.")
        if image.dtype == tf.uint8 and goal_image.dtype == tf.uint8:
            return self._fns["uint8"](image, goal_image)
        return self._fns["float32"](dn.to_float_image(image), dn.to_float_image(goal_image))

    def pairwise_distances(self, images, goal_images) -> np.ndarray:
        """float32 [N, M]: ``distance(images[i], goal_images[j])`` for every pair.

        ``images`` [N, 64, 64, 3], ``goal_images`` [M, 64, 64, 3] (uint8, or float32 in
        [0, 1]). Rows go in blocks of about ``max_pairs`` pairs, so no N × M × 64 × 64 × 3
        tensor is built.
        """
        images = dn.check_image(images, "images")
        goal_images = dn.check_image(goal_images, "goal images")
        uint8 = images.dtype == tf.uint8 and goal_images.dtype == tf.uint8
        if not uint8:
            images, goal_images = dn.to_float_image(images), dn.to_float_image(goal_images)
        fn = self._block_fns["uint8" if uint8 else "float32"]
        n, m = int(images.shape[0]), int(goal_images.shape[0])
        rows = max(1, self.max_pairs // max(m, 1))
        out = np.zeros([n, m], np.float32)
        for lo in range(0, n, rows):
            out[lo:lo + rows] = fn(images[lo:lo + rows], goal_images).numpy()
        return out


@dataclasses.dataclass
class SorbGraph:
    """SoRB's graph over replay-buffer observations.

    Attributes:
      images: uint8 [N, 64, 64, 3], the nodes.
      distances: float32 [N, N], predicted steps from node i to node j (diagonal included).
      indices: int64 [N], the nodes' step indices in the training data.
      checkpoint_step: the training step of the checkpoint whose distances these are.
      seed: the seed the nodes were sampled with.
    """
    images: np.ndarray
    distances: np.ndarray
    indices: np.ndarray
    checkpoint_step: int
    seed: int

    def __post_init__(self):
        n = int(self.images.shape[0]) if self.images.ndim else 0
        if self.images.dtype != np.uint8 or tuple(self.images.shape[1:]) != dn.IMAGE_SHAPE:
            raise ValueError(f"Graph images must be uint8 [N, 64, 64, 3], got "
                             f"{list(self.images.shape)} {self.images.dtype}.")
        if tuple(self.distances.shape) != (n, n):
            raise ValueError(f"Graph distances must be [N, N] = [{n}, {n}] for {n} images, got "
                             f"{list(self.distances.shape)}.")


def write_graph(root_dir: str, graph: SorbGraph) -> str:
    """Saves ``graph`` as ``root_dir/graph.npz`` (atomically); returns the path."""
    path = os.path.join(root_dir, GRAPH_FILE)
    tmp = path + ".tmp.npz"
    np.savez(tmp, images=graph.images, distances=graph.distances.astype(np.float32),
             indices=graph.indices.astype(np.int64),
             checkpoint_step=np.int64(graph.checkpoint_step), seed=np.int64(graph.seed))
    os.replace(tmp, path)
    return path


def read_graph(root_dir: str) -> Optional[SorbGraph]:
    """The graph saved in ``root_dir`` (None when there is none)."""
    path = os.path.join(root_dir, GRAPH_FILE)
    if not os.path.exists(path):
        return None
    with np.load(path) as f:
        return SorbGraph(images=f["images"], distances=f["distances"], indices=f["indices"],
                         checkpoint_step=int(f["checkpoint_step"]), seed=int(f["seed"]))


MODEL_KEYS = ("networks", "num_bins", "max_dist", "graph_size")  # sorb_settings' keys


def build_model(settings: Dict) -> "SorbModel":
    """A :class:`SorbModel` (variables created) from a run's stored settings (config.json)."""
    return SorbModel({k: settings[k] for k in MODEL_KEYS}, action_dim=settings["action_dim"])
