"""Comparison distances and policies (Fig. 7, App. B.3, C.1, C.2), trained on the same data.

* :class:`TemporalDistanceModel` (App. C.2): the convolutional encoder on state ‖ goal, then
  ``fc_layers`` × ``units`` (ReLU + batch-norm) → 1, regressing min(t_g − t_i, max_dist) with an
  ℓ2 loss. ``distance(image, goal)`` is the prediction.
* :class:`VAE` (App. B.1/C.1): encoder (conv encoder on one image → 128 FC, ReLU + BN → mean and
  log-variance of a ``latent_dim`` Gaussian), decoder (2 × 128 FC with BN + ReLU → 4×4×64 →
  transposed convs back to 64×64×3, sigmoid); loss: mean over pixels of the squared error plus
  ``kl_weight`` × KL. ``distance(image, goal)`` = ℓ2 between the encodings' means; ``encode``.
* :class:`GCBCPolicy` (App. B.3): the actor architecture (encoder → 10 × 128 → 4, tanh) trained
  with an MSE loss on the dataset action. ``action(image, goal)`` → [B, 4] in [-1, 1].
* :func:`pixel_distance`: mean squared pixel error (Visual Foresight's cost).

All take images [B, 64, 64, 3] uint8 in [0, 255] or float32 in [0, 1].
"""
from __future__ import annotations

from typing import Dict, Sequence

import gin
import tensorflow as tf

from mbold_tf.models import distance_networks as dn


def _pair(image, goal_image):
    image = dn.to_float_image(dn.check_image(image, "image"), "image")
    goal_image = dn.to_float_image(dn.check_image(goal_image, "goal_image"), "goal_image")
    return image, goal_image


@gin.configurable
def baseline_settings(encoder_filters: Sequence[int] = (8, 16, 32, 64), kernel_size: int = 4,
                      strides: int = 2, batch_norm_layers: Sequence[int] = (2, 3),
                      temporal_fc_layers: int = 5, temporal_units: int = 256,
                      max_dist: int = 10, vae_latent_dim: int = 256, vae_units: int = 128,
                      vae_kl_weight: float = 1e-5, gcbc_fc_layers: int = 10,
                      gcbc_units: int = 128) -> Dict:
    """Sizes of the baselines (App. B/C defaults), as a JSON-able dict (gin-configurable)."""
    return {"encoder_filters": [int(f) for f in encoder_filters], "kernel_size": int(kernel_size),
            "strides": int(strides), "batch_norm_layers": [int(i) for i in batch_norm_layers],
            "temporal_fc_layers": int(temporal_fc_layers), "temporal_units": int(temporal_units),
            "max_dist": int(max_dist), "vae_latent_dim": int(vae_latent_dim),
            "vae_units": int(vae_units), "vae_kl_weight": float(vae_kl_weight),
            "gcbc_fc_layers": int(gcbc_fc_layers), "gcbc_units": int(gcbc_units)}


def _encoder(s: Dict) -> dn.ConvEncoder:
    return dn.ConvEncoder(s["encoder_filters"], s["kernel_size"], s["strides"],
                          s["batch_norm_layers"])


class _Model(tf.keras.Model):
    """Shared plumbing: eval-mode tf.functions with a None batch, for uint8 and float32."""

    def _build_functions(self, fn):
        img = lambda dt: tf.TensorSpec([None, 64, 64, 3], dt)
        return {dt.name: tf.function(fn, input_signature=[img(dt), img(dt)])
                for dt in (tf.uint8, tf.float32)}

    @staticmethod
    def _dispatch(fns, image, goal_image):
        image = dn.check_image(image, "image")
        goal_image = dn.check_image(goal_image, "goal_image")
        if image.dtype == tf.uint8 and goal_image.dtype == tf.uint8:
            return fns['uint8'](image, goal_image)
        return fns['float32'](dn.to_float_image(image), dn.to_float_image(goal_image))


class TemporalDistanceModel(_Model):
    """Temporal distance regression (App. C.2): predicts min(Δt, max_dist) from (s, g)."""

    def __init__(self, settings: Dict, name: str = "temporal_distance"):
        super().__init__(name=name)
        self.settings = dict(settings)
        self.encoder = _encoder(settings)
        self.head = dn.MLP(settings["temporal_fc_layers"], settings["temporal_units"], 1,
                           name="temporal_mlp")
        self._fns = self._build_functions(lambda a, b: self(a, b, training=False))

    def call(self, image, goal_image, training=False):
        image, goal_image = dn.to_float_image(image), dn.to_float_image(goal_image)
        h = self.encoder(tf.concat([image, goal_image], -1), training=training)
        return tf.squeeze(self.head(h, training=training), -1)

    def losses_for(self, batch, training=True) -> Dict[str, tf.Tensor]:
        label = tf.minimum(tf.cast(batch["offset"], tf.float32), float(self.settings["max_dist"]))
        pred = self(batch["observation"], batch["goal"], training=training)
        return {"loss": tf.reduce_mean(tf.square(pred - label))}

    def distance(self, image, goal_image) -> tf.Tensor:
        """float32 [B]: predicted temporal distance (steps, ≤ max_dist in expectation)."""
        return self._dispatch(self._fns, image, goal_image)


class VAE(_Model):
    """Gaussian VAE over single images (App. C.1): ``encode`` → mean, ℓ2 latent distance."""

    def __init__(self, settings: Dict, name: str = "vae"):
        super().__init__(name=name)
        self.settings = dict(settings)
        z, u = settings["vae_latent_dim"], settings["vae_units"]
        self.encoder = _encoder(settings)
        self.enc_fc = tf.keras.layers.Dense(u, name="enc_fc")
        self.enc_bn = tf.keras.layers.BatchNormalization(name="enc_bn")
        self.enc_out = tf.keras.layers.Dense(2 * z, name="enc_out")
        self.dec_fc = [tf.keras.layers.Dense(u, name=f"dec_fc{i}") for i in (1, 2)]
        self.dec_bn = [tf.keras.layers.BatchNormalization(name=f"dec_bn{i}") for i in (1, 2)]
        filters = list(settings["encoder_filters"])
        self._side = 64 // (settings["strides"] ** len(filters))
        self.dec_proj = tf.keras.layers.Dense(self._side * self._side * filters[-1],
                                              name="dec_proj")
        ups = list(reversed(filters[:-1])) + [3]
        self.dec_convs = [tf.keras.layers.Conv2DTranspose(f, settings["kernel_size"],
                                                          settings["strides"], padding="same",
                                                          name=f"deconv{i + 1}")
                          for i, f in enumerate(ups)]
        self._last_filters = filters[-1]
        self._encode_fns = {dt.name: tf.function(lambda x: self.encode_mean(x, training=False),
                                            input_signature=[tf.TensorSpec([None, 64, 64, 3], dt)])
                            for dt in (tf.uint8, tf.float32)}
        self._fns = self._build_functions(self._latent_distance)

    def encode_stats(self, image, training=False):
        h = self.encoder(dn.to_float_image(image), training=training)
        h = self.enc_bn(tf.nn.relu(self.enc_fc(h)), training=training)
        mean, logvar = tf.split(self.enc_out(h), 2, axis=-1)
        return mean, tf.clip_by_value(logvar, -20.0, 10.0)

    def encode_mean(self, image, training=False):
        return self.encode_stats(image, training)[0]

    def decode(self, z, training=False):
        h = z
        for fc, bn in zip(self.dec_fc, self.dec_bn):
            h = tf.nn.relu(bn(fc(h), training=training))
        h = tf.reshape(self.dec_proj(h), [-1, self._side, self._side, self._last_filters])
        for i, conv in enumerate(self.dec_convs):
            h = conv(h)
            if i < len(self.dec_convs) - 1:
                h = tf.nn.leaky_relu(h, 0.2)
        return tf.sigmoid(h)

    def call(self, image, training=False):
        mean, logvar = self.encode_stats(image, training)
        z = mean + tf.exp(0.5 * logvar) * tf.random.normal(tf.shape(mean)) if training else mean
        return self.decode(z, training), mean, logvar

    def losses_for(self, batch, training=True) -> Dict[str, tf.Tensor]:
        x = dn.to_float_image(batch["observation"])
        recon, mean, logvar = self(x, training=training)
        rec = tf.reduce_mean(tf.reduce_sum(tf.square(recon - x), -1))  # mean pixel error
        kl = tf.reduce_mean(0.5 * tf.reduce_sum(tf.exp(logvar) + tf.square(mean) - 1.0 - logvar,
                                                -1))
        return {"loss": rec + self.settings["vae_kl_weight"] * kl, "reconstruction": rec,
                "kl": kl}

    def _latent_distance(self, image, goal_image):
        both = self.encode_mean(tf.concat([image, goal_image], 0), training=False)
        a, b = tf.split(both, 2, axis=0)
        return tf.norm(a - b, axis=-1)

    def encode(self, image) -> tf.Tensor:
        """float32 [B, latent_dim]: the posterior mean."""
        image = dn.check_image(image, "image")
        if image.dtype == tf.uint8:
            return self._encode_fns['uint8'](image)
        return self._encode_fns['float32'](dn.to_float_image(image))

    def distance(self, image, goal_image) -> tf.Tensor:
        """float32 [B]: ‖e(image) − e(goal)‖₂ between posterior means."""
        return self._dispatch(self._fns, image, goal_image)


class GCBCPolicy(_Model):
    """Goal-conditioned behaviour cloning (App. B.3): the actor architecture, MSE on actions."""

    def __init__(self, settings: Dict, action_dim: int = 4, name: str = "gcbc"):
        super().__init__(name=name)
        self.settings = dict(settings)
        self.encoder = _encoder(settings)
        self.head = dn.MLP(settings["gcbc_fc_layers"], settings["gcbc_units"], action_dim,
                           name="gcbc_mlp")
        self._fns = self._build_functions(lambda a, b: self(a, b, training=False))

    def call(self, image, goal_image, training=False):
        image, goal_image = dn.to_float_image(image), dn.to_float_image(goal_image)
        h = self.encoder(tf.concat([image, goal_image], -1), training=training)
        return tf.tanh(self.head(h, training=training))

    def losses_for(self, batch, training=True) -> Dict[str, tf.Tensor]:
        pred = self(batch["observation"], batch["goal"], training=training)
        target = tf.clip_by_value(tf.cast(batch["action"], tf.float32), -1.0, 1.0)
        return {"loss": tf.reduce_mean(tf.reduce_sum(tf.square(pred - target), -1))}

    def action(self, image, goal_image) -> tf.Tensor:
        """float32 [B, 4] in [-1, 1]."""
        return self._dispatch(self._fns, image, goal_image)


def pixel_distance(image, goal_image) -> tf.Tensor:
    """float32 [B]: mean squared pixel error between images scaled to [0, 1]."""
    image, goal_image = _pair(image, goal_image)
    return tf.reduce_mean(tf.square(image - goal_image), axis=[1, 2, 3])


class PixelDistance:
    """Object form of :func:`pixel_distance` (``.distance(image, goal)``)."""

    name = "pixel_l2"

    def distance(self, image, goal_image) -> tf.Tensor:
        return pixel_distance(image, goal_image)
