"""Evaluate goal-reaching policies over a task's goal set (several seeds), with TF-Agents drivers.

    python -m launch.evaluate --task=push1 --methods=mbold,vf,q_only,random \\
        --predictor_dir=runs/predictor_push1_cpu --distance_dir=runs/distance_cql_td3_push1_cpu \\
        --seeds=3 --num_goals=100 --out=artifacts/eval_push1 \\
        --gin_file=gin/presets/cpu/planner.gin

Writes results.json, per_goal.csv, table.md and GIFs under --out and prints the table
(success % mean ± std over seeds, final object and arm distance).
"""
import os

from absl import app
from absl import flags
from absl import logging
import gin

from mbold_tf.envs import goals
from mbold_tf.eval import goal_eval
from mbold_tf.eval import policy_eval
from mbold_tf.planning import factory
# Registers every configurable the loaded models use before gin parses (and locks) the config.
from mbold_tf.models import video_predictor  # pylint: disable=unused-import
from mbold_tf.training import distance as distance_training  # pylint: disable=unused-import

flags.DEFINE_string("task", "push1", "Task name.")
flags.DEFINE_list("methods", ["mbold", "vf", "q_only", "random"],
                  f"Policies to evaluate, from {factory.METHODS}.")
flags.DEFINE_string("goals", None, "A goal-set .npz (launch.make_goals); default: generate.")
flags.DEFINE_integer("num_goals", 100, "Goals to generate when --goals is not given.")
flags.DEFINE_bool("hard", False, "Hard goals (the arm away from the moved object).")
flags.DEFINE_integer("goal_seed", 0, "Seed of the generated goal set.")
flags.DEFINE_integer("seeds", 3, "Policy seeds (0..seeds-1).")
flags.DEFINE_integer("num_gifs", 3, "Episodes per method saved as GIFs.")
flags.DEFINE_string("predictor_dir", None, "Video predictor run (launch.train_predictor).")
flags.DEFINE_string("distance_dir", None, "Distance agent run (launch.train_distance).")
flags.DEFINE_string("vae_dir", None, "VAE baseline run.")
flags.DEFINE_string("temporal_dir", None, "Temporal-distance baseline run.")
flags.DEFINE_string("gcbc_dir", None, "GCBC baseline run.")
flags.DEFINE_string("out", "artifacts/eval", "Output directory.")
flags.DEFINE_multi_string("gin_file", [], "Gin files (e.g. gin/presets/cpu/planner.gin).")
flags.DEFINE_multi_string("gin_param", [], "Gin bindings.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    gin.parse_config_files_and_bindings(FLAGS.gin_file, FLAGS.gin_param)
    if FLAGS.goals:
        goal_set = goals.GoalSet.load(FLAGS.goals)
    else:
        goal_set = goals.generate_goal_set(FLAGS.task, num_goals=FLAGS.num_goals,
                                           hard=FLAGS.hard, seed=FLAGS.goal_seed)
    models = factory.load_models(FLAGS.predictor_dir, FLAGS.distance_dir, FLAGS.vae_dir,
                         FLAGS.temporal_dir, FLAGS.gcbc_dir)
    logging.info("Evaluating %s on %d %s goals × %d seeds", FLAGS.methods, len(goal_set),
                 goal_set.task, FLAGS.seeds)
    _, table = policy_eval.evaluate_methods(goal_set, FLAGS.methods, models,
                                            list(range(FLAGS.seeds)), FLAGS.out,
                                            num_gifs=FLAGS.num_gifs)
    print(goal_eval.format_table(table))
    print(f"Results in {os.path.abspath(FLAGS.out)}")


if __name__ == "__main__":
    app.run(main)
