"""Precise batch-norm statistics: recompute the moving averages of trained networks from data.

Keras batch-norm keeps exponential moving averages (momentum 0.99: about the last 100 batches)
of statistics that drift while the weights train, so the inference-mode network is not the one
that was trained (the gap on the reach distance: docs/measurements.md, "Batch-norm statistics").
:func:`recalibrate` replaces every moving mean and variance by the average of the per-batch
statistics over a few batches with the weights frozen ("precise BN", Wu & Johnson 2021), so
inference normalises the way training did.
"""
from __future__ import annotations

import itertools
from typing import Callable, Iterable, Iterator, List, Sequence

from absl import logging
import tensorflow as tf


def batch_norm_layers(modules: Sequence[tf.Module]) -> List[tf.keras.layers.BatchNormalization]:
    """Every distinct Keras batch-norm layer inside ``modules`` (networks, layers), in order."""
    seen, out = set(), []
    for module in modules:
        candidates = [module] + list(module.submodules)
        for layer in candidates:
            if isinstance(layer, tf.keras.layers.BatchNormalization) and id(layer) not in seen:
                seen.add(id(layer))
                out.append(layer)
    return out


def recalibrate(modules: Sequence[tf.Module], forward: Callable[[object], None],
                batches: Iterable) -> int:
    """Sets the batch-norm moving statistics in ``modules`` to their average over ``batches``.

    Args:
      modules: the networks whose batch-norm layers are recalibrated.
      forward: ``forward(batch)`` runs the networks on one batch in training mode (it must call
        them eagerly, with ``training=True``; its outputs are ignored).
      batches: an iterable of batches (e.g. ``dataset.take(k)``), each one as training sees it.
    Returns:
      int: the number of batches used (0 leaves the statistics unchanged).

    Batch k (from 0) updates each moving average with momentum k / (k + 1), so after K batches
    it is the plain mean of the K batch means and variances. Trainable weights do not change.
    """
    layers = batch_norm_layers(modules)
    saved = [layer.momentum for layer in layers]
    count = 0
    try:
        for batch in batches:
            for layer in layers:
                layer.momentum = count / (count + 1.0)
            forward(batch)
            count += 1
    finally:
        for layer, momentum in zip(layers, saved):
            layer.momentum = momentum
    return count


def recalibration_hook(modules: Sequence[tf.Module], forward: Callable[[object], None],
                       score: Callable[[object, bool], tf.Tensor], batches: Iterator,
                       num_batches: int, step: tf.Variable, name: str) -> Callable[[], None]:
    """A ``TrainingLoop`` ``before_save()`` that recalibrates ``modules`` from the next
    ``num_batches`` of ``batches`` and logs the train/inference gap it closes.

    ``score(batch, training) -> float32 [B]`` (e.g. the critic's Q at the data actions): the
    gap is mean |score_train − score_inference| on the first batch, before and after; it is
    logged and written as the scalars ``batch_norm/<name>_before`` and ``_after``.
    """
    def before_save():
        check = next(batches)
        infer = score(check, False)
        train = score(check, True)  # its moving-average update is overwritten below
        gap_before = float(tf.reduce_mean(tf.abs(train - infer)))
        n = recalibrate(modules, forward,
                        itertools.chain([check], itertools.islice(batches, num_batches - 1)))
        gap_after = float(tf.reduce_mean(tf.abs(train - score(check, False))))
        logging.info("Batch-norm statistics recomputed from %d batches: %s (mean |train − "
                     "inference|) %.4f → %.4f", n, name, gap_before, gap_after)
        tf.summary.scalar(f"batch_norm/{name}_before", gap_before, step=step)
        tf.summary.scalar(f"batch_norm/{name}_after", gap_after, step=step)

    return before_save
