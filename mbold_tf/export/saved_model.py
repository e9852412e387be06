"""Export a goal-reaching policy (CEM-MPC with its predictor and distance inside) as a SavedModel.

``export_policy`` writes a TF-Agents ``PolicySaver`` SavedModel plus ``mbold_export.json`` (format
version, observation keys/shapes/dtypes, action bounds, the policy state's spec, and the facts the
caller passes as ``info``, e.g. task and training runs). The robot loads it
with TensorFlow alone through :mod:`mbold_tf.export.robot_side`, a single file that imports only
numpy and tensorflow.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from typing import Any, Dict, Iterator, Optional

import numpy as np
import tensorflow as tf
from tf_agents.policies import policy_saver
from tf_agents.policies import tf_policy

from mbold_tf.export import robot_side

EXPORT_FORMAT_VERSION = robot_side.EXPORT_FORMAT_VERSION
METADATA_FILE = robot_side.METADATA_FILE


# Library warnings of every export that carry no information for these policies:
_EXPORT_NOISE = re.compile("|".join((
    # Our policies are deterministic (they implement _action only); PolicySaver still tries to
    # trace a distribution and warns that it cannot.
    r"Could not serialize policy\.distribution\(\)",
    # TF renames the nested time-step arguments ("0/step_type") of PolicySaver's signatures.
    r"is not a valid tf\.function parameter name",
    # Models are exported through the policy's traced functions, not as Keras layers.
    r"Skipping full serialization of Keras layer",
)))


class _DropExportNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not _EXPORT_NOISE.search(record.getMessage())


@contextlib.contextmanager
def _quiet_export() -> Iterator[None]:
    """Drops :data:`_EXPORT_NOISE` from the absl and TensorFlow loggers inside the block."""
    loggers = [logging.getLogger(name) for name in ("absl", "tensorflow")]
    noise = _DropExportNoise()
    for logger in loggers:
        logger.addFilter(noise)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(noise)


def _spec_json(spec) -> Dict[str, Any]:
    return {"shape": [int(d) for d in spec.shape], "dtype": spec.dtype.name}


def export_policy(policy: tf_policy.TFPolicy, export_dir: str,
                  info: Optional[Dict[str, Any]] = None) -> str:
    """Saves ``policy`` to ``export_dir`` (a SavedModel) and writes its metadata JSON.

    Args:
      policy: a TFPolicy whose observation is a dict of tensors (e.g. ``MPCPolicy``). Every model
        it calls must be tracked by it (pass them as ``models=``), or saving fails.
      export_dir: output directory (created; an existing export is replaced).
      info: extra JSON-able facts to record (task, preset, training runs, ...).
    Returns:
      ``export_dir``.
    """
    obs_spec = policy.time_step_spec.observation
    if not isinstance(obs_spec, dict):
        raise ValueError("export_policy expects a dict observation spec (image, goal_image, ...);"
                         f" got {type(obs_spec).__name__}.")
    version = tf.Variable(EXPORT_FORMAT_VERSION, dtype=tf.int64, trainable=False,
                          name="export_format_version")
    with _quiet_export():
        saver = policy_saver.PolicySaver(policy, batch_size=None,
                                         metadata={"export_format_version": version})
        if tf.io.gfile.exists(export_dir):
            tf.io.gfile.rmtree(export_dir)
        saver.save(export_dir)
    spec = policy.action_spec
    meta = {
        "format_version": EXPORT_FORMAT_VERSION,
        "observation": {k: _spec_json(v) for k, v in obs_spec.items()},
        "action": {**_spec_json(spec),
                   "minimum": np.broadcast_to(spec.minimum, spec.shape).tolist(),
                   "maximum": np.broadcast_to(spec.maximum, spec.shape).tolist()},
        "policy_state": {k: _spec_json(v) for k, v in
                         _flatten_state_spec(policy.policy_state_spec).items()},
        "info": info or {},
    }
    with open(os.path.join(export_dir, METADATA_FILE), "w") as f:
        json.dump(meta, f, indent=1)
    return export_dir


def _flatten_state_spec(spec) -> Dict[str, Any]:
    if not spec:
        return {}
    if isinstance(spec, dict):
        return dict(spec)
    return {str(i): s for i, s in enumerate(tf.nest.flatten(spec))}
