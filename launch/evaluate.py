"""Evaluate goal-reaching policies over a task's goal set (several seeds), with TF-Agents drivers.

    python -m launch.evaluate --task=push1 --methods=mbold,vf,q_only,random \\
        --predictor_dir=runs/predictor_push1_cpu --distance_dir=runs/distance_cql_td3_push1_cpu \\
        --seeds=3 --num_goals=100 --out=artifacts/eval_push1 \\
        --gin_file=gin/presets/cpu/planner.gin

The control-centric upper bound (the planners also with the true simulator as their model,
PRIVILEGED, and CEM with the true distance as its cost):

    python -m launch.evaluate --task=reach --methods=mbold,vf,privileged,q_only,random \\
        --models=predictor,simulator ...

Writes the per-episode results.json (the input of launch.report), table.md (rendered from it)
and GIFs under --out and prints the table: success % with Wilson 95% intervals, paired
comparisons on the same goals and seeds, and with the simulator, which part of each cost's gap
to the best simulator planner is the predictor's and which the cost's. A rerun with the same
--out, goals and seeds resumes after the finished episodes.

Faster, the same results: --lockstep=20 runs 20 episodes of a method together, predicting and
scoring their CEM samples as one batch per iteration (docs/design.md, "Evaluation").

On Apache Beam (one element per episode; each worker loads the models once; the same
results.json, which launch.report reads either way):

    python -m launch.evaluate ... \
        --beam_pipeline_options="runner=DirectRunner,direct_num_workers=2,direct_running_mode=multi_processing"
"""
import os
import shlex
import sys

from absl import app
from absl import flags
from absl import logging
import gin

from launch import model_flags
from mbold_tf.agents import checkpoints
from mbold_tf.envs import goals
from mbold_tf.eval import policy_eval
from mbold_tf.planning import factory
from mbold_tf.utils import beam
from mbold_tf.utils import run_config
from mbold_tf.planning import configurables  # noqa: F401  (registers the planner's gin settings)

flags.DEFINE_string("task", "push1", "Task name.")
flags.DEFINE_list("methods", ["mbold", "vf", "q_only", "random"],
                  f"Policies to evaluate, from {factory.METHODS}.")
flags.DEFINE_list("models", ["predictor"],
                  "Planning models of the CEM planners: predictor and/or simulator (PRIVILEGED: "
                  "the true simulator rolls the candidates out; evaluation upper bound).")
flags.DEFINE_string("goals", None, "A goal-set .npz (launch.make_goals); default: generate.")
flags.DEFINE_integer("num_goals", 100, "Goals to generate when --goals is not given.")
flags.DEFINE_bool("hard", False, "Hard goals (the arm away from the moved object).")
flags.DEFINE_integer("goal_seed", 0, "Seed of the generated goal set.")
flags.DEFINE_integer("seeds", 3, "Policy seeds (0..seeds-1).")
flags.DEFINE_integer("num_gifs", 3, "Episodes per method saved as GIFs.")
flags.DEFINE_string("out", "artifacts/eval", "Output directory.")
flags.DEFINE_multi_string("gin_file", [], "Gin files (e.g. gin/presets/cpu/planner.gin).")
flags.DEFINE_multi_string("gin_param", [], "Gin bindings.")
flags.DEFINE_string("beam_pipeline_options", None,
                    "Run the episodes as an Apache Beam pipeline with these options, comma-"
                    "separated key=value (as TFDS' CLI), e.g. 'runner=DirectRunner,"
                    "direct_num_workers=2,direct_running_mode=multi_processing'; run dirs and "
                    "--out must be paths every worker can reach.")
flags.DEFINE_integer("lockstep", 1,
                     "Episodes of one method run together (goals, then seeds): each CEM "
                     "iteration predicts and scores all their samples as one batch; the same "
                     "results as 1 (one at a time), faster. Refused when the batch would exceed "
                     "the free memory.")
model_flags.define()
FLAGS = flags.FLAGS


def main(argv):
    del argv
    try:
        run()
    except (policy_eval.EvaluationSetupError, run_config.ConfigMismatchError,
            FileNotFoundError, beam.BeamOptionsError) as e:
        sys.exit(f"launch.evaluate: {e}")


def run():
    """Parses gin, builds the goal set, loads the models and evaluates (see module docstring)."""
    gin.parse_config_files_and_bindings(FLAGS.gin_file, FLAGS.gin_param)
    policy_eval.evaluation_grid(FLAGS.methods, FLAGS.models)  # bad names fail before loading
    if FLAGS.goals:
        goal_set = goals.GoalSet.load(FLAGS.goals)
    else:
        goal_set = goals.generate_goal_set(FLAGS.task, num_goals=FLAGS.num_goals,
                                           hard=FLAGS.hard, seed=FLAGS.goal_seed)
    model_dirs = model_flags.model_dirs()
    logging.info("Evaluating %s with %s on %d %s goals × %d seeds", FLAGS.methods, FLAGS.models,
                 len(goal_set), goal_set.task, FLAGS.seeds)
    command = "python -m launch.evaluate " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    if FLAGS.beam_pipeline_options is not None:
        if FLAGS.lockstep != 1:
            raise policy_eval.EvaluationSetupError(
                f"--lockstep={FLAGS.lockstep} batches episodes in this process; Beam runs one "
                f"episode per element. Drop one of --lockstep and --beam_pipeline_options.")
        from mbold_tf.eval import beam_eval  # pylint: disable=g-import-not-at-top
        beam_eval.evaluate_methods_on_beam(
            goal_set, FLAGS.methods, model_dirs, list(range(FLAGS.seeds)), FLAGS.out,
            FLAGS.beam_pipeline_options, num_gifs=FLAGS.num_gifs, planning_models=FLAGS.models,
            command=command, planner_gin_files=FLAGS.gin_file)
    else:
        models = checkpoints.load_models(model_dirs)
        policy_eval.evaluate_methods(goal_set, FLAGS.methods, models, list(range(FLAGS.seeds)),
                                     FLAGS.out, num_gifs=FLAGS.num_gifs,
                                     planning_models=FLAGS.models, command=command,
                                     planner_gin_files=FLAGS.gin_file, model_dirs=model_dirs,
                                     lockstep=FLAGS.lockstep)
    with open(os.path.join(FLAGS.out, policy_eval.TABLE_NAME)) as f:
        print(f.read())
    print(f"Results in {os.path.abspath(os.path.join(FLAGS.out, policy_eval.RESULTS_NAME))}; "
          f"tables: python -m launch.report {os.path.join(FLAGS.out, policy_eval.RESULTS_NAME)}")


if __name__ == "__main__":
    app.run(main)
