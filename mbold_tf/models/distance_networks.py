"""TF-Agents networks of the distance function (App. A.1): a goal-conditioned actor and critic.

Both take the observation dict ``{'image', 'goal_image'}`` (other keys, e.g. the environment's
``joint_pos`` and ``gripper``, are ignored) with images either uint8 in [0, 255] or float32 in
[0, 1] (the planner feeds predicted frames), shape [B, 64, 64, 3]. Inside, the two images are
concatenated channel-wise into a 64×64×6 input scaled to [0, 1].

Convolutional encoder: 4 conv layers, filters [8, 16, 32, 64], kernel 4, stride 2, 'same'
padding, LeakyReLU after the intermediate (first three) layers, batch-norm after the 2nd and 3rd
LeakyReLU. Critic: flattened features ‖ action → ``critic_fc_layers`` × ``fc_units`` (ReLU +
batch-norm, or LayerNorm / none: ``critic_fc_norm``) → 1. Actor: flattened features →
``actor_fc_layers`` × ``fc_units`` (ReLU + batch-norm) → action dim, tanh, scaled to the action
spec.

TF-Agents' ``Network.__call__`` checks input dtypes against ``input_tensor_spec``; these networks
convert their inputs (select the two image keys, uint8 → float32 / 255) *before* that check, so
their ``input_tensor_spec`` is the float32 [0, 1] image spec and both dtypes are accepted.
"""
from __future__ import annotations

from typing import Dict, Mapping, Sequence, Tuple

import gin
import numpy as np
import tensorflow as tf
from tf_agents.networks import network
from tf_agents.specs import tensor_spec

IMAGE_SHAPE = (64, 64, 3)
IMAGE_KEYS = ("image", "goal_image")


def to_float_image(x, name: str = "image") -> tf.Tensor:
    """uint8 [..., H, W, 3] → float32 / 255; float images pass through (cast to float32).

    Raises TypeError for other dtypes.
    """
    x = tf.convert_to_tensor(x)
    if x.dtype == tf.uint8:
        return tf.cast(x, tf.float32) / 255.0
    if x.dtype.is_floating:
        return tf.cast(x, tf.float32)
    raise TypeError(f"{name} must be uint8 in [0, 255] or float32 in [0, 1], got dtype "
                    f"{x.dtype.name}.")


def check_image(x, name: str = "image", batched: bool = True) -> tf.Tensor:
    """Validates an image batch [B, 64, 64, 3] (uint8 or float) and returns it as a tensor.

    Raises ValueError/TypeError naming ``name``, the expected and the received shape/dtype.
    """
    x = tf.convert_to_tensor(x)
    want = ("[B,64,64,3]" if batched else "[64,64,3]")
    rank = 4 if batched else 3
    ok_dtype = x.dtype == tf.uint8 or x.dtype.is_floating
    shape = x.shape
    ok_shape = shape.rank == rank and all(
        s is None or s == e for s, e in zip(shape.as_list()[-3:], IMAGE_SHAPE))
    if not (ok_dtype and ok_shape):
        raise ValueError(f"{name.replace('_', ' ')} must be {want} uint8 or float32, got "
                         f"{shape.as_list() if shape.rank is not None else 'unknown shape'} "
                         f"{x.dtype.name}.")
    return x


def preprocess_observation(observation) -> Dict[str, tf.Tensor]:
    """Selects 'image' and 'goal_image' and maps them to float32 [0, 1] (others dropped)."""
    if not (isinstance(observation, Mapping) or hasattr(observation, "keys")):
        raise TypeError("The distance networks take an observation dict with keys 'image' and "
                        f"'goal_image'; got {type(observation).__name__}.")
    missing = [k for k in IMAGE_KEYS if k not in observation]
    if missing:
        raise KeyError(f"Observation is missing {missing}; the distance networks need 'image' and "
                       f"'goal_image' ([B, 64, 64, 3] uint8 or float32), got keys "
                       f"{sorted(observation)}.")
    out = {}
    for k in IMAGE_KEYS:
        x = tf.convert_to_tensor(observation[k])
        if x.shape.rank is not None and tuple(x.shape.as_list()[-3:]) != IMAGE_SHAPE and \
                None not in x.shape.as_list()[-3:]:
            raise ValueError(f"{k.replace('_', ' ')} must be [..., 64, 64, 3] uint8 or float32, "
                             f"got {x.shape.as_list()} {x.dtype.name}.")
        out[k] = to_float_image(x, k)
    return out


def float_observation_spec(observation_spec=None) -> Dict[str, tf.TensorSpec]:
    """The networks' own input spec: float32 [64, 64, 3] images in [0, 1] under both keys."""
    if observation_spec is not None:
        missing = [k for k in IMAGE_KEYS if k not in observation_spec]
        if missing:
            raise KeyError(f"Observation spec lacks {missing}; it has {sorted(observation_spec)}.")
    return {k: tensor_spec.BoundedTensorSpec(IMAGE_SHAPE, tf.float32, 0.0, 1.0, name=k)
            for k in IMAGE_KEYS}


@gin.configurable
def network_settings(encoder_filters: Sequence[int] = (8, 16, 32, 64), kernel_size: int = 4,
                     strides: int = 2, batch_norm_layers: Sequence[int] = (2, 3),
                     critic_fc_layers: int = 6, actor_fc_layers: int = 10,
                     fc_units: int = 128, critic_fc_norm: str = "batch",
                     batch_norm_momentum: float = 0.99) -> Dict:
    """The distance networks' sizes (App. A.1 defaults), as a JSON-able dict (gin-configurable).

    ``batch_norm_layers``: 1-based conv layers followed by batch-norm (after their LeakyReLU).
    ``critic_fc_norm``: normalisation after each critic FC layer: 'batch' (the paper), 'layer'
    (per-row LayerNorm: no coupling between the rows of a batch, no train/inference gap) or
    'none'. The actor keeps batch-norm.
    ``batch_norm_momentum``: of every batch-norm layer's moving averages (Keras' 0.99 averages
    about the last 100 batches; PyTorch's default, 0.1 there, is 0.9 here).
    """
    return networks_dict(encoder_filters, kernel_size, strides, batch_norm_layers,
                         critic_fc_layers, actor_fc_layers, fc_units, critic_fc_norm,
                         batch_norm_momentum)


def networks_dict(encoder_filters: Sequence[int], kernel_size: int, strides: int,
                  batch_norm_layers: Sequence[int], critic_fc_layers: int, actor_fc_layers: int,
                  fc_units: int, critic_fc_norm: str, batch_norm_momentum: float) -> Dict:
    """The checked JSON-able dict of :func:`network_settings`' arguments, for a caller that owns
    its own defaults (SoRB's :func:`mbold_tf.models.sorb.sorb_settings`): not gin-configurable,
    so no binding of ``network_settings`` reaches it.

    Raises ValueError for a batch-norm momentum outside [0, 1) or an unknown critic norm.
    """
    if not 0.0 <= batch_norm_momentum < 1.0:
        raise ValueError(f"batch_norm_momentum must be in [0, 1), got {batch_norm_momentum}.")
    return {"encoder_filters": [int(f) for f in encoder_filters], "kernel_size": int(kernel_size),
            "strides": int(strides), "batch_norm_layers": [int(i) for i in batch_norm_layers],
            "critic_fc_layers": int(critic_fc_layers), "actor_fc_layers": int(actor_fc_layers),
            "fc_units": int(fc_units), "critic_fc_norm": _check_norm(critic_fc_norm),
            "batch_norm_momentum": float(batch_norm_momentum)}


class ConvEncoder(tf.keras.layers.Layer):
    """The paper's "convolutional encoder": conv stack → flattened features."""

    def __init__(self, filters: Sequence[int] = (8, 16, 32, 64), kernel_size: int = 4,
                 strides: int = 2, batch_norm_layers: Sequence[int] = (2, 3),
                 batch_norm_momentum: float = 0.99, name: str = "conv_encoder"):
        super().__init__(name=name)
        self._convs, self._norms, self._acts = [], [], []
        n = len(filters)
        for i, f in enumerate(filters):
            self._convs.append(tf.keras.layers.Conv2D(int(f), kernel_size, strides, padding="same",
                                                      name=f"conv{i + 1}"))
            last = i == n - 1
            self._acts.append(None if last else tf.keras.layers.LeakyReLU(0.2))
            self._norms.append(tf.keras.layers.BatchNormalization(
                momentum=batch_norm_momentum, name=f"bn{i + 1}")
                               if (i + 1) in batch_norm_layers and not last else None)
        self._flatten = tf.keras.layers.Flatten()

    def call(self, x, training=False):
        for conv, act, norm in zip(self._convs, self._acts, self._norms):
            x = conv(x)
            if act is not None:
                x = act(x)
            if norm is not None:
                x = norm(x, training=training)
        return self._flatten(x)


class ReferenceBatchNorm(tf.keras.layers.BatchNormalization):
    """Keras batch-norm whose training-mode statistics can come from the first rows only.

    ``call(x, training, reference_rows=k)``: in training mode the mean and variance of
    ``x[:k]`` normalise *all* rows and alone update the moving averages, so extra rows (CQL's
    random actions) are normalised exactly like the data rows, in training and at inference.
    Without ``reference_rows`` it is ``BatchNormalization`` (same variables, same checkpoints).
    """

    def call(self, inputs, training=None, reference_rows=None):
        if reference_rows is None or not training:
            return super().call(inputs, training=training)
        ref = inputs[:reference_rows]
        mean, variance = tf.nn.moments(ref, axes=[0])
        m = self.momentum
        self.moving_mean.assign(self.moving_mean * m + tf.stop_gradient(mean) * (1.0 - m))
        self.moving_variance.assign(self.moving_variance * m
                                    + tf.stop_gradient(variance) * (1.0 - m))
        return tf.nn.batch_normalization(inputs, mean, variance, self.beta, self.gamma,
                                         self.epsilon)


FC_NORMS = ("batch", "layer", "none")


def _check_norm(norm: str) -> str:
    if norm not in FC_NORMS:
        raise ValueError(f"Unknown FC normalisation {norm!r}; choose one of {FC_NORMS}.")
    return norm


class MLP(tf.keras.layers.Layer):
    """``num_layers`` × Dense(units) + ReLU + norm ('batch', 'layer' or 'none'), then linear."""

    def __init__(self, num_layers: int, units: int, output_dim: int, name: str = "mlp",
                 norm: str = "batch", batch_norm_momentum: float = 0.99):
        super().__init__(name=name)
        self._norm_kind = _check_norm(norm)
        self._dense = [tf.keras.layers.Dense(units, name=f"fc{i + 1}") for i in range(num_layers)]
        if norm == "batch":
            self._norms = [ReferenceBatchNorm(momentum=batch_norm_momentum, name=f"fc_bn{i + 1}")
                           for i in range(num_layers)]
        elif norm == "layer":
            self._norms = [tf.keras.layers.LayerNormalization(name=f"fc_ln{i + 1}")
                           for i in range(num_layers)]
        else:
            self._norms = [None] * num_layers
        self._out = tf.keras.layers.Dense(output_dim, name="out")

    def call(self, x, training=False, reference_rows=None):
        """x float32 [R, F] → [R, output_dim]; ``reference_rows``: see ReferenceBatchNorm."""
        for dense, norm in zip(self._dense, self._norms):
            x = tf.nn.relu(dense(x))
            if self._norm_kind == "batch":
                x = norm(x, training=training, reference_rows=reference_rows)
            elif norm is not None:
                x = norm(x)
        return self._out(x)


def _stack_images(obs: Dict[str, tf.Tensor]) -> tf.Tensor:
    return tf.concat([obs["image"], obs["goal_image"]], axis=-1)


class DistanceCriticNetwork(network.Network):
    """Q(s, a, g): inputs ``(observation dict, action)``; output float32 [B] (or [B, N]).

    ``action`` may be [B, A] or [B, N, A]: with N actions per state the image encoder runs once
    per state and its features are shared (used for CQL's random actions).
    """

    def __init__(self, input_tensor_spec, encoder_filters=(8, 16, 32, 64), kernel_size=4,
                 strides=2, batch_norm_layers=(2, 3), critic_fc_layers=6, actor_fc_layers=10,
                 fc_units=128, critic_fc_norm="batch", batch_norm_momentum=0.99,
                 name="DistanceCriticNetwork"):
        del actor_fc_layers  # accepted so that network_settings() can be passed whole
        observation_spec, action_spec = input_tensor_spec
        spec = (float_observation_spec(observation_spec), action_spec)
        super().__init__(input_tensor_spec=spec, state_spec=(), name=name)
        self._encoder = ConvEncoder(encoder_filters, kernel_size, strides, batch_norm_layers,
                                    batch_norm_momentum)
        self._mlp = MLP(critic_fc_layers, fc_units, 1, name="critic_mlp", norm=critic_fc_norm,
                        batch_norm_momentum=batch_norm_momentum)

    def __call__(self, inputs, *args, **kwargs):
        observation, action = inputs
        return super().__call__((preprocess_observation(observation),
                                 tf.cast(action, tf.float32)), *args, **kwargs)

    def call(self, inputs, step_type=None, network_state=(), training=False):
        del step_type
        observation, action = inputs
        features = self._encoder(_stack_images(observation), training=training)
        # Built under a mixed policy (planning in bfloat16) the features are bfloat16: the
        # action joins them in their dtype and Q leaves as float32 (no-ops in float32).
        action = tf.cast(action, features.dtype)
        if action.shape.rank == 3:  # [B, N, A]: share the encoder over N actions
            n = tf.shape(action)[1]
            f = tf.repeat(features[:, None], n, axis=1)
            h = tf.concat([f, action], axis=-1)
            flat = tf.reshape(h, [-1, h.shape[-1]])
            q = tf.cast(self._mlp(flat, training=training), tf.float32)
            return tf.reshape(q, tf.shape(action)[:2]), network_state
        h = tf.concat([features, action], axis=-1)
        return tf.squeeze(tf.cast(self._mlp(h, training=training), tf.float32), -1), \
            network_state

    def data_and_extra_q(self, observation, data_action, extra_actions, training=False
                         ) -> Tuple[tf.Tensor, tf.Tensor]:
        """Q at the data actions and at extra (e.g. CQL's random) actions, one encoder pass.

        Args:
          observation: dict with 'image', 'goal_image' [B, 64, 64, 3] (uint8 or float32).
          data_action: float32 [B, A].
          extra_actions: float32 [B, N, A].
        In training mode the MLP's batch-norm statistics (and moving averages) come from the
        B data rows alone and normalise the B·N extra rows too (``ReferenceBatchNorm``), so
        off-data actions neither shift the normalisation the critic is evaluated with nor get
        one of their own.
        Returns:
          (q_data float32 [B], q_extra float32 [B, N]).
        """
        obs = preprocess_observation(observation)
        features = self._encoder(_stack_images(obs), training=training)
        data_action = tf.cast(data_action, tf.float32)
        extra_actions = tf.cast(extra_actions, tf.float32)
        batch, n = tf.shape(extra_actions)[0], tf.shape(extra_actions)[1]
        h_extra = tf.concat([tf.repeat(features[:, None], n, axis=1), extra_actions], axis=-1)
        h = tf.concat([tf.concat([features, data_action], -1),
                       tf.reshape(h_extra, [-1, h_extra.shape[-1]])], axis=0)
        q = tf.squeeze(self._mlp(h, training=training, reference_rows=batch), -1)
        return q[:batch], tf.reshape(q[batch:], tf.stack([batch, n]))


class DistanceActorNetwork(network.Network):
    """π(s, g): observation dict → action in the action spec's box (tanh, rescaled)."""

    def __init__(self, input_tensor_spec, output_tensor_spec, encoder_filters=(8, 16, 32, 64),
                 kernel_size=4, strides=2, batch_norm_layers=(2, 3), critic_fc_layers=6,
                 actor_fc_layers=10, fc_units=128, critic_fc_norm="batch",
                 batch_norm_momentum=0.99, name="DistanceActorNetwork"):
        del critic_fc_layers, critic_fc_norm
        super().__init__(input_tensor_spec=float_observation_spec(input_tensor_spec),
                         state_spec=(), name=name)
        self._output_tensor_spec = output_tensor_spec
        self._low = tf.constant(np.broadcast_to(output_tensor_spec.minimum,
                                                output_tensor_spec.shape), tf.float32)
        self._high = tf.constant(np.broadcast_to(output_tensor_spec.maximum,
                                                 output_tensor_spec.shape), tf.float32)
        self._encoder = ConvEncoder(encoder_filters, kernel_size, strides, batch_norm_layers,
                                    batch_norm_momentum)
        self._mlp = MLP(actor_fc_layers, fc_units, int(np.prod(output_tensor_spec.shape)),
                        name="actor_mlp", batch_norm_momentum=batch_norm_momentum)

    def __call__(self, inputs, *args, **kwargs):
        return super().__call__(preprocess_observation(inputs), *args, **kwargs)

    def call(self, observation, step_type=None, network_state=(), training=False):
        del step_type
        h = self._encoder(_stack_images(observation), training=training)
        a = tf.tanh(tf.cast(self._mlp(h, training=training), tf.float32))
        a = self._low + (a + 1.0) * 0.5 * (self._high - self._low)
        return tf.reshape(a, [-1] + list(self._output_tensor_spec.shape)), network_state


def observation_spec() -> Dict[str, tf.TensorSpec]:
    """The agent's observation spec: uint8 [64, 64, 3] 'image' and 'goal_image'."""
    return {k: tensor_spec.BoundedTensorSpec(IMAGE_SHAPE, tf.uint8, 0, 255, name=k)
            for k in IMAGE_KEYS}


def action_spec(dim: int = 4) -> tensor_spec.BoundedTensorSpec:
    """float32 [dim] actions in [-1, 1]."""
    return tensor_spec.BoundedTensorSpec((dim,), tf.float32, -1.0, 1.0, name="action")


def build_networks(settings: Dict, obs_spec=None, act_spec=None
                   ) -> Tuple[DistanceActorNetwork, DistanceCriticNetwork, DistanceCriticNetwork]:
    """Actor and twin critics (separate encoders) with variables created."""
    obs_spec = obs_spec or observation_spec()
    act_spec = act_spec or action_spec()
    actor = DistanceActorNetwork(obs_spec, act_spec, **settings)
    critic1 = DistanceCriticNetwork((obs_spec, act_spec), name="CriticNetwork1", **settings)
    critic2 = DistanceCriticNetwork((obs_spec, act_spec), name="CriticNetwork2", **settings)
    for net in (actor, critic1, critic2):
        net.create_variables()
    return actor, critic1, critic2
