"""Offline goal-conditioned Dreamer (paper App. B.2; Hafner et al. 2019, "Dreamer v1").

A recurrent state-space world model (RSSM) is trained on the offline episodes, *not* conditioned
on the goal; a goal-conditioned reward predictor, actor and value are trained on top of it, the
latter two in imagination. Written here in TensorFlow 2 + TFP after the paper's description and
the public Dreamer v1 defaults.

* World model: image encoder (4 convs, ``encoder_filters`` [32, 64, 128, 256], kernel 4, stride
  2, 'valid', ReLU → 2×2×256 = 1024 features), RSSM (deterministic GRU state ``deter_size`` +
  diagonal-Gaussian stochastic state ``stoch_size``, hidden layers ``hidden_size``, ELU, state
  std = softplus + 0.1), transposed-conv decoder (Dense → 1×1 → kernels 5, 5, 6, 6, stride 2 →
  64×64×3, unit-variance Gaussian), KL(posterior ‖ prior) with ``free_nats`` on its batch mean
  (Dreamer v1 has free nats and no KL balancing; that came with v2).
* Goal conditioning (App. B.2): every head has its *own* goal encoder (convs
  ``goal_encoder_filters`` [32, 64, 128, 256], kernel 4) whose flattened features e(g) are
  concatenated to the head's input: reward r(h_t, z_t, e_r(g)) (``reward_layers`` × ``units``,
  trained with the world model), value v(h_t, z_t, e_v(g)) and actor π(h_t, z_t, e_a(g))
  (``value_layers`` / ``actor_layers`` × ``units``; the paper: 10 each).
* Behaviour (Dreamer v1): imagine ``horizon`` steps from every posterior state of the batch with
  the actor's reparameterised tanh-Gaussian samples, λ-returns (``gamma`` 0.95 in the paper,
  ``lambda_`` 0.95), actor loss −mean(discounted λ-return) (gradients through the dynamics),
  value loss ½·mean(discounted (v − λ-return)²).
* Rewards (targets the reward predictor regresses; at test time only images are used):
  ``'pixel_mse'``: −mean over pixels of (frame − goal)² with images in [0, 1];
  ``'arm_l2'`` (ORACLE, privileged): −‖ee_pos(frame) − ee_pos(goal)‖₂ of the end effector.

Images are uint8 [..., 64, 64, 3] in [0, 255] or float32 in [0, 1]; inside they are centred to
[−0.5, 0.5]. Actions are float32 [..., A] in [−1, 1].
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import gin
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from mbold_tf.models import distance_networks as dn

KIND = "dreamer"  # run_config kind of a Dreamer run directory

tfd = tfp.distributions

REWARDS = ("pixel_mse", "arm_l2")
EE_KEY = "ee_pos"  # arrays.privileged key of the end-effector position, float32 [M, 3]
STATE_KEYS = ("deter", "stoch")
MIN_STATE_STD = 0.1  # RSSM state std = softplus(x) + 0.1 (Dreamer v1)
ACTION_MIN_STD = 1e-4  # actor std floor (Dreamer v1)
ACTION_MEAN_SCALE = 5.0  # actor pre-tanh mean = 5·tanh(x / 5) (Dreamer v1)


def check_reward(reward: str) -> str:
    """Returns ``reward`` if it is one of REWARDS; else ValueError listing the choices."""
    if reward not in REWARDS:
        raise ValueError(f"Unknown reward {reward!r}; choose one of {REWARDS} ('pixel_mse': "
                         f"negative pixel MSE to the goal image; 'arm_l2': the privileged "
                         f"end-effector oracle).")
    return reward


def reward_targets(reward: str, images, goal_image, ee_pos=None,
                   goal_ee_pos=None) -> tf.Tensor:
    """The reward the predictor learns, for each frame of a window and the window's goal.

    Args:
      reward: 'pixel_mse' or 'arm_l2'.
      images: uint8 [B, L, 64, 64, 3] (or float32 in [0, 1]).
      goal_image: uint8 [B, 64, 64, 3] (or float32 in [0, 1]).
      ee_pos: float32 [B, L, 3] end-effector positions of the frames ('arm_l2' only).
      goal_ee_pos: float32 [B, 3] end-effector position of the goal frame ('arm_l2' only).
    Returns:
      float32 [B, L]: −mean((x − g)²) over H, W, C ('pixel_mse') or −‖ee − ee_goal‖₂ ('arm_l2').
    """
    check_reward(reward)
    if reward == "pixel_mse":
        x = dn.to_float_image(images, "images")
        g = dn.to_float_image(goal_image, "goal_image")
        return -tf.reduce_mean(tf.square(x - g[:, None]), axis=[2, 3, 4])
    if ee_pos is None or goal_ee_pos is None:
        raise ValueError("reward='arm_l2' needs the end-effector positions of the frames and of "
                         "the goal (privileged 'ee_pos'); pass ee_pos and goal_ee_pos.")
    ee = tf.cast(ee_pos, tf.float32)
    goal = tf.cast(goal_ee_pos, tf.float32)
    return -tf.norm(ee - goal[:, None], axis=-1)


@gin.configurable
def dreamer_settings(encoder_filters: Sequence[int] = (32, 64, 128, 256),
                     goal_encoder_filters: Sequence[int] = (32, 64, 128, 256),
                     kernel_size: int = 4, deter_size: int = 200, stoch_size: int = 30,
                     hidden_size: int = 200, units: int = 400, reward_layers: int = 2,
                     value_layers: int = 10, actor_layers: int = 10, free_nats: float = 3.0,
                     kl_scale: float = 1.0, horizon: int = 15, gamma: float = 0.95,
                     lambda_: float = 0.95, action_init_std: float = 5.0) -> Dict:
    """The model's sizes and losses (App. B.2 / Dreamer v1 defaults), a JSON-able dict.

    ``encoder_filters``: the world model's 4 image convs (the decoder mirrors them);
    ``goal_encoder_filters``: each head's goal convs; ``kernel_size``: of both encoders;
    ``deter_size`` / ``stoch_size`` / ``hidden_size``: the RSSM; ``units`` and ``*_layers``: the
    heads' ELU MLPs; ``free_nats``, ``kl_scale``: the KL term; ``horizon``: imagined steps;
    ``gamma`` (discount), ``lambda_`` (λ-return); ``action_init_std``: the actor's initial std.
    Raises ValueError naming a setting out of range.
    """
    s = {"encoder_filters": [int(f) for f in encoder_filters],
         "goal_encoder_filters": [int(f) for f in goal_encoder_filters],
         "kernel_size": int(kernel_size), "deter_size": int(deter_size),
         "stoch_size": int(stoch_size), "hidden_size": int(hidden_size), "units": int(units),
         "reward_layers": int(reward_layers), "value_layers": int(value_layers),
         "actor_layers": int(actor_layers), "free_nats": float(free_nats),
         "kl_scale": float(kl_scale), "horizon": int(horizon), "gamma": float(gamma),
         "lambda_": float(lambda_), "action_init_std": float(action_init_std)}
    if len(s["encoder_filters"]) != 4:
        raise ValueError(f"dreamer_settings.encoder_filters must have 4 entries (64×64 → 2×2, "
                         f"mirrored by the decoder); got {s['encoder_filters']}.")
    if not 1 <= len(s["goal_encoder_filters"]) <= 5:
        raise ValueError(f"dreamer_settings.goal_encoder_filters must have 1 to 5 entries; got "
                         f"{s['goal_encoder_filters']}.")
    positive = ("kernel_size", "deter_size", "stoch_size", "hidden_size", "units")
    for k in positive:
        if s[k] < 1:
            raise ValueError(f"dreamer_settings.{k} must be ≥ 1; got {s[k]}.")
    for k in ("reward_layers", "value_layers", "actor_layers"):
        if s[k] < 0:
            raise ValueError(f"dreamer_settings.{k} must be ≥ 0; got {s[k]}.")
    if s["horizon"] < 2:
        raise ValueError(f"dreamer_settings.horizon must be ≥ 2 (λ-returns bootstrap from the "
                         f"last imagined state); got {s['horizon']}.")
    for k in ("gamma", "lambda_"):
        if not 0.0 < s[k] <= 1.0:
            raise ValueError(f"dreamer_settings.{k} must be in (0, 1]; got {s[k]}.")
    if s["free_nats"] < 0 or s["kl_scale"] < 0 or s["action_init_std"] <= 0:
        raise ValueError("dreamer_settings.free_nats and kl_scale must be ≥ 0 and "
                         "action_init_std > 0.")
    return s


def centre_image(x, name: str = "image") -> tf.Tensor:
    """uint8 [..., 64, 64, 3] (or float32 in [0, 1]) → float32 in [−0.5, 0.5]."""
    return dn.to_float_image(x, name) - 0.5


class ImageEncoder(tf.keras.layers.Layer):
    """Convs (kernel ``kernel_size``, stride 2, 'valid', ReLU) → flat features.

    ``call(x)``: float32 [N, 64, 64, 3] (centred) → float32 [N, F] (F = 1024 for the paper's
    [32, 64, 128, 256]).
    """

    def __init__(self, filters: Sequence[int], kernel_size: int = 4, name: str = "encoder"):
        super().__init__(name=name)
        self._convs = [tf.keras.layers.Conv2D(int(f), kernel_size, 2, padding="valid",
                                              activation="relu", name=f"conv{i + 1}")
                       for i, f in enumerate(filters)]
        self._flatten = tf.keras.layers.Flatten()

    def call(self, x):
        for conv in self._convs:
            x = conv(x)
        return self._flatten(x)


class ImageDecoder(tf.keras.layers.Layer):
    """Features → the mean image: Dense(4·f₄) → 1×1 → transposed convs (kernels 5, 5, 6, 6,
    stride 2, ReLU between) → float32 [N, 64, 64, 3] in the centred pixel space."""

    def __init__(self, filters: Sequence[int], name: str = "decoder"):
        super().__init__(name=name)
        f1, f2, f3, f4 = [int(f) for f in filters]
        self._width = 4 * f4
        self._dense = tf.keras.layers.Dense(self._width, name="fc")
        spec = [(f3, 5), (f2, 5), (f1, 6)]
        self._deconvs = [tf.keras.layers.Conv2DTranspose(f, k, 2, padding="valid",
                                                         activation="relu",
                                                         name=f"deconv{i + 1}")
                         for i, (f, k) in enumerate(spec)]
        self._out = tf.keras.layers.Conv2DTranspose(3, 6, 2, padding="valid", name="deconv4")

    def call(self, features):
        x = tf.reshape(self._dense(features), [-1, 1, 1, self._width])
        for deconv in self._deconvs:
            x = deconv(x)
        return self._out(x)  # 1 → 5 → 13 → 30 → 64


class DenseHead(tf.keras.layers.Layer):
    """``num_layers`` × Dense(units, ELU) → Dense(output_dim): float32 [N, F] → [N, out]."""

    def __init__(self, num_layers: int, units: int, output_dim: int, name: str = "head"):
        super().__init__(name=name)
        self._hidden = [tf.keras.layers.Dense(units, activation="elu", name=f"fc{i + 1}")
                        for i in range(num_layers)]
        self._out = tf.keras.layers.Dense(output_dim, name="out")

    def call(self, x):
        for layer in self._hidden:
            x = layer(x)
        return self._out(x)


def _gaussian(x: tf.Tensor):
    mean, raw_std = tf.split(x, 2, axis=-1)
    return mean, tf.nn.softplus(raw_std) + MIN_STATE_STD


class RSSM(tf.Module):
    """Recurrent state-space model: state {'deter' [N, D], 'stoch' [N, S]} (+ 'mean', 'std').

    ``img_step`` (prior): x = ELU(Dense([stoch, action])) → GRU → ELU(Dense) → Dense → mean,
    std. ``obs_step`` (posterior): the prior's deter with the image embedding → ELU(Dense) →
    Dense → mean, std.
    """

    def __init__(self, deter_size: int, stoch_size: int, hidden_size: int, name: str = "rssm"):
        super().__init__(name=name)
        self.deter_size, self.stoch_size = int(deter_size), int(stoch_size)
        self._img_in = tf.keras.layers.Dense(hidden_size, activation="elu", name="img_in")
        self._cell = tf.keras.layers.GRUCell(deter_size, name="gru")
        self._img_hidden = tf.keras.layers.Dense(hidden_size, activation="elu",
                                                 name="img_hidden")
        self._img_out = tf.keras.layers.Dense(2 * stoch_size, name="img_out")
        self._obs_hidden = tf.keras.layers.Dense(hidden_size, activation="elu",
                                                 name="obs_hidden")
        self._obs_out = tf.keras.layers.Dense(2 * stoch_size, name="obs_out")

    def initial(self, batch_size) -> Dict[str, tf.Tensor]:
        """Zero state: 'deter' float32 [N, D], 'stoch' [N, S]."""
        return {"deter": tf.zeros([batch_size, self.deter_size]),
                "stoch": tf.zeros([batch_size, self.stoch_size])}

    def img_step(self, state: Dict[str, tf.Tensor], action: tf.Tensor,
                 sample: bool = True) -> Dict[str, tf.Tensor]:
        """Prior of the next state from ``state`` and ``action`` float32 [N, A].

        Returns 'deter' [N, D], 'mean', 'std', 'stoch' [N, S] (a sample, or the mean when
        ``sample`` is False).
        """
        x = self._img_in(tf.concat([state["stoch"], action], -1))
        x, deter = self._cell(x, [state["deter"]])
        deter = deter[0] if isinstance(deter, (list, tuple)) else deter
        mean, std = _gaussian(self._img_out(self._img_hidden(x)))
        stoch = mean + std * tf.random.normal(tf.shape(mean)) if sample else mean
        return {"deter": deter, "mean": mean, "std": std, "stoch": stoch}

    def obs_step(self, state: Dict[str, tf.Tensor], action: tf.Tensor, embed: tf.Tensor,
                 sample: bool = True):
        """(posterior, prior) of the next state given its image embedding [N, E]."""
        prior = self.img_step(state, action, sample=sample)
        mean, std = _gaussian(self._obs_out(self._obs_hidden(
            tf.concat([prior["deter"], embed], -1))))
        stoch = mean + std * tf.random.normal(tf.shape(mean)) if sample else mean
        return {"deter": prior["deter"], "mean": mean, "std": std, "stoch": stoch}, prior


def features(state: Dict[str, tf.Tensor]) -> tf.Tensor:
    """float32 [..., D + S]: the model state [deter, stoch] the heads read."""
    return tf.concat([state["deter"], state["stoch"]], -1)


def kl_divergence(post: Dict[str, tf.Tensor], prior: Dict[str, tf.Tensor]) -> tf.Tensor:
    """float32 [...]: KL(posterior ‖ prior) of the diagonal Gaussians, summed over S."""
    return tfd.kl_divergence(
        tfd.Independent(tfd.Normal(post["mean"], post["std"]), 1),
        tfd.Independent(tfd.Normal(prior["mean"], prior["std"]), 1))


def lambda_returns(reward: tf.Tensor, value: tf.Tensor, bootstrap: tf.Tensor, gamma: float,
                   lambda_: float) -> tf.Tensor:
    """TD(λ) returns, time-major.

    Args:
      reward, value: float32 [T, N] at the imagined states 0..T−1.
      bootstrap: float32 [N], the value of state T.
    Returns:
      float32 [T, N]: R_t = r_t + γ((1 − λ) v_{t+1} + λ R_{t+1}), R_T = v_T.
    """
    next_values = tf.concat([value[1:], bootstrap[None]], 0)
    steps = int(reward.shape[0])
    out, last = [None] * steps, bootstrap
    for t in reversed(range(steps)):
        last = reward[t] + gamma * ((1.0 - lambda_) * next_values[t] + lambda_ * last)
        out[t] = last
    return tf.stack(out, 0)


class DreamerModel(tf.Module):
    """World model, goal-conditioned reward, actor and value (see the module docstring).

    Args:
      settings: :func:`dreamer_settings`.
      action_dim: A (4 for the tabletop tasks).
    Variable groups: ``world_model_variables`` (encoder, RSSM, decoder, reward head with its goal
    encoder), ``actor_variables``, ``value_variables``.
    """

    def __init__(self, settings: Dict, action_dim: int = 4, name: str = "dreamer"):
        super().__init__(name=name)
        self.settings = dict(settings)
        self.action_dim = int(action_dim)
        s = self.settings
        self.encoder = ImageEncoder(s["encoder_filters"], s["kernel_size"], name="encoder")
        self.rssm = RSSM(s["deter_size"], s["stoch_size"], s["hidden_size"])
        self.decoder = ImageDecoder(s["encoder_filters"])
        goal_encoder = lambda n: ImageEncoder(s["goal_encoder_filters"], s["kernel_size"], name=n)
        self.reward_goal_encoder = goal_encoder("reward_goal_encoder")
        self.reward_head = DenseHead(s["reward_layers"], s["units"], 1, name="reward_head")
        self.value_goal_encoder = goal_encoder("value_goal_encoder")
        self.value_head = DenseHead(s["value_layers"], s["units"], 1, name="value_head")
        self.actor_goal_encoder = goal_encoder("actor_goal_encoder")
        self.actor_head = DenseHead(s["actor_layers"], s["units"], 2 * self.action_dim,
                                    name="actor_head")
        self._raw_init_std = float(np.log(np.expm1(s["action_init_std"])))
        self._built = False

    # -- variables ------------------------------------------------------------------------------
    def build(self) -> "DreamerModel":
        """Creates every variable (one pass on zeros); returns self."""
        if not self._built:
            img = tf.zeros([1, 2, 64, 64, 3], tf.float32)
            post, _ = self.observe(img, tf.zeros([1, 1, self.action_dim]))
            feat = features(post)[:, 0]
            self.decoder(feat)
            goal = img[:, 0]
            self.reward(feat, self.goal_embedding("reward", goal))
            self.value(feat, self.goal_embedding("value", goal))
            self.actor_params(feat, self.goal_embedding("actor", goal))
            self._built = True
        return self

    @property
    def world_model_variables(self):
        """The variables the world-model optimiser trains (reward predictor included)."""
        mods = (self.encoder, self.rssm, self.decoder, self.reward_goal_encoder, self.reward_head)
        return [v for m in mods for v in m.trainable_variables]

    @property
    def actor_variables(self):
        """The actor head's and its goal encoder's variables."""
        return self.actor_goal_encoder.trainable_variables + self.actor_head.trainable_variables

    @property
    def value_variables(self):
        """The value head's and its goal encoder's variables."""
        return self.value_goal_encoder.trainable_variables + self.value_head.trainable_variables

    # -- pieces ---------------------------------------------------------------------------------
    def embed(self, images) -> tf.Tensor:
        """uint8/float32 [..., 64, 64, 3] → float32 [..., E] image embeddings."""
        x = centre_image(images, "images")
        lead = tf.shape(x)[:-3]
        e = self.encoder(tf.reshape(x, [-1, 64, 64, 3]))
        return tf.reshape(e, tf.concat([lead, [e.shape[-1]]], 0))

    def goal_embedding(self, head: str, goal_image) -> tf.Tensor:
        """e(g) float32 [B, G] of ``head`` ('reward', 'value' or 'actor') for goal [B,64,64,3]."""
        encoder = {"reward": self.reward_goal_encoder, "value": self.value_goal_encoder,
                   "actor": self.actor_goal_encoder}[head]
        return encoder(centre_image(goal_image, "goal_image"))

    @staticmethod
    def _with_goal(feat: tf.Tensor, goal_embed: tf.Tensor):
        """[..., F] ‖ e(g) broadcast over the leading axes → [N, F + G] and the lead shape."""
        lead = tf.shape(feat)[:-1]
        g = tf.broadcast_to(goal_embed, tf.concat([lead, tf.shape(goal_embed)[-1:]], 0))
        x = tf.concat([feat, g], -1)
        return tf.reshape(x, [-1, x.shape[-1]]), lead

    def _head(self, head, feat, goal_embed, out_dim):
        x, lead = self._with_goal(feat, goal_embed)
        return tf.reshape(head(x), tf.concat([lead, [out_dim]], 0))

    def reward(self, feat: tf.Tensor, goal_embed: tf.Tensor) -> tf.Tensor:
        """Predicted reward float32 [...] for features [..., F] and e_r(g) broadcastable to them."""
        return self._head(self.reward_head, feat, goal_embed, 1)[..., 0]

    def value(self, feat: tf.Tensor, goal_embed: tf.Tensor) -> tf.Tensor:
        """Value float32 [...] for features [..., F] and e_v(g)."""
        return self._head(self.value_head, feat, goal_embed, 1)[..., 0]

    def actor_params(self, feat: tf.Tensor, goal_embed: tf.Tensor):
        """(mean, std) float32 [..., A] of the actor's pre-tanh Gaussian."""
        out = self._head(self.actor_head, feat, goal_embed, 2 * self.action_dim)
        mean, raw_std = tf.split(out, 2, axis=-1)
        mean = ACTION_MEAN_SCALE * tf.tanh(mean / ACTION_MEAN_SCALE)
        return mean, tf.nn.softplus(raw_std + self._raw_init_std) + ACTION_MIN_STD

    def actor_mode(self, feat: tf.Tensor, goal_embed: tf.Tensor) -> tf.Tensor:
        """float32 [..., A] in [−1, 1]: tanh of the Gaussian's mean (the deterministic action)."""
        return tf.tanh(self.actor_params(feat, goal_embed)[0])

    def actor_sample(self, feat: tf.Tensor, goal_embed: tf.Tensor) -> tf.Tensor:
        """float32 [..., A] in (−1, 1): a reparameterised tanh-Gaussian sample."""
        mean, std = self.actor_params(feat, goal_embed)
        return tf.tanh(mean + std * tf.random.normal(tf.shape(mean)))

    # -- world model ----------------------------------------------------------------------------
    def observe(self, images, actions, sample: bool = True):
        """Filters a window through the RSSM from the zero state.

        Args:
          images: uint8/float32 [B, L, 64, 64, 3].
          actions: float32 [B, L−1, A]; ``actions[:, i]`` moves frame i to frame i+1 (frame 0
            follows a zero action from the zero state, as in the policy after a reset).
        Returns:
          (posterior, prior): dicts of float32 [B, L, ·] ('deter', 'stoch', 'mean', 'std').
        """
        embed = self.embed(images)
        actions = tf.cast(actions, tf.float32)
        steps = int(embed.shape[1])
        if actions.shape[1] is not None and int(actions.shape[1]) != steps - 1:
            raise ValueError(f"actions must be [B, L−1, A] for images [B, L, 64, 64, 3]; got "
                             f"{actions.shape.as_list()} for L = {steps}.")
        state = self.rssm.initial(tf.shape(embed)[0])
        action = tf.zeros([tf.shape(embed)[0], self.action_dim])
        posts, priors = [], []
        for t in range(steps):
            if t > 0:
                action = actions[:, t - 1]
            state, prior = self.rssm.obs_step(state, action, embed[:, t], sample=sample)
            posts.append(state)
            priors.append(prior)
        stack = lambda seq: {k: tf.stack([s[k] for s in seq], 1) for k in seq[0]}
        return stack(posts), stack(priors)

    def world_model_losses(self, batch: Dict[str, tf.Tensor]):
        """Losses of one batch of windows (:func:`mbold_tf.training.dreamer.dreamer_dataset`).

        ``batch``: 'images' uint8 [B, L, 64, 64, 3], 'actions' float32 [B, L−1, A], 'goal'
        uint8 [B, 64, 64, 3], 'reward' float32 [B, L] (:func:`reward_targets`).
        Returns (losses, posterior): losses float32 scalars 'model_loss' = image_loss +
        reward_loss + kl_scale · max(kl, free_nats); 'image_loss' ½Σ_pixels (x − x̂)² (centred
        [−0.5, 0.5] pixels, mean over frames), 'reward_loss' ½(r − r̂)² (mean), 'kl' (mean);
        the posterior as in :meth:`observe`.
        """
        s = self.settings
        post, prior = self.observe(batch["images"], batch["actions"])
        feat = features(post)
        recon = self.decoder(tf.reshape(feat, [-1, feat.shape[-1]]))
        target = tf.reshape(centre_image(batch["images"], "images"), tf.shape(recon))
        image_loss = tf.reduce_mean(tf.reduce_sum(0.5 * tf.square(recon - target), [1, 2, 3]))
        goal_embed = self.goal_embedding("reward", batch["goal"])[:, None]
        reward_pred = self.reward(feat, goal_embed)
        reward_loss = tf.reduce_mean(0.5 * tf.square(reward_pred - tf.cast(batch["reward"],
                                                                           tf.float32)))
        kl = tf.reduce_mean(kl_divergence(post, prior))
        model_loss = image_loss + reward_loss + s["kl_scale"] * tf.maximum(kl, s["free_nats"])
        return {"model_loss": model_loss, "image_loss": image_loss, "reward_loss": reward_loss,
                "kl": kl}, post

    # -- behaviour ------------------------------------------------------------------------------
    def imagine(self, start: Dict[str, tf.Tensor], actor_goal_embed: tf.Tensor,
                horizon: Optional[int] = None) -> Dict[str, tf.Tensor]:
        """Rolls the prior forward with the actor's samples, ``horizon`` steps.

        Args:
          start: 'deter' float32 [N, D], 'stoch' [N, S] (gradients are stopped here).
          actor_goal_embed: e_a(g) float32 [N, G].
        Returns:
          'deter' [H, N, D], 'stoch' [H, N, S], 'feat' [H, N, D + S] of the imagined states
          1..H, 'action' [H, N, A] (the action that led to each).
        """
        horizon = int(horizon or self.settings["horizon"])
        state = {k: tf.stop_gradient(start[k]) for k in STATE_KEYS}
        out = {k: [] for k in ("deter", "stoch", "action")}
        for _ in range(horizon):
            action = self.actor_sample(tf.stop_gradient(features(state)), actor_goal_embed)
            prior = self.rssm.img_step(state, action)
            state = {k: prior[k] for k in STATE_KEYS}
            out["deter"].append(state["deter"])
            out["stoch"].append(state["stoch"])
            out["action"].append(action)
        traj = {k: tf.stack(v, 0) for k, v in out.items()}
        traj["feat"] = features(traj)
        return traj

    def behaviour_targets(self, traj: Dict[str, tf.Tensor], goal_image,
                          repeats: int) -> Dict[str, tf.Tensor]:
        """Imagined rewards, values and λ-returns of :meth:`imagine`'s trajectory.

        ``goal_image`` uint8 [B, 64, 64, 3]; each goal serves ``repeats`` consecutive start
        states (N = B · repeats). Returns 'reward', 'value' float32 [H, N]; 'returns' and
        'weights' (γ^t, stop-gradient) [H−1, N].
        """
        s = self.settings
        rep = lambda e: tf.repeat(e, repeats, axis=0)[None]
        reward = self.reward(traj["feat"], rep(self.goal_embedding("reward", goal_image)))
        value = self.value(traj["feat"], rep(self.goal_embedding("value", goal_image)))
        returns = lambda_returns(reward[:-1], value[:-1], value[-1], s["gamma"], s["lambda_"])
        steps = int(returns.shape[0])
        weights = tf.constant(s["gamma"] ** np.arange(steps), tf.float32)[:, None]
        return {"reward": reward, "value": value, "returns": returns, "weights": weights}

    # -- acting ---------------------------------------------------------------------------------
    def filter_step(self, state: Dict[str, tf.Tensor], prev_action: tf.Tensor,
                    image) -> Dict[str, tf.Tensor]:
        """One posterior update for acting (the posterior mean, no sampling).

        ``state`` 'deter' [B, D], 'stoch' [B, S]; ``prev_action`` float32 [B, A]; ``image``
        uint8/float32 [B, 64, 64, 3]. Returns the new 'deter', 'stoch'.
        """
        image = dn.check_image(image, "image")
        post, _ = self.rssm.obs_step(state, tf.cast(prev_action, tf.float32),
                                     self.embed(image), sample=False)
        return {k: post[k] for k in STATE_KEYS}

    def act(self, state: Dict[str, tf.Tensor], goal_image) -> tf.Tensor:
        """The actor's mode action float32 [B, A] in [−1, 1] at ``state`` for goal [B,64,64,3]."""
        goal_image = dn.check_image(goal_image, "goal_image")
        return self.actor_mode(features(state), self.goal_embedding("actor", goal_image))


def build_model(settings: Dict, action_dim: int = 4) -> DreamerModel:
    """A :class:`DreamerModel` with its variables created."""
    return DreamerModel(settings, action_dim).build()
