"""A training run's own record of its time (``<run>/timing.json``), without TensorFlow.

:class:`mbold_tf.utils.training.TrainingLoop` writes it at every save: one segment per process
that trained the run (steps, wall seconds, the process's CPU seconds over all threads). The
evaluation headers carry :func:`training_time` of each model's run.
"""
from __future__ import annotations

import json
import os
from typing import Dict, List, Optional

TIMING_FILE = "timing.json"


def read_segments(root_dir: str) -> List[Dict[str, float]]:
    """The segments of ``root_dir/timing.json`` (dicts: from_step, to_step, wall_seconds,
    cpu_seconds); [] without one."""
    path = os.path.join(root_dir, TIMING_FILE)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return list(json.load(f)["segments"])


def training_time(root_dir: str) -> Optional[Dict[str, float]]:
    """How long the run in ``root_dir`` trained, from its ``timing.json``; None without one.

    Returns a dict: ``timed_steps`` (int, steps covered by the record), ``first_step`` (int, the
    step the first recorded segment started from: 0 when the whole run was timed),
    ``wall_minutes`` and ``cpu_minutes`` (float, summed over the segments).
    """
    segments = read_segments(root_dir)
    if not segments:
        return None
    return {"timed_steps": int(sum(s["to_step"] - s["from_step"] for s in segments)),
            "first_step": int(min(s["from_step"] for s in segments)),
            "wall_minutes": round(sum(s["wall_seconds"] for s in segments) / 60.0, 6),
            "cpu_minutes": round(sum(s["cpu_seconds"] for s in segments) / 60.0, 6)}
