"""Action-conditioned video predictor in the SAVP family (Lee et al. 2018; MBOLD §4).

A convolutional-LSTM encoder-decoder with skip connections predicts, one step at a time, the
next frame from the current (true or predicted) frame and the action tiled into feature maps.
Each frame is *composited*: a softmax mask blends

* ``num_transformed`` transformed copies of the previous frame and as many of the first context
  frame (CDNA kernels shared over the image, DNA per-pixel kernels, or a dense flow field, all
  as in SAVP),
* and an image generated directly by the decoder,

so that the model mostly moves pixels (the arm, the pushed object) instead of repainting them.
Deterministic by default; ``stochastic=True`` adds SAVP's per-step latent z_t with a learned,
frame-conditioned Gaussian prior p(z_t | x_t) and a posterior q(z_t | x_t, x_{t+1}) used in
training (KL term); at inference z_t comes from the prior.

Training uses scheduled sampling (Bengio et al. 2015, as in SAVP): the input of the next step is
the ground-truth frame with probability ``p = k / (k + exp(step / k))`` (inverse sigmoid) and the
model's own prediction otherwise. ``predict`` always runs closed loop.

With ``state_conditioned=True`` the robot's proprioception (e.g. arm joint angles) is an input
and a predicted output, as in CDNA (Finn et al. 2016) and SAVP: each step predicts the next state
from the current one and the action (a residual MLP), and both states join the action in the
features every ConvLSTM level sees, so the arm's place in the next frame is not guessed from
pixels alone. In closed loop the predicted state feeds the next step, as the predicted frame does.

Shapes: frames uint8 [B, C, 64, 64, 3] (C = ``context``), actions float32 [B, h, A] with
``actions[:, i]`` taking frame C-1+i to frame C+i; states (state-conditioned only) float32
[B, C, P] for the context frames; outputs float32 [B, h, 64, 64, 3] in [0, 1] (and, from
:meth:`VideoPredictor.predict_with_states`, float32 [B, h, P] predicted states).
"""
from __future__ import annotations

import inspect
import math
import os
from typing import Any, Dict, Optional, Sequence

import gin
import numpy as np
import tensorflow as tf

from mbold_tf.utils import run_config
from mbold_tf.utils import training

KIND = "video_predictor"
IMAGE_SHAPE = (64, 64, 3)
TRANSFORMS = ("cdna", "dna", "flow")
# The key of a run's config.json settings that holds its trainer's settings (loss, learning rate,
# batch size): recorded with the model's, not passed to it.
TRAINING_KEY = "training"
NORMS = ("layer", "none")


class _FunctionCache:
    """A plain holder of compiled functions (``fns``: h -> tf.function), invisible to Keras."""

    def __init__(self):
        self.fns: Dict[int, Any] = {}


def ground_truth_probability(step, k: float):
    """Inverse-sigmoid scheduled-sampling schedule: P(feed ground truth) at ``step``.

    ``k / (k + exp(step / k))``; ``k <= 0`` means always closed loop (probability 0) and
    ``k = inf`` always teacher forcing.
    """
    if k is None or k <= 0:
        return tf.zeros([], tf.float32)
    if math.isinf(k):
        return tf.ones([], tf.float32)
    step = tf.cast(step, tf.float32)
    return k / (k + tf.exp(tf.minimum(step / k, 80.0)))


class _ConvLSTMCell(tf.keras.layers.Layer):
    """Convolutional LSTM cell: one conv over [input, h] gives the four gates."""

    def __init__(self, filters: int, kernel_size: int = 3, norm: str = "layer", **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.conv = tf.keras.layers.Conv2D(4 * filters, kernel_size, padding="same",
                                           name="gates")
        self.norm = norm
        if norm == "layer":
            self.gate_norm = tf.keras.layers.LayerNormalization(axis=[-1], name="gate_norm")
            self.cell_norm = tf.keras.layers.LayerNormalization(axis=[-1], name="cell_norm")

    def call(self, x, state):
        h, c = state
        gates = self.conv(tf.concat([x, h], axis=-1))
        if self.norm == "layer":
            gates = self.gate_norm(gates)
        i, f, o, g = tf.split(gates, 4, axis=-1)
        c = tf.sigmoid(f + 1.0) * c + tf.sigmoid(i) * tf.tanh(g)
        cn = self.cell_norm(c) if self.norm == "layer" else c
        h = tf.sigmoid(o) * tf.tanh(cn)
        return h, (h, c)


def _shifted_stack(images, size: int):
    """[B, H, W, ch] -> [B, H, W, size*size, ch]: the size×size neighbourhood of every pixel."""
    r = size // 2
    padded = tf.pad(images, [[0, 0], [r, r], [r, r], [0, 0]], mode="SYMMETRIC")
    h, w = images.shape[1], images.shape[2]
    shifts = [padded[:, dy:dy + h, dx:dx + w, :] for dy in range(size) for dx in range(size)]
    return tf.stack(shifts, axis=3)


def _cdna_transform(images, kernels, size: int):
    """CDNA: ``images`` [B, H, W, 3] convolved with per-sample ``kernels`` [B, K, size*size].

    One depthwise convolution with the batch folded into channels; returns [B, K, H, W, 3].
    """
    b = tf.shape(images)[0]
    h, w, ch = images.shape[1], images.shape[2], images.shape[3]
    k = kernels.shape[1]
    x = tf.reshape(tf.transpose(images, [1, 2, 0, 3]), [1, h, w, -1])  # [1, H, W, B*3]
    kern = tf.reshape(kernels, [-1, k, size, size])
    kern = tf.transpose(kern, [2, 3, 0, 1])  # [s, s, B, K]
    kern = tf.repeat(kern[:, :, :, None, :], ch, axis=3)  # [s, s, B, 3, K]
    kern = tf.reshape(kern, [size, size, -1, k])  # channel index b*3 + c
    r = size // 2
    x = tf.pad(x, [[0, 0], [r, r], [r, r], [0, 0]], mode="SYMMETRIC")
    y = tf.nn.depthwise_conv2d(x, kern, [1, 1, 1, 1], "VALID")  # [1, H, W, B*3*K]
    y = tf.reshape(y, [h, w, b, ch, k])
    return tf.transpose(y, [2, 4, 0, 1, 3])


def _bilinear_warp(images, flow):
    """Samples ``images`` [B, H, W, ch] at pixel + ``flow`` [B, H, W, 2] (dy, dx), bilinear."""
    b = tf.shape(images)[0]
    h, w = images.shape[1], images.shape[2]
    gy, gx = tf.meshgrid(tf.range(h, dtype=tf.float32), tf.range(w, dtype=tf.float32),
                         indexing="ij")
    y = tf.clip_by_value(gy[None] + flow[..., 0], 0.0, h - 1.0)
    x = tf.clip_by_value(gx[None] + flow[..., 1], 0.0, w - 1.0)
    y0 = tf.floor(y)
    x0 = tf.floor(x)
    wy = (y - y0)[..., None]
    wx = (x - x0)[..., None]
    y0i = tf.cast(y0, tf.int32)
    x0i = tf.cast(x0, tf.int32)
    y1i = tf.minimum(y0i + 1, h - 1)
    x1i = tf.minimum(x0i + 1, w - 1)
    flat = tf.reshape(images, [-1, images.shape[-1]])
    base = (tf.range(b) * h * w)[:, None, None]

    def gather(yi, xi):
        return tf.gather(flat, base + yi * w + xi)

    top = gather(y0i, x0i) * (1 - wx) + gather(y0i, x1i) * wx
    bottom = gather(y1i, x0i) * (1 - wx) + gather(y1i, x1i) * wx
    return top * (1 - wy) + bottom * wy


@gin.configurable
class VideoPredictor(tf.keras.Model):
    """SAVP-style action-conditioned video predictor (see the module docstring).

    Args:
      context: number of context frames C (paper: 1; the authors' code: 2).
      horizon: number of predicted frames h (13).
      action_dim: action size A (4).
      width: base number of filters (paper 32).
      encoder_multipliers / decoder_multipliers: widths of the three encoder / decoder ConvLSTM
        levels as multiples of ``width`` (paper [1, 2, 4] / [2, 1, 1]).
      downsample_input: True runs the first ConvLSTM level at 32×32 (a stride-2 conv first),
        False at the full 64×64 (slower, rarely better on 64×64 frames).
      norm: 'layer' (layer norm in the ConvLSTM gates, SAVP uses instance/layer norm) or 'none'.
      transform: 'cdna' (image-wide kernels), 'dna' (per-pixel kernels) or 'flow' (dense flow).
      num_transformed: transformed images per source frame (the previous frame and the first
        context frame), e.g. 4.
      kernel_size: CDNA/DNA kernel size (5).
      full_resolution_heads: True computes masks, generated image and DNA kernels / flow with
        convolutions at 64×64 (SAVP); False at 32×32, upsampled bilinearly (CPU scale: no
        64×64 convolution at all; compositing still at 64×64).
      stochastic: add the per-step latent (learned prior, posterior, KL).
      latent_dim: size of z_t when stochastic.
      kl_weight: weight of the KL term when stochastic.
      schedule_k: scheduled-sampling constant k (SAVP: 900); 0 = always closed loop.
      jit_compile: compile ``predict`` with XLA.
      state_conditioned: take the robot's state (proprioception) as an input and predict it.
      state_dim: its size P (the trainer sets it from the data unless gin binds it); must be
        > 0 exactly when ``state_conditioned``.
    """

    def __init__(self, context: int = 1, horizon: int = 13, action_dim: int = 4,
                 width: int = 32, encoder_multipliers=(1, 2, 4), decoder_multipliers=(2, 1, 1),
                 downsample_input: bool = True, norm: str = "layer", transform: str = "cdna",
                 num_transformed: int = 4, kernel_size: int = 5,
                 full_resolution_heads: bool = True, stochastic: bool = False,
                 latent_dim: int = 8, kl_weight: float = 1e-3, schedule_k: float = 900.0,
                 jit_compile: bool = False, state_conditioned: bool = False, state_dim: int = 0,
                 name: str = "video_predictor"):
        super().__init__(name=name)
        if transform not in TRANSFORMS:
            raise ValueError(f"Unknown transform {transform!r}; choose one of {TRANSFORMS}.")
        if norm not in NORMS:
            raise ValueError(f"Unknown norm {norm!r}; choose one of {NORMS}.")
        if len(encoder_multipliers) != 3 or len(decoder_multipliers) != 3:
            raise ValueError(f"encoder_multipliers and decoder_multipliers need 3 levels each; "
                             f"got {list(encoder_multipliers)} and {list(decoder_multipliers)}.")
        if bool(state_conditioned) != (int(state_dim) > 0):
            raise ValueError(
                f"VideoPredictor.state_conditioned = {state_conditioned} with state_dim = "
                f"{state_dim}: a state-conditioned predictor needs the state's size (> 0; the "
                f"trainer takes it from the dataset's proprioception), an image-only one 0.")
        if context < 1 or horizon < 1:
            raise ValueError(f"context ({context}) and horizon ({horizon}) must be >= 1.")
        self.context = int(context)
        self.horizon = int(horizon)
        self.action_dim = int(action_dim)
        self.width = int(width)
        self.encoder_multipliers = tuple(int(m) for m in encoder_multipliers)
        self.decoder_multipliers = tuple(int(m) for m in decoder_multipliers)
        self.downsample_input = bool(downsample_input)
        self.norm = norm
        self.transform = transform
        self.num_transformed = int(num_transformed)
        self.kernel_size = int(kernel_size)
        self.full_resolution_heads = bool(full_resolution_heads) or not self.downsample_input
        self.stochastic = bool(stochastic)
        self.latent_dim = int(latent_dim)
        self.kl_weight = float(kl_weight)
        self.schedule_k = float(schedule_k)
        self.jit_compile = bool(jit_compile)
        self.state_conditioned = bool(state_conditioned)
        self.state_dim = int(state_dim)

        conv = tf.keras.layers.Conv2D
        w = self.width
        e1, e2, e3 = (w * m for m in self.encoder_multipliers)
        d1, d2, d3 = (w * m for m in self.decoder_multipliers)
        self._enc_in = conv(e1, 3, strides=2 if self.downsample_input else 1, padding="same",
                            activation=tf.nn.leaky_relu, name="enc_in")
        self._enc_lstm = [_ConvLSTMCell(e1, norm=norm, name="enc_lstm1"),
                          _ConvLSTMCell(e2, norm=norm, name="enc_lstm2"),
                          _ConvLSTMCell(e3, norm=norm, name="enc_lstm3")]
        self._down = [conv(e1, 3, strides=2, padding="same", activation=tf.nn.leaky_relu,
                           name="down1"),
                      conv(e2, 3, strides=2, padding="same", activation=tf.nn.leaky_relu,
                           name="down2")]
        self._dec_lstm = [_ConvLSTMCell(d1, norm=norm, name="dec_lstm1"),
                          _ConvLSTMCell(d2, norm=norm, name="dec_lstm2")]
        self._dec_out = conv(d3, 3, padding="same", activation=tf.nn.leaky_relu, name="dec_out")
        k = self.num_transformed
        n_masks = 2 * k + 1
        # Heads run in float32 (also under mixed precision): compositing stays exact.
        self._mask_head = conv(n_masks, 3, padding="same", name="masks", dtype="float32")
        self._gen_head = conv(3, 3, padding="same", name="generated", dtype="float32")
        if transform == "cdna":
            self._cdna_head = tf.keras.layers.Dense(2 * k * self.kernel_size ** 2, name="cdna",
                                                    dtype="float32")
        elif transform == "dna":
            self._dna_head = conv(2 * k * self.kernel_size ** 2, 3, padding="same", name="dna",
                                  dtype="float32")
        else:
            self._flow_head = conv(2 * k * 2, 3, padding="same", name="flow", dtype="float32",
                                   kernel_initializer="zeros")
        if self.state_conditioned:
            # next state = state + MLP(state, action); float32 (a small head, exact residuals).
            self._state_head = tf.keras.Sequential([
                tf.keras.layers.Dense(64, activation=tf.nn.leaky_relu, dtype="float32"),
                tf.keras.layers.Dense(64, activation=tf.nn.leaky_relu, dtype="float32"),
                tf.keras.layers.Dense(self.state_dim, dtype="float32",
                                      kernel_initializer="zeros")], name="state")
        if self.stochastic:
            def latent_net(name):
                return tf.keras.Sequential([
                    conv(w, 4, strides=2, padding="same", activation=tf.nn.leaky_relu),
                    conv(2 * w, 4, strides=2, padding="same", activation=tf.nn.leaky_relu),
                    conv(2 * w, 4, strides=2, padding="same", activation=tf.nn.leaky_relu),
                    tf.keras.layers.GlobalAveragePooling2D(),
                    tf.keras.layers.Dense(2 * self.latent_dim, dtype="float32")], name=name)
            self._prior_net = latent_net("prior")
            self._posterior_net = latent_net("posterior")
        self._predict_fn = self._compiled_predict(self.horizon)
        # Compiled closed-loop predictions of fewer than ``horizon`` frames, by length; held in a
        # plain object so that Keras does not track them as part of the model.
        self._shorter = _FunctionCache()

    def _compiled_predict(self, h: int):
        signature = [tf.TensorSpec([None, self.context, *IMAGE_SHAPE], tf.uint8),
                     tf.TensorSpec([None, h, self.action_dim], tf.float32)]
        if self.state_conditioned:
            signature.append(tf.TensorSpec([None, self.context, self.state_dim], tf.float32))
        return tf.function(self._predict_graph, jit_compile=self.jit_compile,
                           input_signature=signature)

    def _predict_fn_for(self, h: int):
        """The compiled ``predict`` for h frames (1 <= h <= ``horizon``)."""
        if h == self.horizon:
            return self._predict_fn
        if h not in self._shorter.fns:
            self._shorter.fns[h] = self._compiled_predict(h)
        return self._shorter.fns[h]

    # ------------------------------------------------------------------ configuration
    def settings(self) -> Dict[str, Any]:
        """All constructor arguments but ``name`` (JSON-able), for the run's config.json.

        Read from the constructor's signature, so a new argument is recorded (and checked on
        resume and load) without a second list to keep in step.
        """
        names = [p for p in inspect.signature(VideoPredictor.__init__).parameters
                 if p not in ("self", "name")]
        return {n: list(v) if isinstance(v, tuple) else v
                for n, v in ((n, getattr(self, n)) for n in names)}

    # ------------------------------------------------------------------ one step
    def _initial_state(self, batch):
        states = []
        size = IMAGE_SHAPE[0] // (2 if self.downsample_input else 1)
        sizes = [size, size // 2, size // 4, size // 2, size]
        cells = self._enc_lstm + self._dec_lstm
        dtype = self.compute_dtype
        for cell, s in zip(cells, sizes):
            z = tf.zeros([batch, s, s, cell.filters], dtype)
            states.append((z, z))
        return states

    def _latent(self, net, images, seed_noise):
        stats = tf.cast(net(images), tf.float32)
        mean, logvar = tf.split(stats, 2, axis=-1)
        logvar = tf.clip_by_value(logvar, -10.0, 10.0)
        z = mean + tf.exp(0.5 * logvar) * seed_noise
        return z, mean, logvar

    def _step(self, image, first, action, states, z=None, robot_state=None):
        """One step: image/first float32 [B, 64, 64, 3] in [0, 1], action [B, A]; robot_state
        float32 [B, P] when state-conditioned.

        Returns (next frame float32 [B, 64, 64, 3], new recurrent states, next robot state
        float32 [B, P] or None).
        """
        dtype = self.compute_dtype
        x = tf.cast(image * 2.0 - 1.0, dtype)
        cond = tf.cast(action, tf.float32)
        next_robot_state = None
        if self.state_conditioned:
            robot_state = tf.cast(robot_state, tf.float32)
            next_robot_state = robot_state + self._state_head(
                tf.concat([robot_state, cond], axis=-1))
            cond = tf.concat([cond, robot_state, next_robot_state], axis=-1)
        if z is not None:
            cond = tf.concat([cond, z], axis=-1)
        cond = tf.cast(cond, dtype)

        def tile(t, like):
            return tf.tile(t[:, None, None, :], [1, like.shape[1], like.shape[2], 1])

        new_states = []
        h0 = self._enc_in(x)
        h1, s = self._enc_lstm[0](tf.concat([h0, tile(cond, h0)], -1), states[0])
        new_states.append(s)
        h = self._down[0](h1)
        h2, s = self._enc_lstm[1](tf.concat([h, tile(cond, h)], -1), states[1])
        new_states.append(s)
        h = self._down[1](h2)
        h3, s = self._enc_lstm[2](tf.concat([h, tile(cond, h)], -1), states[2])
        new_states.append(s)
        h = tf.image.resize(h3, h2.shape[1:3], method="nearest")
        h, s = self._dec_lstm[0](tf.concat([h, h2], -1), states[3])
        new_states.append(s)
        h = tf.image.resize(h, h1.shape[1:3], method="nearest")
        h, s = self._dec_lstm[1](tf.concat([h, h1], -1), states[4])
        new_states.append(s)
        if self.full_resolution_heads:
            if self.downsample_input:
                h = tf.image.resize(h, IMAGE_SHAPE[:2], method="nearest")
            h = self._dec_out(tf.concat([h, tf.cast(x, h.dtype)], -1))
        else:  # heads at 32×32, their outputs upsampled bilinearly (no 64×64 convolutions)
            h = self._dec_out(h)

        def head(layer, inputs):
            out = layer(inputs)
            if not self.full_resolution_heads:
                out = tf.image.resize(out, IMAGE_SHAPE[:2], method="bilinear")
            return out

        k = self.num_transformed
        sources = tf.stack([image, first], axis=1)  # [B, 2, H, W, 3]
        if self.transform == "flow":
            flow = tf.reshape(head(self._flow_head, h), [-1, *IMAGE_SHAPE[:2], 2 * k, 2])
            flow = tf.transpose(flow, [0, 3, 1, 2, 4])  # [B, 2k, H, W, 2]
            src = tf.repeat(sources, k, axis=1)  # [B, 2k, H, W, 3]
            bsz = tf.shape(image)[0]
            transformed = _bilinear_warp(tf.reshape(src, [-1, *IMAGE_SHAPE]),
                                         tf.reshape(flow, [-1, *IMAGE_SHAPE[:2], 2]))
            transformed = tf.reshape(transformed, [bsz, 2 * k, *IMAGE_SHAPE])
        else:
            n = self.kernel_size ** 2
            if self.transform == "cdna":
                flat = tf.cast(tf.reshape(h3, [-1, np.prod(h3.shape[1:])]), tf.float32)
                kern = tf.reshape(self._cdna_head(flat), [-1, 2, k, n])
                kern = tf.nn.relu(kern - 1e-12) + 1e-12
                kern = kern / tf.reduce_sum(kern, axis=-1, keepdims=True)
                outs = [_cdna_transform(src, kern[:, j], self.kernel_size)
                        for j, src in enumerate((image, first))]
            else:
                patches = [_shifted_stack(image, self.kernel_size),
                           _shifted_stack(first, self.kernel_size)]  # [B, H, W, n, 3] each
                # Softmax over the n taps on a [B·H·W, 2k, n] view: oneDNN's CPU softmax
                # (TF's default on x86) rejects tensors of more than 5 dimensions.
                kern = tf.nn.softmax(tf.reshape(head(self._dna_head, h), [-1, 2 * k, n]), axis=-1)
                kern = tf.reshape(kern, [-1, *IMAGE_SHAPE[:2], 2, k, n])
                outs = [tf.transpose(tf.einsum("bhwkn,bhwnc->bhwkc", kern[..., j, :, :],
                                               patches[j]), [0, 3, 1, 2, 4]) for j in range(2)]
            transformed = tf.concat(outs, axis=1)  # [B, 2k, H, W, 3]
        generated = tf.sigmoid(head(self._gen_head, h))
        masks = tf.nn.softmax(head(self._mask_head, h), axis=-1)  # [B, H, W, 2k+1]
        candidates = tf.concat([transformed, generated[:, None]], axis=1)
        frame = tf.einsum("bhwm,bmhwc->bhwc", masks, candidates)
        return tf.clip_by_value(frame, 0.0, 1.0), new_states, next_robot_state

    # ------------------------------------------------------------------ unroll
    def unroll(self, frames, actions, targets=None, ground_truth_prob=0.0, seed=None,
               training=False, states=None, target_states=None, return_states=False):
        """Predicts h frames (and, state-conditioned, h robot states).

        Args:
          frames: float32 [B, C, 64, 64, 3] in [0, 1] (context).
          actions: float32 [B, h, A].
          targets: float32 [B, h, 64, 64, 3] in [0, 1], needed for scheduled sampling and for
            the stochastic posterior (training); None for closed-loop prediction.
          ground_truth_prob: scalar, probability of feeding the true frame (and state) at the
            next step.
          seed: int32 [2] stateless seed for the sampling decisions and the latents.
          states: float32 [B, C, P], the context frames' robot states (state-conditioned only).
          target_states: float32 [B, h, P], the true next states (scheduled sampling).
          return_states: also return the predicted states.
        Returns:
          (predictions float32 [B, h, 64, 64, 3], kl scalar float32 (0 if deterministic)), and
          with ``return_states`` a third entry, float32 [B, h, P] (None if image-only).
        """
        if self.state_conditioned and states is None:
            raise ValueError(f"This predictor is state-conditioned (state_dim {self.state_dim}):"
                             f" pass the context frames' robot states, float32 [B, "
                             f"{self.context}, {self.state_dim}].")
        if not self.state_conditioned and states is not None:
            raise ValueError("This predictor is image-only (VideoPredictor.state_conditioned = "
                             "False) but robot states were passed.")
        batch = tf.shape(frames)[0]
        first = frames[:, 0]
        if seed is None:
            seed = tf.constant([0, 0], tf.int32)
        zero_action = tf.zeros([batch, self.action_dim], tf.float32)
        zero_z = tf.zeros([batch, self.latent_dim], tf.float32) if self.stochastic else None
        robot_states = states
        states = self._initial_state(batch)
        robot = None if robot_states is None else tf.cast(robot_states[:, -1], tf.float32)
        for t in range(self.context - 1):  # warm up the state on the earlier context frames
            _, states, _ = self._step(frames[:, t], first, zero_action, states, zero_z,
                                      None if robot_states is None else robot_states[:, t])
        image = frames[:, -1]
        preds = []
        pred_states = []
        kl = tf.zeros([], tf.float32)
        use_gt = targets is not None and not (
            isinstance(ground_truth_prob, (int, float)) and ground_truth_prob == 0.0)
        steps = int(actions.shape[1])  # h: ``horizon`` in training, up to it in prediction
        for t in range(steps):
            step_seed = tf.random.experimental.stateless_fold_in(seed, t)
            z = None
            if self.stochastic:
                noise = tf.random.stateless_normal([batch, self.latent_dim], step_seed)
                zp, pm, plv = self._latent(self._prior_net, image, noise)
                if targets is not None and training:
                    z, qm, qlv = self._latent(
                        self._posterior_net, tf.concat([image, targets[:, t]], -1), noise)
                    kl += tf.reduce_mean(tf.reduce_sum(
                        0.5 * (plv - qlv + (tf.exp(qlv) + tf.square(qm - pm)) / tf.exp(plv)
                               - 1.0), axis=-1))
                else:
                    z = zp
            pred, states, next_robot = self._step(image, first, actions[:, t], states, z, robot)
            preds.append(pred)
            if next_robot is not None:
                pred_states.append(next_robot)
            if use_gt and t + 1 < steps:
                u = tf.random.stateless_uniform(
                    [batch, 1, 1, 1], tf.random.experimental.stateless_fold_in(step_seed, 1))
                image = tf.where(u < ground_truth_prob, targets[:, t], pred)
                if next_robot is not None:
                    robot = next_robot if target_states is None else tf.where(
                        u[:, :, 0, 0] < ground_truth_prob,
                        tf.cast(target_states[:, t], tf.float32), next_robot)
            else:
                image = pred
                robot = next_robot
        out = (tf.stack(preds, axis=1), kl / float(steps))
        if return_states:
            out += (tf.stack(pred_states, axis=1) if pred_states else None,)
        return out

    def call(self, inputs, training=False):
        """Keras entry point: ``inputs = (frames uint8 [B, C, ...], actions [B, h, A])``, with
        the context states float32 [B, C, P] as a third entry when state-conditioned."""
        frames, actions, *states = inputs
        preds, _ = self.unroll(tf.cast(frames, tf.float32) / 255.0, actions, training=training,
                               states=states[0] if states else None)
        return preds

    # ------------------------------------------------------------------ inference API
    def _predict_graph(self, frames, actions, states=None):
        actions = tf.debugging.assert_all_finite(
            actions, "predict: actions contain NaN or Inf")
        preds, _, pred_states = self.unroll(tf.cast(frames, tf.float32) / 255.0, actions,
                                            states=states, return_states=True)
        if pred_states is None:
            return tf.cast(preds, tf.float32)
        return tf.cast(preds, tf.float32), pred_states

    def _check_states(self, states, frames):
        if not self.state_conditioned:
            if states is not None:
                raise ValueError("predict: robot states were passed to an image-only predictor "
                                 "(trained with VideoPredictor.state_conditioned = False).")
            return
        expected = f"float32 [B, {self.context}, {self.state_dim}]"
        if states is None:
            raise ValueError(f"predict: this predictor is state-conditioned "
                             f"(VideoPredictor.state_conditioned = True): pass states={expected},"
                             f" the robot's proprioception at the context frames.")
        shape = tuple(states.shape)
        if tf.as_dtype(states.dtype) != tf.float32 or len(shape) != 3 or \
                tuple(shape[1:]) != (self.context, self.state_dim) or \
                (shape[0] is not None and frames.shape[0] is not None
                 and shape[0] != frames.shape[0]):
            raise ValueError(f"predict: states have dtype {tf.as_dtype(states.dtype).name} and "
                             f"shape {list(shape)}; expected {expected} (B as the frames').")

    def _check_inputs(self, frames, actions):
        expected_f = f"uint8 [B, {self.context}, 64, 64, 3]"
        expected_a = f"float32 [B, h, {self.action_dim}], 1 <= h <= {self.horizon}"
        f_dtype = tf.as_dtype(frames.dtype)
        a_dtype = tf.as_dtype(actions.dtype)
        f_shape = tuple(frames.shape)
        a_shape = tuple(actions.shape)
        if f_dtype != tf.uint8 or len(f_shape) != 5 or \
                tuple(f_shape[1:]) != (self.context, *IMAGE_SHAPE):
            raise ValueError(f"predict: frames have dtype {f_dtype.name} and shape "
                             f"{list(f_shape)}; expected {expected_f}.")
        if a_dtype != tf.float32 or len(a_shape) != 3 or a_shape[1] is None or \
                not 1 <= a_shape[1] <= self.horizon or a_shape[2] != self.action_dim:
            raise ValueError(f"predict: actions have dtype {a_dtype.name} and shape "
                             f"{list(a_shape)}; expected {expected_a} (the model was trained "
                             f"to predict {self.horizon} frames and predicts no further).")
        if f_shape[0] is not None and a_shape[0] is not None and f_shape[0] != a_shape[0]:
            raise ValueError(f"predict: batch sizes differ: frames {list(f_shape)}, actions "
                             f"{list(a_shape)}.")

    def predict(self, frames, actions, states=None):  # pylint: disable=arguments-differ
        """Closed-loop prediction: float32 [B, h, 64, 64, 3] in [0, 1].

        Args:
          frames: uint8 [B, C, 64, 64, 3], the context frames (C = ``context``).
          actions: float32 [B, h, A], 1 <= h <= ``horizon`` (fewer frames cost less: each is one
            step of the recurrent model), A = ``action_dim``.
          states: float32 [B, C, P], the robot's state at the context frames; required by a
            state-conditioned predictor, refused by an image-only one.
        Raises:
          ValueError naming the received and expected shape/dtype for bad inputs, and (in eager
          mode) for NaN/Inf actions; in a graph, NaN actions fail the in-graph assert.
        """
        out = self.predict_with_states(frames, actions, states)
        return out[0] if self.state_conditioned else out

    def predict_with_states(self, frames, actions, states=None):
        """As :meth:`predict`; a state-conditioned predictor returns (frames float32 [B, h, 64,
        64, 3], states float32 [B, h, P]), an image-only one the frames alone."""
        if not isinstance(frames, tf.Tensor):
            frames = np.asarray(frames)
        if not isinstance(actions, tf.Tensor):
            actions = np.asarray(actions)
        if states is not None and not isinstance(states, tf.Tensor):
            states = np.asarray(states)
        self._check_inputs(frames, actions)
        self._check_states(states, frames)
        predict_fn = self._predict_fn_for(int(actions.shape[1]))
        args = (frames, actions) if states is None else (frames, actions, states)
        if tf.executing_eagerly():
            try:
                return predict_fn(*args)
            except tf.errors.InvalidArgumentError as e:
                if "actions contain NaN" in e.message:
                    raise ValueError(f"predict: actions of shape {list(actions.shape)} contain "
                                     f"NaN or Inf values.") from None
                raise
        return predict_fn(*args)

    def build_variables(self):
        """Creates all variables (one closed-loop step on a batch of one)."""
        frames = tf.zeros([1, self.context, *IMAGE_SHAPE], tf.float32)
        actions = tf.zeros([1, self.horizon, self.action_dim], tf.float32)
        targets = tf.zeros([1, self.horizon, *IMAGE_SHAPE], tf.float32)
        states = (tf.zeros([1, self.context, self.state_dim], tf.float32)
                  if self.state_conditioned else None)
        self.unroll(frames, actions, targets, 0.5, training=True, states=states)
        return self


def _check_bindings(root_dir: str, settings: Dict[str, Any], skip: Sequence[str] = ()) -> None:
    """Raises ConfigMismatchError if a gin binding of ``VideoPredictor`` in effect differs from
    the stored ``settings`` of ``root_dir``: a loaded model is built from its record, so such a
    binding would otherwise be accepted and ignored."""
    differing = []
    for key, stored in settings.items():
        if key in skip:
            continue
        try:
            bound = gin.query_parameter(f"VideoPredictor.{key}")
        except ValueError:  # not bound
            continue
        if run_config.normalise(bound) != run_config.normalise(stored):
            differing.append(f"VideoPredictor.{key} = {bound!r} (trained with {stored!r})")
    if differing:
        raise run_config.ConfigMismatchError(
            f"The predictor in {root_dir} was trained with other settings than the gin bindings "
            f"in effect: {'; '.join(differing)}. A loaded predictor is built from its record: "
            f"drop these bindings, or train a predictor with them.")


def load_predictor(root_dir: str, expect: Optional[Dict[str, Any]] = None,
                   jit_compile: Optional[bool] = None) -> VideoPredictor:
    """Builds the predictor stored in ``root_dir`` and restores its latest checkpoint.

    The model is built from ``root_dir/config.json`` (written by ``train_predictor``; its
    :data:`TRAINING_KEY` entry records the trainer's settings and is not passed on). If
    ``expect`` (settings, e.g. ``VideoPredictor().settings()`` under the caller's gin config) is
    given, it is checked against the stored settings first and a mismatch raises
    :class:`~mbold_tf.utils.run_config.ConfigMismatchError` naming each differing setting.
    ``jit_compile`` overrides the stored XLA flag of ``predict`` (it does not change weights).
    Raises FileNotFoundError if the directory holds no configuration or no checkpoint.
    """
    settings = dict(run_config.read_config(root_dir, KIND))
    trained_with = settings.pop(TRAINING_KEY, None)
    if expect is not None:  # the model's settings; the trainer's are not the caller's to expect
        run_config.check_or_write_config(root_dir, KIND, dict(expect) if trained_with is None
                                         else dict(expect, **{TRAINING_KEY: trained_with}))
    _check_bindings(root_dir, settings, skip=("jit_compile",) if jit_compile is not None else ())
    if jit_compile is not None:
        settings = dict(settings, jit_compile=bool(jit_compile))
    model = VideoPredictor(**settings)
    model.build_variables()
    ckpt_dir = os.path.join(root_dir, "ckpt")
    latest = tf.train.latest_checkpoint(ckpt_dir)
    if latest is None:
        raise FileNotFoundError(f"No checkpoint under {ckpt_dir}; train the predictor first "
                                f"(python -m launch.train_predictor --root_dir={root_dir}).")
    status = tf.train.Checkpoint(model=model).restore(latest).expect_partial()
    status.assert_existing_objects_matched()
    training.check_finite_weights({"model": model}, latest)
    return model

