"""Export a trained planner (predictor + distance + CEM) as a SavedModel for the robot.

    python -m launch.export --task=push1 --method=mbold \\
        --predictor_dir=runs/predictor_push1_cpu --distance_dir=runs/distance_cql_td3_push1_cpu \\
        --out=export/push1_mbold [--gin_file=gin/presets/cpu/planner.gin]

On the robot, with TensorFlow alone (copy mbold_tf/export/robot_side.py there)::

    python robot_side.py --policy_dir=export/push1_mbold --env=my_robot_env:make
"""
from absl import app
from absl import flags
from absl import logging
import gin

from launch import common

from mbold_tf.envs import goal_env
from mbold_tf.envs import tasks
from mbold_tf.export import saved_model
from mbold_tf.planning import factory
from mbold_tf.utils import training
from mbold_tf import configurables  # noqa: F401  (registers every gin configurable)

flags.DEFINE_string("task", "push1", "Task (sets the CEM initial std).")
# The methods whose models this launcher loads (vae/temporal need their baseline runs, which it
# does not take; 'privileged' plans with the simulator, which a robot does not have).
EXPORTABLE = ("mbold", "vf", "q_only", "gcbc", "random")
flags.DEFINE_enum("method", "mbold", list(EXPORTABLE), "Policy to export.")
flags.DEFINE_string("predictor_dir", None, "Video predictor run.")
flags.DEFINE_string("distance_dir", None, "Distance agent run.")
flags.DEFINE_string("gcbc_dir", None, "GCBC run (for --method=gcbc).")
flags.DEFINE_string("out", None, "Export directory.", required=True)
flags.DEFINE_integer("seed", 0, "Planner seed.")
flags.DEFINE_multi_string("gin_file", [], "Gin files.")
flags.DEFINE_multi_string("gin_param", [], "Gin bindings.")
FLAGS = flags.FLAGS


def export(task: str, method: str, models: dict, out: str, seed: int = 0, info=None) -> str:
    """Builds ``method``'s policy from ``models`` and writes the SavedModel to ``out``."""
    time_step_spec, action_spec = goal_env.tf_specs()
    policy = factory.make_policy(method, time_step_spec, action_spec,
                                 tasks.task_spec(task).collection_std, models, seed=seed)
    return saved_model.export_policy(policy, out, {"task": task, "method": method,
                                                   **(info or {})})


def main(argv):
    del argv
    gin.parse_config_files_and_bindings(FLAGS.gin_file, FLAGS.gin_param)
    with common.user_errors("launch.export"):
        if FLAGS.task not in tasks.TASKS:  # fail before the models load
            raise training.SettingError(f"Unknown --task={FLAGS.task!r} (it sets CEM's "
                                        f"initial std); choose one of {sorted(tasks.TASKS)}.")
        need = [k for k in factory.requires(FLAGS.method)
                if not {"predictor": FLAGS.predictor_dir, "distance": FLAGS.distance_dir,
                        "gcbc": FLAGS.gcbc_dir}.get(k)]
        if need:
            raise training.SettingError(f"--method={FLAGS.method} needs --{need[0]}_dir.")
        models = factory.load_models(FLAGS.predictor_dir, FLAGS.distance_dir,
                                     gcbc_dir=FLAGS.gcbc_dir)
        path = export(FLAGS.task, FLAGS.method, models, FLAGS.out, FLAGS.seed,
                      {"predictor_dir": FLAGS.predictor_dir, "distance_dir": FLAGS.distance_dir,
                       "gin": gin.config_str()})
    logging.info("Exported %s policy to %s", FLAGS.method, path)
    print(path)


if __name__ == "__main__":
    app.run(main)
