"""A run directory's model configuration: written once, checked on resume and on load.

Every trained model (video predictor, distance agent, baselines) keeps its constructor settings in
``<root_dir>/config.json`` next to its checkpoints. Resuming a run or loading a model with other
settings then fails with a message that names each differing setting, instead of a cryptic
shape error from the checkpoint reader (or, worse, a silent partial restore).
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Mapping

CONFIG_NAME = "config.json"
RUN_SEPARATOR = ","  # joins the run directories of an ensemble


class ConfigMismatchError(ValueError):
    """The settings of a model differ from those its run directory was trained with."""


def normalise(value: Any) -> Any:
    """JSON round trip, so tuples and lists (and int/float keys) compare equal."""
    return json.loads(json.dumps(value, sort_keys=True))


def split_runs(root_dir: str) -> List[str]:
    """The run directories named by ``root_dir``: one path, or several joined by commas (an
    ensemble of runs, e.g. ``--distance_dir=runs/a,runs/b``), normalised, in order.

    Raises ConfigMismatchError for an empty part or a run named twice.
    """
    parts = [p.strip() for p in root_dir.split(RUN_SEPARATOR)]
    if any(not p for p in parts):
        raise ConfigMismatchError(f"{root_dir!r} has an empty run directory; separate the runs "
                                  f"of an ensemble with single commas, e.g. 'runs/a,runs/b'.")
    parts = [os.path.normpath(p) for p in parts]
    repeated = sorted({p for p in parts if parts.count(p) > 1})
    if repeated:
        raise ConfigMismatchError(f"{root_dir!r} names run(s) {repeated} more than once; an "
                                  f"ensemble averages distinct runs.")
    return parts


def config_path(root_dir: str) -> str:
    """Path of the run's configuration file."""
    return os.path.join(root_dir, CONFIG_NAME)


def read_config(root_dir: str, kind: str) -> Dict[str, Any]:
    """Returns the settings stored for ``kind`` (e.g. 'video_predictor') in ``root_dir``.

    Raises FileNotFoundError naming the directory if it holds no trained model.
    """
    path = config_path(root_dir)
    if not os.path.exists(path):
        raise FileNotFoundError(f"No model configuration at {path}: {root_dir!r} is not a "
                                f"training run directory (train one with launch.train_*).")
    with open(path) as f:
        stored = json.load(f)
    if stored.get("kind") != kind:
        raise ConfigMismatchError(f"{root_dir!r} holds a {stored.get('kind')!r} model, not a "
                                  f"{kind!r} model.")
    return stored["settings"]


def check_or_write_config(root_dir: str, kind: str, settings: Mapping[str, Any]) -> None:
    """Writes ``settings`` for a new run, or checks them against the stored ones.

    Raises ConfigMismatchError listing ``name: stored -> requested`` for every setting that
    differs, so a checkpoint is never restored into a model of another configuration.
    """
    settings = normalise(dict(settings))
    path = config_path(root_dir)
    if os.path.exists(path):
        stored = read_config(root_dir, kind)
        diff = {k: (stored.get(k, "<missing>"), settings.get(k, "<missing>"))
                for k in sorted(set(stored) | set(settings)) if stored.get(k) != settings.get(k)}
        if diff:
            lines = "; ".join(f"{k}: {a!r} (checkpoint) vs {b!r} (requested)"
                              for k, (a, b) in diff.items())
            raise ConfigMismatchError(
                f"The checkpoint in {root_dir!r} is from a {kind} with other settings: {lines}. "
                f"Use the same gin settings, or a new root_dir.")
        return
    os.makedirs(root_dir, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"kind": kind, "settings": settings}, f, indent=1, sort_keys=True)
    os.replace(tmp, path)
