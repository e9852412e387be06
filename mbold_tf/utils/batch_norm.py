"""Precise batch-norm statistics: recompute the moving averages of trained networks from data.

Keras batch-norm keeps exponential moving averages (momentum 0.99: about the last 100 batches)
of statistics that drift while the weights train, so the inference-mode network is not the one
that was trained. On the reach distance this gap was large: the critic's Q (in [0, 1]) differed
between the two modes by 0.16–0.77 on average at its checkpoints (docs/design.md, "Distance function").
:func:`recalibrate` replaces every moving mean and variance by the average of the per-batch
statistics over a few batches with the weights frozen ("precise BN", Wu & Johnson 2021), so
inference normalises the way training did.
"""
from __future__ import annotations

from typing import Callable, Iterable, List, Sequence

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
