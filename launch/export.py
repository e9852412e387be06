"""Export a trained planner (predictor + distance + CEM) as a SavedModel for the robot.

    python -m launch.export --task=push1 --method=mbold \\
        --predictor_dir=runs/predictor_push1_cpu --distance_dir=runs/distance_cql_td3_push1_cpu \\
        --out=export/push1_mbold [--gin_file=gin/presets/cpu/planner.gin]

Without ``--task`` (your own robot), CEM's initial std is the training data's action std and the
exported observation spec is the data's (``joint_pos`` of its proprioception size, its action
size), read from the runs' ``data_stats.json``; ``mbold_export.json`` records which was used.

On the robot, with TensorFlow alone (copy mbold_tf/export/robot_side.py there)::

    python robot_side.py --policy_dir=export/push1_mbold --env=my_robot_env:make
"""
from absl import app
from absl import flags
from absl import logging
import gin

from launch import common
from launch import model_flags
from mbold_tf.agents import checkpoints
from mbold_tf.export import planner_export
from mbold_tf.planning import factory
from mbold_tf.utils import run_config
from mbold_tf.utils import training
from mbold_tf.planning import configurables  # noqa: F401  (registers the planner's gin settings)

flags.DEFINE_string("task", None, "A tabletop task, for its data-collection std as CEM's "
                    "initial std and its robot spec; default (your robot): both come from the "
                    "training data recorded in the runs' data_stats.json.")
# The methods whose models this launcher loads (vae/temporal need their baseline runs, which it
# does not take; 'privileged' and 'ideal_eq3' plan with the simulator, which a robot does not have).
EXPORTABLE = ("mbold", "vf", "q_only", "gcbc", "sorb", "rig", "dreamer", "dreamer_arm_l2",
              "random")
# Run-directory flags, by model role (factory.requires names the roles a method needs), in the
# order their data_stats.json are read without --task (the distance's: all of its train split).
ROLES = ("distance", "predictor", "gcbc", "sorb", "rig", "dreamer", "dreamer_arm_l2")
flags.DEFINE_enum("method", "mbold", list(EXPORTABLE), "Policy to export.")
model_flags.define(ROLES)
flags.DEFINE_string("out", None, "Export directory.", required=True)
flags.DEFINE_integer("seed", 0, "Planner seed.")
flags.DEFINE_multi_string("gin_file", [], "Gin files.")
flags.DEFINE_multi_string("gin_param", [], "Gin bindings.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    gin.parse_config_files_and_bindings(FLAGS.gin_file, FLAGS.gin_param)
    with common.user_errors("launch.export"):
        dirs = model_flags.model_dirs(ROLES)
        run_dirs = [r for d in dirs.values() if d for r in run_config.split_runs(d)]
        planner_export.robot_settings(FLAGS.task, run_dirs)  # a bad --task or missing statistics fail first
        need = [k for k in factory.requires(FLAGS.method) if not dirs.get(k)]
        if need:
            raise training.SettingError(f"--method={FLAGS.method} needs --{need[0]}_dir.")
        models = checkpoints.load_models({k: dirs[k] for k in factory.requires(FLAGS.method)})
        path = planner_export.export(FLAGS.task, FLAGS.method, models, FLAGS.out, FLAGS.seed,
                      {"predictor_dir": FLAGS.predictor_dir, "distance_dir": FLAGS.distance_dir,
                       "gin": gin.config_str()}, run_dirs=run_dirs)
    logging.info("Exported %s policy to %s", FLAGS.method, path)
    print(path)


if __name__ == "__main__":
    app.run(main)
