"""Evaluate goal-reaching policies over a goal set: methods × planning models × seeds.

Every episode becomes one record of the results file (:mod:`mbold_tf.eval.results`), written
under ``out_dir`` as ``results.json`` after every (method, model, seed) block, so a killed
evaluation keeps what it finished and a rerun with the same goals and seeds resumes after it.
``table.md`` is rendered from that file by :mod:`mbold_tf.eval.report` (exactly what
``launch.report`` prints for it). GIFs of the first episodes of each cell go to ``out_dir/gifs``.

The CEM planners run with each of ``planning_models``: 'predictor' (the trained video predictor)
and/or 'simulator' (PRIVILEGED: the true simulator, :mod:`mbold_tf.envs.simulator`), on the same
goals and seeds, which is the control-centric upper bound of each cost.
"""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from absl import logging
import gin

from mbold_tf.agents import checkpoints
from mbold_tf.envs import goals as goals_lib
from mbold_tf.eval import episode_runner
from mbold_tf.eval import goal_eval
from mbold_tf.eval import report
from mbold_tf.eval import results as results_lib
from mbold_tf.planning import cem
from mbold_tf.planning import costs
from mbold_tf.planning import factory

RESULTS_NAME = "results.json"
TABLE_NAME = "table.md"


class EvaluationSetupError(ValueError):
    """A bad evaluation request (names, missing models, a results file of other goals), found
    before any episode runs; launchers print it without a traceback."""


def evaluation_grid(methods: Sequence[str], planning_models: Sequence[str]
                    ) -> List[Tuple[str, str]]:
    """The (method, model) cells to run, in order: each planner once per planning model it can
    use, each model-free method once with model 'none'. Raises ValueError for unknown names and
    for a grid in which a requested method has no valid cell."""
    cells = []
    for method in methods:
        if method not in factory.METHODS:
            raise EvaluationSetupError(f"Unknown method {method!r}; choose from {factory.METHODS}.")
        if method not in factory.PLANNERS:
            cells.append((method, "none"))
            continue
        usable = [m for m in planning_models
                  if not (method in factory.SIMULATOR_ONLY and m != "simulator")]
        for model in planning_models:
            if model not in factory.PLANNING_MODELS:
                raise EvaluationSetupError(f"Unknown planning model {model!r}; choose from "
                                 f"{factory.PLANNING_MODELS}.")
        if not usable:
            raise EvaluationSetupError(f"Method {method!r} needs the simulator model; add 'simulator' "
                             f"to the planning models (--models=predictor,simulator).")
        cells += [(method, m) for m in usable]
    return cells


def planner_config() -> Dict[str, Any]:
    """The planner settings in force: CEMConfig fields, make_policy's gin bindings, and
    make_cost's and load_models' gin bindings as 'make_cost.<name>' (which Q the
    learned-distance cost reads) and 'load_models.<name>' (the models' precision)."""
    config = dataclasses.asdict(cem.CEMConfig())
    config.update({k: v for k, v in sorted(gin.get_bindings(factory.make_policy).items())})
    config.update({f"make_cost.{k}": v
                   for k, v in sorted(gin.get_bindings(costs.make_cost).items())})
    config.update({f"load_models.{k}": v
                   for k, v in sorted(gin.get_bindings(checkpoints.load_models).items())})
    return config


def resumable(out_dir: str, header: Mapping[str, Any]) -> List[Dict[str, Any]]:
    """Episodes of an earlier run in ``out_dir`` over the same goals and planner, for the seeds
    this run asks for (so ``--seeds=1`` can be extended to ``--seeds=3``), else []."""
    path = os.path.join(out_dir, RESULTS_NAME)
    if not os.path.exists(path):
        return []
    old = results_lib.load_results(path)
    keys = ("task", "hard", "goal_seed", "goal_indices", "planner_config")
    if any(old["header"].get(k) != header.get(k) for k in keys):
        raise EvaluationSetupError(f"{path} holds an evaluation of other goals or planner settings; use "
                         f"another --out (or delete it to start over).")
    kept = [e for e in old["episodes"] if e["seed"] in header["seeds"]]
    logging.info("Resuming: %d of the %d episodes in %s are of seeds %s", len(kept),
                 len(old["episodes"]), path, header["seeds"])
    return kept


def evaluate_methods(goal_set: goals_lib.GoalSet, methods: Sequence[str],
                     models: Dict[str, Any], seeds: Sequence[int], out_dir: str,
                     num_gifs: int = 3, goal_indices: Optional[Sequence[int]] = None,
                     planning_models: Sequence[str] = ("predictor",), command: str = "",
                     planner_gin_files: Sequence[str] = (),
                     model_dirs: Optional[Mapping[str, str]] = None,
                     lockstep: int = 1) -> Dict[str, Any]:
    """Runs every (method, model) cell on every goal for every seed; returns the results dict.

    Args:
      goal_set: the task's test goals.
      methods: names from :data:`mbold_tf.planning.factory.METHODS`.
      models: trained models by role (see :func:`mbold_tf.planning.factory.make_policy`); the
        simulator model is built here when a cell needs it.
      seeds: policy seeds (the env is deterministic given the goal's start state).
      out_dir: where ``results.json``, ``table.md`` and GIFs go.
      num_gifs: the first goals saved as GIFs per cell (first seed only); every success and
        each cell and seed's first failure are saved too (:class:`goal_eval.GifChoice`).
      goal_indices: subset of goals (default: all).
      planning_models: 'predictor' and/or 'simulator' (PRIVILEGED) for the CEM planners.
      command, planner_gin_files, model_dirs: recorded in the results header (the command line,
        the planner's gin files, each model's run directory by role).
      lockstep: episodes of one cell (goals, then seeds) run together, their CEM samples
        predicted and scored as one batch (``factory.lockstep_supported`` cells; the others run
        one at a time); the records equal those of 1, the sequential path. Checked against
        the free memory before any episode runs.
    Returns:
      the results file's content: {'format', 'version', 'header', 'episodes'}.
    """
    cells = evaluation_grid(methods, planning_models)
    check_models(cells, {k for k, v in models.items() if v is not None})
    if lockstep < 1:
        raise EvaluationSetupError(f"--lockstep={lockstep}: the episodes run together must be "
                                   f">= 1.")
    indices = list(goal_indices if goal_indices is not None else range(len(goal_set)))
    header = results_lib.make_header(
        goal_set.task, goal_set.hard, goal_set.seed, len(goal_set), indices, seeds, command,
        planner_gin_files, planner_config(), model_dirs or {})
    episodes = resumable(out_dir, header)
    runner = episode_runner.EpisodeRunner(goal_set, models)
    try:
        if lockstep > 1:
            check_lockstep_memory(runner, cells, lockstep)
            for method, model in cells:
                if not factory.lockstep_supported(method, model):
                    logging.info("%s runs one episode at a time (lockstep covers the planners "
                                 "with the predictor and %s).", report.cell_name((method, model)),
                                 factory.LOCKSTEP_MODEL_FREE)
        gif_choice = goal_eval.GifChoice(num_gifs, first_seed=int(seeds[0]))
        positions = {int(g): n for n, g in enumerate(indices)}
        for method, model, block in _blocks(cells, seeds, indices, episodes, lockstep):
            t0 = time.time()
            gif_dir = os.path.join(out_dir, "gifs")
            if lockstep > 1 and factory.lockstep_supported(method, model):
                records = runner.run_lockstep(
                    method, model, block, gif_dir=gif_dir, gif_choice=gif_choice,
                    goal_positions=positions)
            else:
                seed = block[0][0]
                records = runner.run_goals(method, model, seed, [g for _, g in block],
                                           gif_dir=gif_dir,
                                           num_gifs=num_gifs if seed == seeds[0] else 0)
            episodes = canonical_order(episodes + records, cells, seeds, indices)
            results_lib.write_results(os.path.join(out_dir, RESULTS_NAME), header, episodes)
            logging.info("%s: %d episodes (seeds %s): %d successes (%.1f s/episode)",
                         report.cell_name((method, model)), len(block),
                         sorted({s for s, _ in block}), sum(r["success"] for r in records),
                         (time.time() - t0) / max(len(block), 1))
    finally:
        runner.close()
    return write_table(out_dir, os.path.join(out_dir, RESULTS_NAME))


def _blocks(cells, seeds, indices, episodes, lockstep: int):
    """Yields (method, model, [(seed, goal index), ...]): the episodes not in ``episodes``,
    seed-major. One seed's goals of one cell per block when ``lockstep`` is 1 or the cell runs
    one episode at a time; else up to ``lockstep`` episodes of one cell over as many seeds as
    fit (after each group of seeds every cell has the same episodes)."""
    done = {(e["method"], e["model"], e["seed"], e["goal_index"]) for e in episodes}
    per_group = max(1, -(-lockstep // max(len(indices), 1)))  # seeds run together
    for first in range(0, len(seeds), per_group):
        group = list(seeds[first:first + per_group])
        for method, model in cells:
            batched = lockstep > 1 and factory.lockstep_supported(method, model)
            for seed_list in ([group] if batched else [[s] for s in group]):
                todo = [(int(s), int(g)) for s in seed_list for g in indices
                        if (method, model, s, g) not in done]
                size = lockstep if batched else max(len(todo), 1)
                for start in range(0, len(todo), size):
                    yield method, model, todo[start:start + size]


def canonical_order(episodes, cells, seeds, indices) -> List[Dict[str, Any]]:
    """The records in the sequential path's order (seed, cell, goal); records of cells, seeds
    or goals outside the run (kept from an earlier run) stay first, in their order."""
    cell_pos = {c: i for i, c in enumerate(cells)}
    seed_pos = {s: i for i, s in enumerate(seeds)}
    goal_pos = {g: i for i, g in enumerate(indices)}

    def key(e):
        k = (seed_pos.get(e["seed"]), cell_pos.get((e["method"], e["model"])),
             goal_pos.get(e["goal_index"]))
        return (1,) + k if None not in k else (0, 0, 0, 0)

    return sorted(episodes, key=key)  # stable: the outside records keep their order


def check_lockstep_memory(runner: episode_runner.EpisodeRunner, cells, lockstep: int,
                          available: Optional[int] = None) -> None:
    """Raises EvaluationSetupError naming ``--lockstep`` and the estimated memory when a CEM
    iteration of ``lockstep`` episodes of a lockstep planner cell (``lockstep`` × N samples ×
    :meth:`MPCPolicy.sample_memory_bytes`) exceeds ``available`` bytes (default: the system's
    MemAvailable)."""
    available = _available_memory() if available is None else available
    for method, model in cells:
        if method not in factory.PLANNERS or not factory.lockstep_supported(method, model):
            continue
        policy = runner.lockstep_policy(method, model)
        per_sample = policy.sample_memory_bytes()
        samples = lockstep * cem.CEMConfig().num_samples
        need = samples * per_sample
        logging.info("Lockstep %d: %s needs about %.2f GB per CEM iteration (%d samples × "
                     "%.2f MB); %.2f GB available", lockstep, method, need / 1e9, samples,
                     per_sample / 1e6, available / 1e9)
        if need > available:
            fits = max(1, int(available // max(per_sample * cem.CEMConfig().num_samples, 1)))
            raise EvaluationSetupError(
                f"--lockstep={lockstep} would need about {need / 1e9:.1f} GB for one CEM "
                f"iteration of {method!r} ({samples} samples × {per_sample / 1e6:.2f} MB, the "
                f"predictor and cost's estimated working memory), more than the "
                f"{available / 1e9:.1f} GB available; use --lockstep={fits} or less.")


def _available_memory() -> int:
    """Bytes of MemAvailable in /proc/meminfo (int; where unreadable, a warning and 2**62)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    logging.warning("No MemAvailable in /proc/meminfo: the lockstep memory check is skipped.")
    return 2 ** 62


def check_models(cells: Sequence[Tuple[str, str]], available: set) -> None:
    """Raises EvaluationSetupError, before any episode runs, when a cell needs a trained model
    whose role is not in ``available`` (the simulator is built, never trained)."""
    if not cells:
        raise EvaluationSetupError("No methods to evaluate.")
    for method, model in cells:
        need = [k for k in factory.requires(method, "predictor" if model == "none" else model)
                if k != "simulator"]
        missing = [k for k in need if k not in available]
        if missing:
            raise EvaluationSetupError(f"Method {method!r} needs trained model(s) {missing}; "
                                       f"pass their run directories (e.g. --{missing[0]}_dir).")


def write_table(out_dir: str, path: str) -> Dict[str, Any]:
    """Renders ``out_dir/table.md`` from the results file at ``path``; returns its content."""
    data = results_lib.load_results(path)
    with open(os.path.join(out_dir, TABLE_NAME), "w") as f:
        f.write(report.render_one(data))
    return data
