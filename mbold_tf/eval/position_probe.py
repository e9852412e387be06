"""Control metrics for a video predictor: where the arm and objects are in its predicted frames.

Pixel errors (MSE, PSNR, SSIM) do not say whether a predicted frame puts the hand and the block
where the real one does, which is what a planner's cost reads. A :class:`PositionProbe` is a
small CNN trained on *real* frames to regress the privileged positions stored with every step
(``ee_pos`` [3] and, for push tasks, ``block_pos`` [K, 3]; evaluation only, never a model input).
Applied to predicted frames, its error per predicted step measures how far the predictor moved
the hand and the block from where the real frames have them; applied to the real frames of the
same steps, it gives the probe's own floor. :func:`control_metrics` reports both, beside the
error of a probe-free "nothing moves" baseline (the true positions at the context frame).
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

from absl import logging
import numpy as np
import tensorflow as tf

from mbold_tf.data import pipelines
from mbold_tf.data import rlds

IMAGE_SHAPE = (64, 64, 3)
KEYS = ("ee_pos", "block_pos")


def _targets(arrays: rlds.EpisodeArrays, keys: Sequence[str]) -> np.ndarray:
    """float32 [M, 3·P]: the privileged positions of every step, flattened in ``keys`` order."""
    parts = []
    for k in keys:
        if k not in arrays.privileged:
            raise KeyError(f"The episodes have no privileged {k!r} (they have "
                           f"{sorted(arrays.privileged)}); the probe needs the tabletop "
                           f"datasets' privileged positions.")
        v = arrays.privileged[k]
        parts.append(v.reshape(len(v), -1).astype(np.float32))
    return np.concatenate(parts, axis=1)


class PositionProbe(tf.keras.Model):
    """CNN: uint8 or float [B, 64, 64, 3] frames → float32 [B, 3·P] positions (m).

    ``keys`` names the positions (``ee_pos`` and ``block_pos`` when present), ``sizes`` their
    flattened sizes; the outputs are de-normalised with the training data's mean and std.
    """

    def __init__(self, keys: Sequence[str], sizes: Sequence[int], mean: np.ndarray,
                 std: np.ndarray, filters: Sequence[int] = (16, 32, 64, 64)):
        super().__init__(name="position_probe")
        self.keys, self.sizes = tuple(keys), tuple(int(s) for s in sizes)
        self._mean = tf.constant(mean, tf.float32)
        self._std = tf.constant(np.maximum(std, 1e-4), tf.float32)
        self.convs = [tf.keras.layers.Conv2D(f, 3, strides=2, padding="same",
                                             activation="relu") for f in filters]
        self.flat = tf.keras.layers.Flatten()
        self.hidden = tf.keras.layers.Dense(128, activation="relu")
        self.out = tf.keras.layers.Dense(int(sum(self.sizes)))

    def call(self, frames, training=False):
        shape = tuple(frames.shape[-3:])
        if shape != IMAGE_SHAPE:
            raise ValueError(f"PositionProbe reads {IMAGE_SHAPE[0]}x{IMAGE_SHAPE[1]} RGB frames "
                             f"[B, 64, 64, 3]; got frames of shape {tuple(frames.shape)}. "
                             f"Resize them to 64x64 first.")
        x = tf.cast(frames, tf.float32)
        if frames.dtype == tf.uint8:
            x = x / 255.0
        for conv in self.convs:
            x = conv(x)
        return self.out(self.hidden(self.flat(x))) * self._std + self._mean

    def split(self, flat: np.ndarray) -> Dict[str, np.ndarray]:
        """[B, 3·P] → {key: [B, P_k, 3]}."""
        out, i = {}, 0
        for k, s in zip(self.keys, self.sizes):
            out[k] = np.asarray(flat)[:, i:i + s].reshape(len(flat), -1, 3)
            i += s
        return out


def train_probe(arrays: rlds.EpisodeArrays, steps: int = 2000, batch_size: int = 64,
                learning_rate: float = 1e-3, seed: int = 0) -> PositionProbe:
    """A PositionProbe trained on every step of ``arrays`` (real frames) with Adam (MSE on the
    normalised positions)."""
    keys = [k for k in KEYS if k in arrays.privileged]
    targets = _targets(arrays, keys)
    sizes = [int(np.prod(arrays.privileged[k].shape[1:])) for k in keys]
    mean, std = targets.mean(0), targets.std(0)
    tf.keras.utils.set_random_seed(seed)
    probe = PositionProbe(keys, sizes, mean, std)
    optimizer = tf.keras.optimizers.Adam(learning_rate)
    images = tf.constant(arrays.images)
    norm_targets = tf.constant((targets - mean) / np.maximum(std, 1e-4))
    n = len(targets)

    @tf.function
    def step(index):
        x = tf.gather(images, index)
        y = tf.gather(norm_targets, index)
        with tf.GradientTape() as tape:
            pred = (probe(x, training=True) - probe._mean) / probe._std  # pylint: disable=protected-access
            loss = tf.reduce_mean(tf.square(pred - y))
        optimizer.apply_gradients(zip(tape.gradient(loss, probe.trainable_variables),
                                      probe.trainable_variables))
        return loss

    rng = np.random.default_rng(seed)
    for i in range(steps):
        loss = step(tf.constant(rng.integers(0, n, batch_size)))
        if (i + 1) % max(1, steps // 5) == 0:
            logging.info("probe step %d/%d: normalised MSE %.4f", i + 1, steps, float(loss))
    return probe


def position_errors(probe: PositionProbe, frames, true_flat: np.ndarray) -> Dict[str, np.ndarray]:
    """{key: float [B]}: Euclidean error (m) of the probe's read positions, averaged over the
    key's objects, against the true flattened positions ``true_flat`` [B, 3·P]."""
    read = probe.split(probe(frames).numpy())
    true = probe.split(true_flat)
    return {k: np.linalg.norm(read[k] - true[k], axis=-1).mean(-1) for k in probe.keys}


def control_metrics(predictor, probe: PositionProbe, arrays: rlds.EpisodeArrays,
                    num_batches: int = 4, batch_size: int = 32, seed: int = 0) -> Dict:
    """Per predicted step, the positions' errors (m) read from predicted frames and from the real
    frames of the same steps (the probe's floor), and the error of assuming nothing moves.

    Returns ``{'horizon', 'windows', key: {'predicted': [h], 'real': [h], 'static': [h],
    'predicted_mean', 'real_mean', 'static_mean'}}`` for each probed key.
    """
    c, h = predictor.context, predictor.horizon
    flat = _targets(arrays, probe.keys)
    with_state = bool(getattr(predictor, "state_conditioned", False))
    ds = pipelines.predictor_dataset(arrays, batch_size=batch_size, context=c, horizon=h,
                                     seed=seed, with_step_index=True, with_proprio=with_state)
    sums = {k: {m: np.zeros(h) for m in ("predicted", "real", "static")} for k in probe.keys}
    n = 0
    for batch in ds.take(num_batches):
        images, positions = batch["images"], flat[batch["step_index"].numpy()]
        pred = predictor.predict(images[:, :c], batch["actions"], *(
            (batch["proprio"][:, :c],) if with_state else ())).numpy()
        real = images[:, c:].numpy()
        b = real.shape[0]
        static = probe.split(positions[:, c - 1])  # where the context frame has everything
        for t in range(h):
            truth = positions[:, c + t]
            for name, frames in (("predicted", pred[:, t]), ("real", real[:, t])):
                for k, v in position_errors(probe, frames, truth).items():
                    sums[k][name][t] += v.sum()
            true_t = probe.split(truth)
            for k in probe.keys:
                sums[k]["static"][t] += np.linalg.norm(static[k] - true_t[k],
                                                       axis=-1).mean(-1).sum()
        n += b
    out: Dict = {"horizon": h, "windows": n}
    for k in probe.keys:
        entry = {}
        for m, v in sums[k].items():
            per = v / max(n, 1)
            entry[m] = [round(float(x), 4) for x in per]
            entry[f"{m}_mean"] = round(float(per.mean()), 4)
        out[k] = entry
    return out


def probe_check(probe: PositionProbe, arrays: rlds.EpisodeArrays,
                max_steps: Optional[int] = 4096) -> Dict[str, Dict[str, float]]:
    """The probe on real frames of ``arrays`` (e.g. validation): mean error (m) per key, and the
    error of always answering the data's mean position (what a probe that learned nothing gets).
    """
    flat = _targets(arrays, probe.keys)
    m = len(flat) if max_steps is None else min(len(flat), max_steps)
    errs = {k: [] for k in probe.keys}
    for i in range(0, m, 256):
        for k, v in position_errors(probe, arrays.images[i:i + 256], flat[i:i + 256]).items():
            errs[k].append(v)
    mean_pos = probe.split(np.broadcast_to(probe._mean.numpy(), flat[:m].shape))  # pylint: disable=protected-access
    true = probe.split(flat[:m])
    return {k: {"probe_error_m": round(float(np.concatenate(errs[k]).mean()), 4),
                "mean_position_error_m": round(float(np.linalg.norm(
                    mean_pos[k] - true[k], axis=-1).mean()), 4)} for k in probe.keys}


def format_table(result: Dict) -> str:
    """Markdown: the probe's check on real frames, then per predicted step the errors (cm) read
    from predicted frames, from real frames and of assuming nothing moves."""
    control = result["control"]
    lines = ["probe on real frames (m): " + ", ".join(
        f"{k} {v['probe_error_m']:.3f} (mean position: {v['mean_position_error_m']:.3f})"
        for k, v in result["probe"]["on_real_frames"].items()), "",
             "| position | frames | " + " | ".join(f"t+{t + 1}" for t in
                                                    range(control["horizon"])) + " | mean |",
             "|---|---|" + "---|" * (control["horizon"] + 1)]
    for k in (k for k in KEYS if k in control):
        for m, label in (("predicted", "predicted"), ("real", "real (probe floor)"),
                         ("static", "nothing moves")):
            lines.append(f"| {k} (cm) | {label} | " + " | ".join(
                f"{100 * v:.1f}" for v in control[k][m]) + f" | {100 * control[k][m + '_mean']:.1f} |")
    return "\n".join(lines)
