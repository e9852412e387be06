"""Each dataset step's frame as the video predictor renders it at planning time.

The planner scores *predicted* frames with a critic that is otherwise trained on real ones, and
the critic ranks plans worse on predicted frames than on real ones (docs/measurements.md, "Where
the planner loses: cost ranking"). These frames let the distance agent train on the predictor's
images too
(``train_distance.predicted_states_dir``; goals stay real, as at test time).
"""
from __future__ import annotations

import numpy as np

from mbold_tf.data.rlds import EpisodeArrays


def predicted_images(arrays: EpisodeArrays, predictor, batch_size: int = 64) -> np.ndarray:
    """uint8 [M, 64, 64, 3]: the predictor's rendering of every step of ``arrays``.

    Each episode is cut into windows of ``predictor.horizon`` steps; step t of a window starting
    at s is predicted from the real frame s and the recorded actions s..t−1, so the frames span
    every prediction depth 1..h the planner scores. Each episode's first frame stays real.
    Args: arrays: episodes (images uint8 [M, 64, 64, 3], actions float32 [M, A]); predictor:
    a trained ``VideoPredictor`` with ``context == 1``; batch_size: windows per predict call.
    """
    if getattr(predictor, "context", 1) != 1:
        raise ValueError(f"predicted_images needs a predictor with context=1, got "
                         f"{predictor.context}.")
    h, a = int(predictor.horizon), arrays.actions.shape[-1]
    windows = []  # (index of the real context frame, number of predicted steps kept)
    for start, length in zip(arrays.episode_start, arrays.episode_length):
        for w in range(0, int(length) - 1, h):
            windows.append((int(start) + w, min(h, int(length) - 1 - w)))
    out = arrays.images.copy()
    for b in range(0, len(windows), batch_size):
        chunk = windows[b:b + batch_size]
        actions = np.zeros([len(chunk), h, a], np.float32)
        for j, (c, n) in enumerate(chunk):
            actions[j, :n] = arrays.actions[c:c + n]
        rows = [c for c, _ in chunk]
        context = arrays.images[rows][:, None]
        states = (arrays.proprio[rows][:, None].astype(np.float32)
                  if getattr(predictor, "state_conditioned", False) else None)
        frames = np.asarray(predictor.predict(context, actions, states) if states is not None
                            else predictor.predict(context, actions))
        frames = np.clip(np.round(frames * 255.0), 0, 255).astype(np.uint8)
        for j, (c, n) in enumerate(chunk):
            out[c + 1:c + 1 + n] = frames[j, :n]
    return out
