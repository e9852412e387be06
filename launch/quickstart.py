"""The main job on the default task: data -> goals -> evaluation (grows with the pipeline).

    python -m launch.quickstart --preset=smoke   # minutes; used by a test
    python -m launch.quickstart --preset=cpu     # the default

Stages that exist today: build the TFDS dataset (random correlated-noise episodes), generate the
task's test goals, and evaluate the baseline policies (random) on them with TF-Agents drivers,
printing the success table and saving results (JSON, CSV, Markdown) under ``--out``.
"""
import json
import os
import time

from absl import app
from absl import flags
from absl import logging
from tf_agents.policies import random_py_policy

from mbold_tf.data.build import build
from mbold_tf.envs import goal_env
from mbold_tf.envs import goals
from mbold_tf.eval import goal_eval

PRESETS = {
    # dataset size, test goals, evaluation seeds
    "smoke": {"dataset": "tiny", "goals": 4, "seeds": 1},
    "cpu": {"dataset": "cpu", "goals": 100, "seeds": 3},
}
flags.DEFINE_enum("preset", "cpu", sorted(PRESETS), "Size preset.")
flags.DEFINE_string("task", "push1", "Task (the default task is push1).")
flags.DEFINE_string("out", "artifacts/quickstart", "Output directory.")
flags.DEFINE_string("data_dir", None, "TFDS data dir (default ~/tensorflow_datasets).")
FLAGS = flags.FLAGS


def run(task: str, preset: str, out: str, data_dir=None) -> dict:
    """Runs every stage; returns {'dataset': stats, 'table': rows}."""
    cfg = PRESETS[preset]
    os.makedirs(out, exist_ok=True)
    t0 = time.time()
    logging.info("[1/3] dataset mbold_tabletop/%s_%s", task, cfg["dataset"])
    data_stats = build(f"{task}_{cfg['dataset']}", data_dir)
    logging.info("[2/3] %d test goals for %s", cfg["goals"], task)
    goal_set = goals.generate_goal_set(task, num_goals=cfg["goals"], seed=0)
    goal_set.save(os.path.join(out, f"goals_{task}.npz"))
    logging.info("[3/3] evaluation over %d seeds", cfg["seeds"])
    env = goal_env.GoalConditionedPyEnvironment(goal_set)
    rows = {"random": {}}
    try:
        for seed in range(cfg["seeds"]):
            policy = random_py_policy.RandomPyPolicy(env.time_step_spec(), env.action_spec(),
                                                     seed=seed)
            rows["random"][seed] = goal_eval.evaluate_py_policy(env, policy,
                                                                range(len(goal_set)))
    finally:
        env.close()
    table = goal_eval.summarize(rows)
    goal_eval.write_results(out, rows, table)
    summary = {"task": task, "preset": preset, "dataset": data_stats, "table": table,
               "seconds": round(time.time() - t0, 1)}
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    return summary


def main(argv):
    del argv
    summary = run(FLAGS.task, FLAGS.preset, FLAGS.out, FLAGS.data_dir)
    print(goal_eval.format_table(summary["table"]))
    print(f"Results in {FLAGS.out} ({summary['seconds']} s).")


if __name__ == "__main__":
    app.run(main)
