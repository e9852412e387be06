"""Strip images of real above predicted frames (the predictor's TensorBoard strips and PNGs).

One helper for the trainer (:mod:`mbold_tf.training.predictor`) and the evaluation
(:mod:`mbold_tf.eval.predictor_eval`), kept here so that neither imports the other.
"""
from __future__ import annotations

import numpy as np


def to_uint8(frames) -> np.ndarray:
    """uint8 frames: uint8 input as it is, float input in [0, 1] scaled by 255, rounded, clipped."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        frames = np.clip(np.round(frames.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)
    return frames


def strip_image(frames_real, frames_pred) -> np.ndarray:
    """uint8 [2*H, T*W, 3]: real frames [T, H, W, 3] in a row above predicted frames.

    Float inputs are taken in [0, 1]; uint8 as they are.
    """
    real, pred = to_uint8(frames_real), to_uint8(frames_pred)
    if real.shape != pred.shape or real.ndim != 4:
        raise ValueError(f"strip_image: real {real.shape} and predicted {pred.shape} must both "
                         f"be [T, H, W, 3].")
    return np.concatenate([np.concatenate(list(real), axis=1),
                           np.concatenate(list(pred), axis=1)], axis=0)
