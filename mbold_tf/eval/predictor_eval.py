"""Video-predictor evaluation: per-step MSE, PSNR and SSIM against copy-last-frame; strips.

``evaluate_predictor`` draws ``num_batches`` validation windows (context C + horizon h) with a
fixed seed, predicts the h frames closed loop, and reports for every predicted step the mean MSE
(pixels in [0, 1]), PSNR (dB, ``tf.image.psnr``) and SSIM (``tf.image.ssim``) of the model and of
the copy-last-frame baseline (every future frame = the last context frame), the averages over
the h steps, and the relative MSE improvement ``1 - mse_model / mse_copy_last``.
"""
from __future__ import annotations

import json
from typing import Dict, List

import numpy as np
from PIL import Image
import tensorflow as tf

from mbold_tf.data import pipelines
from mbold_tf.data import rlds
from mbold_tf.utils import image_strips

METRICS = ("mse", "psnr", "ssim")


def _per_step(real, pred) -> Dict[str, np.ndarray]:
    """real, pred float32 [B, h, H, W, 3] in [0, 1] -> dict of float64 [h] summed over B."""
    mse = tf.reduce_mean(tf.square(pred - real), axis=[2, 3, 4])
    psnr = tf.image.psnr(pred, real, max_val=1.0)
    ssim = tf.image.ssim(pred, real, max_val=1.0)
    # Identical frames give PSNR = inf; cap at 100 dB so averages stay finite.
    psnr = tf.minimum(psnr, 100.0)
    return {"mse": tf.reduce_sum(mse, 0).numpy().astype(np.float64),
            "psnr": tf.reduce_sum(psnr, 0).numpy().astype(np.float64),
            "ssim": tf.reduce_sum(ssim, 0).numpy().astype(np.float64)}


def evaluate_predictor(predictor, arrays: rlds.EpisodeArrays, num_batches: int = 10,
                       batch_size: int = 64, seed: int = 0) -> Dict:
    """Per-step and averaged MSE/PSNR/SSIM of ``predictor`` and of copy-last on ``arrays``.

    Returns a JSON-able dict: ``horizon``, ``context``, ``windows``, ``model`` and
    ``copy_last`` (each ``{'mse': [h], 'psnr': [h], 'ssim': [h], 'mse_mean', 'psnr_mean',
    'ssim_mean'}``) and ``relative_mse_improvement``.
    """
    c, h = predictor.context, predictor.horizon
    with_state = bool(getattr(predictor, "state_conditioned", False))
    ds = pipelines.predictor_dataset(arrays, batch_size=batch_size, context=c, horizon=h,
                                     seed=seed, with_proprio=with_state)
    sums = {"model": {m: np.zeros(h) for m in METRICS},
            "copy_last": {m: np.zeros(h) for m in METRICS}}
    n = 0
    for batch in ds.take(num_batches):
        images = batch["images"]
        real = tf.cast(images[:, c:], tf.float32) / 255.0
        pred = tf.cast(predictor.predict(images[:, :c], batch["actions"], *(
            (batch["proprio"][:, :c],) if with_state else ())), tf.float32)
        last = tf.cast(images[:, c - 1:c], tf.float32) / 255.0
        copy = tf.broadcast_to(last, tf.shape(real))
        for name, p in (("model", pred), ("copy_last", copy)):
            for m, v in _per_step(real, p).items():
                sums[name][m] += v
        n += int(images.shape[0])
    result: Dict = {"horizon": h, "context": c, "windows": n}
    for name in sums:
        entry = {}
        for m in METRICS:
            per = sums[name][m] / max(n, 1)
            entry[m] = [float(x) for x in per]
            entry[f"{m}_mean"] = float(per.mean())
        result[name] = entry
    result["relative_mse_improvement"] = float(
        1.0 - result["model"]["mse_mean"] / max(result["copy_last"]["mse_mean"], 1e-12))
    return result


def format_table(result: Dict) -> str:
    """A plain-text table: one row per predicted step, model vs copy-last, then the means."""
    header = (f"{'step':>4}  {'MSE model':>10} {'MSE copy':>10}  {'PSNR model':>10} "
              f"{'PSNR copy':>10}  {'SSIM model':>10} {'SSIM copy':>10}")
    lines: List[str] = [header, "-" * len(header)]
    m, b = result["model"], result["copy_last"]
    for t in range(result["horizon"]):
        lines.append(f"{t + 1:>4}  {m['mse'][t]:>10.5f} {b['mse'][t]:>10.5f}  "
                     f"{m['psnr'][t]:>10.2f} {b['psnr'][t]:>10.2f}  "
                     f"{m['ssim'][t]:>10.4f} {b['ssim'][t]:>10.4f}")
    lines.append("-" * len(header))
    lines.append(f"{'mean':>4}  {m['mse_mean']:>10.5f} {b['mse_mean']:>10.5f}  "
                 f"{m['psnr_mean']:>10.2f} {b['psnr_mean']:>10.2f}  "
                 f"{m['ssim_mean']:>10.4f} {b['ssim_mean']:>10.4f}")
    lines.append(f"relative MSE improvement over copy-last: "
                 f"{100 * result['relative_mse_improvement']:.1f}% "
                 f"({result['windows']} windows, context {result['context']}, "
                 f"horizon {result['horizon']})")
    return "\n".join(lines)


def save_strip(path: str, frames_real, frames_pred) -> None:
    """Writes a PNG: real frames [T, H, W, 3] (top) above predicted frames (bottom).

    Several windows ([N, T, H, W, 3] each) are stacked vertically, one real/predicted pair each.
    """
    real, pred = np.asarray(frames_real), np.asarray(frames_pred)
    if real.ndim == 5:
        img = np.concatenate([image_strips.strip_image(r, p) for r, p in zip(real, pred)],
                             axis=0)
    else:
        img = image_strips.strip_image(real, pred)
    Image.fromarray(img).save(path)


def dumps(result: Dict) -> str:
    """The result as one JSON line."""
    return json.dumps(result, sort_keys=True)
