"""The per-episode results file of a goal-set evaluation, and where its numbers came from.

One JSON file per evaluation run (``launch.evaluate``), small enough to commit, from which every
table can be recomputed (``launch.report``)::

    {"format": "mbold-eval-episodes", "version": 1,
     "header": {"task", "hard", "goal_seed", "num_goals", "goal_indices", "seeds", "command",
                "date", "machine", "planner_gin_files", "planner_config", "models"},
     "episodes": [{"method", "model", "cost", "goal_index", "seed", "success",
                   "start_object_distance", "object_distance", "start_arm_distance",
                   "arm_distance", "object_displacement", "object_moved", "seconds"}, ...]}

``model`` is 'predictor' (the trained video predictor), 'simulator' (PRIVILEGED: the true
simulator as the planner's model) or 'none' (model-free policies). ``header.models`` records, per
trained model, its run directory, checkpoint step, training dataset and stored settings.
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import re
import sys
from typing import Any, Dict, List, Mapping, Optional, Sequence

from mbold_tf.utils import flops, run_config, timing

FORMAT = "mbold-eval-episodes"
VERSION = 1
HEADER_FIELDS = ("task", "hard", "goal_seed", "num_goals", "goal_indices", "seeds", "command",
                 "date", "machine", "planner_gin_files", "planner_config", "models")
EPISODE_FIELDS = ("method", "model", "cost", "goal_index", "seed", "success",
                  "start_object_distance", "object_distance", "start_arm_distance",
                  "arm_distance", "object_displacement", "object_moved", "seconds")


BINARY_FIELDS = ("success", "object_moved")  # each 0 or 1 (JSON false/true read as 0/1)


class ResultsFormatError(ValueError):
    """A results file of another format or version, one missing a field, or a field with a value
    it cannot hold (a success of 2 would be counted twice)."""


def machine_description() -> Dict[str, Any]:
    """dict: host OS, Python, CPU model, logical cores, and the GPUs TensorFlow sees."""
    cpu = flops.cpu_model()
    gpus: List[str] = []
    if "tensorflow" in sys.modules:
        import tensorflow as tf  # pylint: disable=g-import-not-at-top
        gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    return {"platform": platform.platform(terse=True), "python": platform.python_version(),
            "cpu": cpu, "cores": os.cpu_count(), "gpus": gpus}


def describe_run(root_dir: Optional[str]) -> Optional[Dict[str, Any]]:
    """dict describing a trained model's run directory (None for None).

    Keys: dir, step (of the newest checkpoint ``ckpt-<step>``, None without one), dataset (the
    ``*.dataset`` binding in the run's gin record, None when absent), ``training_time``
    (:func:`mbold_tf.utils.timing.training_time`) when the run recorded one, and ``settings``
    (the model's constructor settings from its ``config.json``, e.g. the distance's ``gamma``)
    when the run stored them.
    """
    if not root_dir:
        return None
    dirs = run_config.split_runs(root_dir)
    if len(dirs) > 1:
        return _describe_ensemble([describe_run(d) for d in dirs])
    step = None
    ckpt_file = os.path.join(root_dir, "ckpt", "checkpoint")
    if os.path.exists(ckpt_file):
        with open(ckpt_file) as f:
            match = re.search(r'model_checkpoint_path:\s*"[^"]*ckpt-(\d+)"', f.read())
        step = int(match.group(1)) if match else None
    dataset = None
    for name in sorted(os.listdir(root_dir)) if os.path.isdir(root_dir) else []:
        if name.endswith(".gin"):
            with open(os.path.join(root_dir, name)) as f:
                match = re.search(r"^\w+\.dataset\s*=\s*'([^']+)'", f.read(), re.M)
            dataset = match.group(1) if match else dataset
    described = {"dir": os.path.normpath(root_dir), "step": step, "dataset": dataset}
    timed = timing.training_time(root_dir) if os.path.isdir(root_dir) else None
    if timed is not None:
        described["training_time"] = timed
    config = run_config.config_path(root_dir)
    if os.path.exists(config):
        with open(config) as f:
            described["settings"] = json.load(f)["settings"]
    return described


def _describe_ensemble(members: Sequence[Mapping[str, Any]]) -> Dict[str, Any]:
    """The description of an ensemble of runs (:func:`describe_run` of each, in ``members``).

    ``dir`` joins the members' directories with commas; ``step`` and ``dataset`` are the
    members' common value, or their values joined by '/' when they differ; ``training_time``
    sums the members' (the ensemble's whole training cost) when every member recorded one;
    ``settings`` are the members' common settings plus ``ensemble_size``.
    """
    def common(key):
        values = [m.get(key) for m in members]
        return values[0] if len(set(map(repr, values))) == 1 else "/".join(map(str, values))

    described = {"dir": run_config.RUN_SEPARATOR.join(m["dir"] for m in members),
                 "step": common("step"), "dataset": common("dataset"),
                 "members": [dict(m) for m in members]}
    times = [m.get("training_time") for m in members]
    if all(times):
        described["training_time"] = {
            "timed_steps": sum(t["timed_steps"] for t in times),
            "first_step": max(t["first_step"] for t in times),
            "wall_minutes": round(sum(t["wall_minutes"] for t in times), 6),
            "cpu_minutes": round(sum(t["cpu_minutes"] for t in times), 6)}
    settings = [m.get("settings") for m in members]
    if all(x is not None for x in settings):
        shared = {k: v for k, v in settings[0].items()
                  if all(x.get(k) == v for x in settings[1:])}
        described["settings"] = dict(shared, ensemble_size=len(members))
    return described


def make_header(task: str, hard: bool, goal_seed: int, num_goals: int,
                goal_indices: Sequence[int], seeds: Sequence[int], command: str,
                planner_gin_files: Sequence[str], planner_config: Mapping[str, Any],
                models: Mapping[str, Optional[str]]) -> Dict[str, Any]:
    """The header dict; ``models`` maps a role ('predictor', 'distance', ...) to its run dir."""
    return {"task": task, "hard": bool(hard), "goal_seed": int(goal_seed),
            "num_goals": int(num_goals), "goal_indices": [int(i) for i in goal_indices],
            "seeds": [int(s) for s in seeds], "command": command,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": machine_description(),
            "planner_gin_files": [str(f) for f in planner_gin_files],
            "planner_config": dict(planner_config),
            "models": {role: describe_run(path) for role, path in sorted(models.items())
                       if path}}


def episode_record(method: str, model: str, cost: str, seed: int,
                   metrics: Mapping[str, float], seconds: float) -> Dict[str, Any]:
    """One episode's record from the env's ``episode_metrics()`` at its final step."""
    record = {"method": method, "model": model, "cost": cost,
              "goal_index": int(metrics["goal_index"]), "seed": int(seed),
              "success": int(round(metrics["success"])), "seconds": round(float(seconds), 2)}
    for key in ("start_object_distance", "object_distance", "start_arm_distance",
                "arm_distance", "object_displacement"):
        record[key] = round(float(metrics[key]), 5)
    record["object_moved"] = int(round(metrics["object_moved"]))
    return {k: record[k] for k in EPISODE_FIELDS}


def write_results(path: str, header: Mapping[str, Any],
                  episodes: Sequence[Mapping[str, Any]]) -> None:
    """Writes the results file atomically (a killed run leaves the previous file intact)."""
    data = {"format": FORMAT, "version": VERSION, "header": dict(header),
            "episodes": [dict(e) for e in episodes]}
    validate(data, path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, sort_keys=False)
        f.write("\n")
    os.replace(tmp, path)


def validate(data: Any, path: str) -> None:
    """Raises ResultsFormatError naming ``path`` and the field when ``data`` is not version 1."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise ResultsFormatError(f"{path}: not an mbold evaluation results file (format "
                                 f"{found!r}, expected {FORMAT!r}); write it with "
                                 f"python -m launch.evaluate.")
    if data.get("version") != VERSION:
        raise ResultsFormatError(f"{path}: results format version {data.get('version')!r}; "
                                 f"this code reads version {VERSION}. Re-run the evaluation "
                                 f"with this version of launch.evaluate.")
    for key in ("header", "episodes"):
        if key not in data:
            raise ResultsFormatError(f"{path}: missing field {key!r}.")
    for field in HEADER_FIELDS:
        if field not in data["header"]:
            raise ResultsFormatError(f"{path}: header is missing field {field!r}.")
    for i, episode in enumerate(data["episodes"]):
        for field in EPISODE_FIELDS:
            if field not in episode:
                raise ResultsFormatError(f"{path}: episode {i} is missing field {field!r}.")
        for field in BINARY_FIELDS:
            value = episode[field]
            # bool is an int; 0.0/1.0 floats and strings ("1", "yes") are refused, not guessed.
            if type(value) not in (int, bool) or value not in (0, 1):
                raise ResultsFormatError(
                    f"{path}: episode {i} ({episode.get('method')!r}, goal "
                    f"{episode.get('goal_index')!r}, seed {episode.get('seed')!r}) has "
                    f"{field} = {value!r}; it must be 0 or 1 (or false/true). Fix the file or "
                    f"re-run the evaluation.")


def load_results(path: str) -> Dict[str, Any]:
    """Reads and validates a results file; errors name the file (and the field)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"No results file at {path}; write one with "
                                f"python -m launch.evaluate --out=...")
    with open(path) as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as e:
            raise ResultsFormatError(f"{path}: not valid JSON ({e}).") from None
    validate(data, path)
    return data
