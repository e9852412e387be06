"""Cross-entropy method over action sequences, entirely in TensorFlow (§4, App. A.2, Table 3).

Samples N action sequences of horizon h from a diagonal Gaussian whose noise passes the same
correlated filter as the data-collection policy (Nagabandi et al. 2020):
``u_t = β·σ_t·ε_t + (1 − β)·u_{t−1}``, ``a = clip(μ + u, −1, 1)``; scores them with a cost
function (lower is better), keeps the K elites and refits, for I iterations. Returns the best
sequence seen. Two refit rules (gin): ``'gaussian'`` refits mean and std to the elites (the
paper's description), ``'authors'`` refits the mean as an exp(−cost)-weighted average of the
elites and keeps the initial std (the authors' released code).
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Sequence, Tuple

import gin
import tensorflow as tf

REFIT_RULES = ("gaussian", "authors")


@gin.configurable
@dataclasses.dataclass(frozen=True)
class CEMConfig:
    """CEM hyperparameters (Table 3 defaults)."""
    num_samples: int = 200
    num_elites: int = 10
    iterations: int = 3
    horizon: int = 13
    beta: float = 0.5
    refit: str = "gaussian"
    min_std: float = 0.05

    def __post_init__(self):
        if self.refit not in REFIT_RULES:
            raise ValueError(f"Unknown CEM refit rule {self.refit!r}; choose one of "
                             f"{REFIT_RULES}.")
        if not 0 < self.num_elites <= self.num_samples:
            raise ValueError(f"num_elites={self.num_elites} must be in [1, num_samples="
                             f"{self.num_samples}].")


def correlated_samples(mean: tf.Tensor, std: tf.Tensor, num: int, beta: float,
                       seed: tf.Tensor) -> tf.Tensor:
    """float32 [num, h, A]: clip(mean + u) with u the correlated-filtered Gaussian noise.

    Args: mean [h, A], std [h, A] (or [A]); seed: int32/int64 [2] stateless seed.
    """
    h, a = mean.shape[0], mean.shape[1]
    std = tf.broadcast_to(std, [h, a])
    eps = tf.random.stateless_normal([h, num, a], seed)
    scaled = beta * std[:, None, :] * eps

    def step(prev, x):
        return x + (1.0 - beta) * prev

    noise = tf.scan(step, scaled, initializer=tf.zeros([num, a]))  # [h, num, A]
    return tf.clip_by_value(mean[None] + tf.transpose(noise, [1, 0, 2]), -1.0, 1.0)


def cem(cost_fn: Callable[[tf.Tensor], tf.Tensor], init_mean: tf.Tensor, init_std: tf.Tensor,
        seed: tf.Tensor, config: CEMConfig | None = None) -> Tuple[tf.Tensor, tf.Tensor]:
    """Runs CEM; traceable inside ``tf.function``.

    Args:
      cost_fn: actions float32 [N, h, A] -> cost float32 [N] (lower is better).
      init_mean: float32 [h, A] (zeros, or the previous plan shifted).
      init_std: float32 [A] or [h, A] (the task's data-collection std).
      seed: int [2] stateless seed; the same seed gives the same plan.
      config: :class:`CEMConfig`; None: the gin-configured one, built at this call.
    Returns:
      (best actions float32 [h, A], best cost float32 []).
    """
    config = CEMConfig() if config is None else config
    mean = tf.convert_to_tensor(init_mean, tf.float32)
    h, a = mean.shape[0], mean.shape[1]
    std0 = tf.broadcast_to(tf.convert_to_tensor(init_std, tf.float32), [h, a])
    std = std0
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), config.iterations)
    best_actions = mean
    best_cost = tf.constant(float("inf"))
    for it in range(config.iterations):
        samples = correlated_samples(mean, std, config.num_samples, config.beta, seeds[it])
        cost = tf.reshape(cost_fn(samples), [config.num_samples])
        cost = tf.where(tf.math.is_finite(cost), cost, tf.fill(tf.shape(cost), float("inf")))
        neg_top, idx = tf.math.top_k(-cost, k=config.num_elites)
        elites = tf.gather(samples, idx)
        if config.refit == "gaussian":
            mean = tf.reduce_mean(elites, axis=0)
            # The filter scales white noise by sqrt(β / (2 − β)) at stationarity; undo it so the
            # next samples spread like the elites did.
            gain = (config.beta / (2.0 - config.beta)) ** 0.5
            std = tf.maximum(tf.math.reduce_std(elites, axis=0) / gain, config.min_std)
        else:
            w = tf.nn.softmax(neg_top - tf.reduce_max(neg_top))  # exp(-cost), normalised
            mean = tf.einsum("k,kha->ha", w, elites)
            std = std0
        improved = -neg_top[0] < best_cost
        best_actions = tf.where(improved, elites[0], best_actions)
        best_cost = tf.where(improved, -neg_top[0], best_cost)
    return best_actions, best_cost


def correlated_samples_batch(mean: tf.Tensor, std: tf.Tensor, num: int, beta: float,
                             seeds: tf.Tensor) -> tf.Tensor:
    """float32 [B, num, h, A]: :func:`correlated_samples` of B elements at once.

    Args: mean [B, h, A]; std [B, h, A] (or broadcastable, e.g. [h, A]); seeds int64 [B, 2],
    one stateless seed per element. Element b equals ``correlated_samples(mean[b], std[b],
    num, beta, seeds[b])``: each draws its own noise from its own seed.
    """
    h, a = mean.shape[1], mean.shape[2]
    std = tf.broadcast_to(std, tf.shape(mean))
    eps = tf.map_fn(lambda s: tf.random.stateless_normal([h, num, a], s), seeds,
                    fn_output_signature=tf.TensorSpec([h, num, a], tf.float32))
    scaled = tf.transpose(beta * std[:, :, None, :] * eps, [1, 0, 2, 3])  # [h, B, num, A]

    def step(prev, x):
        return x + (1.0 - beta) * prev

    noise = tf.scan(step, scaled, initializer=tf.zeros_like(scaled[0]))  # [h, B, num, A]
    return tf.clip_by_value(mean[:, None] + tf.transpose(noise, [1, 2, 0, 3]), -1.0, 1.0)


def cem_batch(cost_fn: Callable[[tf.Tensor], tf.Tensor], init_mean: tf.Tensor,
              init_std: tf.Tensor, seeds: tf.Tensor, config: CEMConfig | None = None
              ) -> Tuple[tf.Tensor, tf.Tensor]:
    """:func:`cem` for B independent problems whose samples are scored in one call.

    Each element keeps its own mean, std, elites, random stream and best plan, so element b's
    result equals ``cem(cost_b, init_mean[b], init_std, seeds[b], config)`` (to float
    rounding); only the cost function sees all B × N samples at once (lockstep evaluation).

    Args:
      cost_fn: actions float32 [B, N, h, A] -> cost float32 [B, N] (lower is better).
      init_mean: float32 [B, h, A].
      init_std: float32 [A] or [h, A], shared by the elements.
      seeds: int [B, 2], each element's stateless seed.
      config: :class:`CEMConfig`; None: the gin-configured one, built at this call.
    Returns:
      (best actions float32 [B, h, A], best cost float32 [B]).
    """
    config = CEMConfig() if config is None else config
    mean = tf.convert_to_tensor(init_mean, tf.float32)
    h, a = mean.shape[1], mean.shape[2]
    std0 = tf.broadcast_to(tf.convert_to_tensor(init_std, tf.float32), [h, a])
    std = std0
    iteration_seeds = tf.map_fn(  # [B, I, 2]: the per-iteration seeds cem() derives
        lambda s: tf.random.experimental.stateless_split(s, config.iterations),
        tf.cast(seeds, tf.int64), fn_output_signature=tf.TensorSpec([config.iterations, 2],
                                                                    tf.int64))
    best_actions = mean
    best_cost = tf.fill(tf.shape(mean)[:1], float("inf"))
    n, k = config.num_samples, config.num_elites
    for it in range(config.iterations):
        samples = correlated_samples_batch(mean, std, n, config.beta, iteration_seeds[:, it])
        cost = tf.reshape(cost_fn(samples), [-1, n])
        cost = tf.where(tf.math.is_finite(cost), cost, tf.fill(tf.shape(cost), float("inf")))
        neg_top, idx = tf.math.top_k(-cost, k=k)  # [B, K] each
        elites = tf.gather(samples, idx, batch_dims=1)  # [B, K, h, A]
        if config.refit == "gaussian":
            mean = tf.reduce_mean(elites, axis=1)
            gain = (config.beta / (2.0 - config.beta)) ** 0.5  # as in cem()
            std = tf.maximum(tf.math.reduce_std(elites, axis=1) / gain, config.min_std)
        else:
            w = tf.nn.softmax(neg_top - tf.reduce_max(neg_top, axis=1, keepdims=True))
            mean = tf.einsum("bk,bkha->bha", w, elites)
            std = std0
        improved = -neg_top[:, 0] < best_cost
        best_actions = tf.where(improved[:, None, None], elites[:, 0], best_actions)
        best_cost = tf.where(improved, -neg_top[:, 0], best_cost)
    return best_actions, best_cost


def shift_plan(actions: tf.Tensor, steps) -> tf.Tensor:
    """Warm start: drops the first ``steps`` actions of a [h, A] plan and pads with zeros.

    ``steps``: int or int tensor [] (the actions executed since the plan was made).
    """
    h = actions.shape[0]
    index = tf.range(h, dtype=tf.int64) + tf.cast(steps, tf.int64)
    kept = tf.gather(actions, tf.minimum(index, h - 1))
    return tf.where((index < h)[:, None], kept, tf.zeros_like(kept))


def as_std(std: Sequence[float]) -> tf.Tensor:
    """float32 [A] from a per-dimension std list (e.g. ``tasks.TASKS[name].collection_std``)."""
    return tf.constant(std, tf.float32)
