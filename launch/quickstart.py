"""The main job on the default task: collect → TFDS → predictor → distance → evaluate → export.

    python -m launch.quickstart --preset=smoke   # minutes; used by a test
    python -m launch.quickstart --preset=cpu     # the default (this 2-core CPU: see README)

Stages: build the TFDS dataset of random correlated-noise episodes, train the video predictor and
the CQL-TD3 distance (gin presets ``gin/presets/<tiny|cpu>/``), generate the task's seeded test
goals, evaluate MBOLD, Visual Foresight, the Q-function-only policy and a random policy with
TF-Agents drivers over several seeds, print the table, export the MBOLD planner as a SavedModel
and check it loads and acts. Everything is written under ``--out``; rerunning resumes the
trainings from their checkpoints (a killed run loses nothing).
"""
import json
import os
import sys
import time

from absl import app
from absl import flags
from absl import logging
import gin

import mbold_tf
from launch import common
from mbold_tf.data.build import build
from mbold_tf.envs import goals
from mbold_tf.eval import report
from mbold_tf.eval import policy_eval
from mbold_tf.export import robot_side
from mbold_tf.export import planner_export
from mbold_tf.envs import goal_env
from mbold_tf.envs import tasks
from mbold_tf.agents import checkpoints

PRESETS = {
    # dataset size, gin preset folder, test goals, evaluation seeds, methods
    "smoke": {"dataset": "tiny", "gin": "tiny", "goals": 2, "seeds": 1,
              "methods": ["mbold", "vf", "q_only", "random"]},
    # Planning costs tens of seconds per episode on 2 CPU cores (README, main job), so the
    # CPU main job evaluates a handful of goals; use launch.evaluate for more goals/seeds.
    "cpu": {"dataset": "cpu", "gin": "cpu", "goals": 5, "seeds": 1,
            "methods": ["mbold", "vf", "q_only", "random"]},
}
flags.DEFINE_enum("preset", "cpu", sorted(PRESETS), "Size preset.")
flags.DEFINE_enum("task", "push1", sorted(tasks.TASKS), "Task (the default task is push1).")
flags.DEFINE_string("out", None, "Output directory (default artifacts/quickstart_<preset>, so "
                    "presets never share trained models).")
flags.DEFINE_string("data_dir", None, "TFDS data dir (default ~/tensorflow_datasets).")
flags.DEFINE_integer("goals", None, "Override the preset's number of test goals.")
flags.DEFINE_integer("seeds", None, "Override the preset's number of evaluation seeds.")
FLAGS = flags.FLAGS


def _gin_files(preset_dir: str):
    root = os.path.join(mbold_tf.REPO_ROOT, "gin", "presets", preset_dir)
    return [os.path.join(root, f"{part}.gin") for part in ("predictor", "distance", "planner")]


def run(task: str, preset: str, out: str, data_dir=None, num_goals=None, seeds=None) -> dict:
    """Runs every stage; returns the summary dict (dataset stats, timings, table, export)."""
    # Imported here so that `--help` stays fast and the package import order stays one-way.
    from mbold_tf.training import distance as distance_training  # pylint: disable=g-import-not-at-top
    from mbold_tf.training import predictor as predictor_training  # pylint: disable=g-import-not-at-top

    cfg = PRESETS[preset]
    num_goals = num_goals or cfg["goals"]
    seeds = seeds or cfg["seeds"]
    os.makedirs(out, exist_ok=True)
    gin.clear_config()
    dataset = f"mbold_tabletop/{task}_{cfg['dataset']}"
    # The task picks the dataset: bound through gin (after the preset's own binding), so the
    # operative config, not a silent keyword argument, records what the trainings read.
    gin.parse_config_files_and_bindings(
        _gin_files(cfg["gin"]), [f"train_predictor.dataset = '{dataset}'",
                                 f"train_distance.dataset = '{dataset}'"]
        + [f"{fn}.data_dir = '{data_dir}'" for fn in ("train_predictor", "train_distance")
           if data_dir])
    timings = {}
    t0 = time.time()

    def stage(name, n, fn):
        logging.info("[%d/6] %s", n, name)
        start = time.time()
        result = fn()
        timings[name] = round(time.time() - start, 1)
        logging.info("[%d/6] %s done in %.1f s", n, name, timings[name])
        return result

    data_stats = stage("dataset", 1, lambda: build(f"{task}_{cfg['dataset']}", data_dir))
    predictor_dir = os.path.join(out, "runs", "predictor")
    distance_dir = os.path.join(out, "runs", "distance")
    stage("train_predictor", 2, lambda: predictor_training.train_predictor(predictor_dir))
    stage("train_distance", 3, lambda: distance_training.train_distance(distance_dir))
    goal_set = stage("goals", 4, lambda: goals.generate_goal_set(task, num_goals=num_goals,
                                                                seed=0))
    goal_set.save(os.path.join(out, f"goals_{task}.npz"))
    models = checkpoints.load_models({"predictor": predictor_dir, "distance": distance_dir})
    command = (f"python -m launch.quickstart --preset={preset} --task={task} --out={out}"
               + (f" --goals={num_goals}" if num_goals != cfg["goals"] else "")
               + (f" --seeds={seeds}" if seeds != cfg["seeds"] else ""))
    evaluation = stage("evaluate", 5, lambda: policy_eval.evaluate_methods(
        goal_set, cfg["methods"], models, list(range(seeds)), out, num_gifs=2,
        command=command, planner_gin_files=[os.path.relpath(f, mbold_tf.REPO_ROOT)
                                            for f in _gin_files(cfg["gin"])[2:]],
        model_dirs={"predictor": predictor_dir, "distance": distance_dir}))
    table = report.summary_rows(evaluation["episodes"])

    def export():
        path = planner_export.export(task, "mbold", models,
                                     os.path.join(out, "export", f"{task}_mbold"),
                                     info={"preset": preset})
        robot = robot_side.RobotPolicy(path)  # loads with TensorFlow alone and acts
        env = goal_env.GoalConditionedPyEnvironment(goal_set)
        try:
            time_step = env.reset()
            robot.reset()
            action = robot.act(time_step.observation)
        finally:
            env.close()
        return {"path": path, "first_action": [round(float(a), 4) for a in action]}

    exported = stage("export", 6, export)
    summary = {"task": task, "preset": preset, "dataset": data_stats, "table": table,
               "timings_s": timings, "export": exported, "seconds": round(time.time() - t0, 1),
               "goals": num_goals, "seeds": seeds, "gin": gin.config_str()}
    return write_summary(out, summary)


SUMMARY_NAME = "summary.json"


def write_summary(out: str, summary: dict) -> dict:
    """Writes ``out/summary.json`` (atomically) and returns what it wrote.

    ``timings_s`` and ``seconds`` are this run's; ``runs`` lists every run of ``out``, oldest
    first (date, stage seconds, total seconds), so a rerun, whose resumed trainings take
    seconds, keeps the first run's stage times.
    """
    path = os.path.join(out, SUMMARY_NAME)
    earlier = []
    if os.path.exists(path):
        with open(path) as f:
            previous = json.load(f)
        earlier = previous.get("runs") or [
            {"date": None, "timings_s": previous.get("timings_s"),
             "seconds": previous.get("seconds")}]
    this_run = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                "timings_s": summary["timings_s"], "seconds": summary["seconds"]}
    summary = dict(summary, runs=earlier + [this_run])
    with open(path + ".tmp", "w") as f:
        json.dump(summary, f, indent=1)
    os.replace(path + ".tmp", path)
    return summary


def default_out(preset: str) -> str:
    """The default output directory of a preset (one per preset, so runs never collide)."""
    return os.path.join("artifacts", f"quickstart_{preset}")


def main(argv):
    del argv
    from mbold_tf.utils import run_config  # pylint: disable=g-import-not-at-top

    out = FLAGS.out or default_out(FLAGS.preset)
    with common.user_errors("launch.quickstart"):  # one message per failure
        try:
            summary = run(FLAGS.task, FLAGS.preset, out, FLAGS.data_dir, FLAGS.goals,
                          FLAGS.seeds)
        except run_config.ConfigMismatchError as e:
            sys.exit(f"launch.quickstart: {e}\n{out!r} holds models trained with other "
                     f"settings; pass another --out (e.g. --out={out}_2) or delete it.")
    with open(os.path.join(out, policy_eval.TABLE_NAME)) as f:
        print(f.read())
    print(f"Stage times (s): {summary['timings_s']}")
    if len(summary["runs"]) > 1:
        print(f"  (this run, which resumed; the first run's: {summary['runs'][0]['timings_s']}; "
              f"every run's in {os.path.join(out, SUMMARY_NAME)})")
    print(f"Exported planner: {summary['export']['path']}; the TensorFlow-only runner "
          f"(mbold_tf/export/robot_side.py) loaded it and acted: first action "
          f"{summary['export']['first_action']}.")
    print(f"Results in {out} ({summary['seconds']} s).")


if __name__ == "__main__":
    app.run(main)
