"""The goal-set evaluation as an Apache Beam pipeline: one element per episode.

:func:`evaluate_methods_on_beam` runs the same episodes as
:func:`mbold_tf.eval.policy_eval.evaluate_methods` — every (method, planning model) cell on every
goal for every seed — as ``(seed, cell, goal)`` elements of a Beam pipeline on any runner
(DirectRunner with several processes here; Dataflow, Flink or Spark on a cluster). Each worker
loads the models, the environment and (when a cell needs it) the simulator once, in
``DoFn.setup``, and keeps one policy per (method, model, seed). Policies are seeded per step
(stateless sampling keyed on the seed and the episode's step), so an episode's outcome does not
depend on which worker runs it or what it ran before: the per-episode results equal the
sequential path's (a test checks it), and are written to the same ``results.json`` (in the
sequential order) that ``launch.report`` reads.

The run directories, ``out_dir`` and the goal file must be paths that every worker can read
(and, for ``out_dir``, write): local paths for DirectRunner, a shared file system or bucket on a
cluster.
"""
from __future__ import annotations

import glob
import json
import os
from typing import Any, Dict, Mapping, Optional, Sequence

from absl import logging
import apache_beam as beam
import gin

from mbold_tf.agents import checkpoints
from mbold_tf.envs import goals as goals_lib
from mbold_tf.eval import episode_runner
from mbold_tf.eval import goal_eval
from mbold_tf.eval import policy_eval
from mbold_tf.eval import results as results_lib
from mbold_tf.utils import beam as beam_utils

GOALS_NAME = "goals.npz"
PENDING_GIFS = os.path.join("gifs", "pending")
SHARDS_DIR = "beam_episodes"


class EpisodeFn(beam.DoFn):
    """Loads models and environment once per worker; yields one JSON record per episode.

    Elements: ``(seed_pos, cell_pos, goal_pos, method, model, seed, goal_index)``; outputs
    ``{"key": [seed_pos, cell_pos, goal_pos], "record": episode_record}`` as JSON.
    """

    def __init__(self, goal_file: str, model_dirs: Mapping[str, Optional[str]],
                 gin_config: str, out_dir: str):
        super().__init__()
        self.goal_file, self.model_dirs = goal_file, dict(model_dirs)
        self.gin_config, self.out_dir = gin_config, out_dir
        self.runner = None

    def setup(self):
        # Worker processes start without the launcher's gin bindings or TF state.
        os.environ.setdefault("MUJOCO_GL", "egl")
        from mbold_tf.planning import configurables  # noqa: F401  pylint: disable=g-import-not-at-top
        gin.clear_config()
        gin.parse_config(self.gin_config)
        goal_set = goals_lib.GoalSet.load(self.goal_file)
        models = checkpoints.load_models(self.model_dirs)
        self.runner = episode_runner.EpisodeRunner(goal_set, models)

    def process(self, element):
        seed_pos, cell_pos, goal_pos, method, model, seed, goal_index = element
        # Every episode's GIF waits in gifs/pending/; once all have run, _keep_gifs keeps
        # those the sequential path keeps (which failure is a seed's first is known only then).
        record, = self.runner.run_goals(method, model, seed, [goal_index],
                                        gif_dir=os.path.join(self.out_dir, PENDING_GIFS),
                                        num_gifs=1)
        yield json.dumps({"key": [seed_pos, cell_pos, goal_pos], "record": record})

    def teardown(self):
        if self.runner is not None:
            self.runner.close()


def evaluate_methods_on_beam(goal_set: goals_lib.GoalSet, methods: Sequence[str],
                             model_dirs: Mapping[str, Optional[str]], seeds: Sequence[int],
                             out_dir: str, beam_pipeline_options: str, num_gifs: int = 0,
                             planning_models: Sequence[str] = ("predictor",),
                             command: str = "", planner_gin_files: Sequence[str] = ()
                             ) -> Dict[str, Any]:
    """Evaluates on Beam and writes ``out_dir/results.json`` and ``table.md``; returns the
    results dict (as :func:`policy_eval.evaluate_methods`).

    Args:
      goal_set, methods, seeds, out_dir, num_gifs, planning_models, command, planner_gin_files:
        as :func:`policy_eval.evaluate_methods`.
      model_dirs: run directories by role ('predictor', 'distance', 'vae', 'temporal', 'gcbc');
        each worker loads them.
      beam_pipeline_options: ``'runner=DirectRunner,direct_num_workers=2,...'``
        (:mod:`mbold_tf.utils.beam`); an unknown runner fails before any work starts.
    Raises:
      beam_utils.BeamOptionsError, policy_eval.EvaluationSetupError before any episode runs.
    """
    options = beam_utils.pipeline_options(beam_pipeline_options)
    cells = policy_eval.evaluation_grid(methods, planning_models)
    policy_eval.check_models(cells, {k for k, v in model_dirs.items() if v})
    indices = list(range(len(goal_set)))
    header = results_lib.make_header(
        goal_set.task, goal_set.hard, goal_set.seed, len(goal_set), indices, seeds, command,
        planner_gin_files, policy_eval.planner_config(), model_dirs)
    episodes = policy_eval.resumable(out_dir, header)
    done = {(e["method"], e["model"], e["seed"]) for e in episodes}
    work = [(si, ci, gi, method, model, int(seed), int(goal))
            for si, seed in enumerate(seeds) for ci, (method, model) in enumerate(cells)
            if (method, model, seed) not in done for gi, goal in enumerate(indices)]
    os.makedirs(out_dir, exist_ok=True)
    goal_file = os.path.join(out_dir, GOALS_NAME)
    goal_set.save(goal_file)
    shards = os.path.join(out_dir, SHARDS_DIR)
    for old in glob.glob(os.path.join(shards, "*")):
        os.remove(old)
    logging.info("Beam evaluation: %d episodes (%d cells × %d seeds × %d goals, %d done) on %s",
                 len(work), len(cells), len(seeds), len(indices),
                 len(episodes), beam_utils.runner_name(beam_pipeline_options))
    if work:
        dofn = EpisodeFn(goal_file, model_dirs, gin.config_str(), out_dir)
        with beam.Pipeline(options=options) as pipeline:
            _ = (pipeline
                 | "Episodes" >> beam.Create(work)
                 | "Spread" >> beam.Reshuffle()
                 | "Run" >> beam.ParDo(dofn)
                 | "Write" >> beam.io.WriteToText(os.path.join(shards, "episodes"),
                                                  file_name_suffix=".jsonl"))
    rows = []
    for path in sorted(glob.glob(os.path.join(shards, "episodes*.jsonl"))):
        with open(path) as f:
            rows += [json.loads(line) for line in f if line.strip()]
    if len(rows) != len(work):
        raise RuntimeError(f"The Beam pipeline returned {len(rows)} episodes of the {len(work)} "
                           f"it was given (shards in {shards}); nothing was written.")
    rows.sort(key=lambda r: tuple(r["key"]))
    by_block = {}
    for r in rows:
        by_block.setdefault(tuple(r["key"][:2]), []).append(r["record"])
    # Sequential order: seed-major, then cells, then goals (as policy_eval writes them).
    for si, seed in enumerate(seeds):
        for ci, cell in enumerate(cells):
            if (cell[0], cell[1], seed) not in done:
                episodes += by_block.get((si, ci), [])
    _keep_gifs(out_dir, rows, cells, seeds, indices, num_gifs)
    path = os.path.join(out_dir, policy_eval.RESULTS_NAME)
    results_lib.write_results(path, header, episodes)
    return policy_eval.write_table(out_dir, path)


def _keep_gifs(out_dir: str, rows, cells, seeds, indices, num_gifs: int) -> None:
    """Moves the pending GIFs that :class:`goal_eval.GifChoice` keeps (in the sequential order)
    into ``out_dir/gifs`` and deletes the others. ``rows``: the pipeline's outputs, sorted."""
    pending = os.path.join(out_dir, PENDING_GIFS)
    choice = goal_eval.GifChoice(num_gifs, first_seed=int(seeds[0]))
    for row in rows:
        si, ci, gi = row["key"]
        (method, model), seed = cells[ci], int(seeds[si])
        name = f"{episode_runner.gif_tag(method, model, seed)}goal{int(indices[gi])}.gif"
        src = os.path.join(pending, name)
        if not os.path.exists(src):
            continue
        if choice.keep((method, model, seed), gi, bool(row["record"]["success"]), seed):
            os.replace(src, os.path.join(out_dir, "gifs", name))
        else:
            os.remove(src)
    if os.path.isdir(pending) and not os.listdir(pending):
        os.rmdir(pending)
