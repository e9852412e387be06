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
import os
from typing import Dict, Optional

from absl import app
from absl import flags
from absl import logging
import gin

from launch import common
from mbold_tf.data import rlds
from mbold_tf.envs import goal_env
from mbold_tf.envs import tasks
from mbold_tf.export import saved_model
from mbold_tf.planning import factory
from mbold_tf.utils import training
from mbold_tf import configurables  # noqa: F401  (registers every gin configurable)

flags.DEFINE_string("task", None, "A tabletop task, for its data-collection std as CEM's "
                    "initial std and its robot spec; default (your robot): both come from the "
                    "training data recorded in the runs' data_stats.json.")
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


def robot_settings(task: Optional[str], run_dirs) -> Dict:
    """CEM's initial std and the observation/action spec, and where they came from.

    A tabletop ``task`` gives its collection std and the tabletop arm's spec; otherwise the first
    of ``run_dirs`` with a ``data_stats.json`` gives the data's per-dimension action std and the
    data's action and proprioception sizes (no gripper entry).
    """
    if task is not None:
        if task not in tasks.TASKS:
            raise training.SettingError(f"Unknown --task={task!r}; choose one of "
                                        f"{sorted(tasks.TASKS)}, or omit it to take CEM's "
                                        f"initial std from the training data.")
        return {"init_std": list(tasks.task_spec(task).collection_std),
                "init_std_source": f"task {task!r} data-collection std", "robot": {}}
    for run_dir in run_dirs:
        stats = rlds.read_data_stats(run_dir) if run_dir else None
        if stats:
            return {"init_std": [max(float(s), 1e-3) for s in stats["action_std"]],
                    "init_std_source": f"action std of {stats['dataset']} "
                                       f"({os.path.join(run_dir, rlds.DATA_STATS_NAME)})",
                    "robot": {"proprio_dim": stats["proprio_dim"], "gripper": False,
                              "action_dim": stats["action_dim"]}}
    raise training.SettingError("No --task and no data_stats.json in the given runs (trained "
                                "before they were recorded): pass --task, or retrain.")


def export(task: Optional[str], method: str, models: dict, out: str, seed: int = 0,
           info=None, run_dirs=()) -> str:
    """Builds ``method``'s policy from ``models`` and writes the SavedModel to ``out``.

    ``task`` None: CEM's initial std and the robot's spec come from ``run_dirs``' training data
    (:func:`robot_settings`); ``mbold_export.json`` records which.
    """
    robot = robot_settings(task, run_dirs)
    time_step_spec, action_spec = goal_env.tf_specs(**robot["robot"])
    policy = factory.make_policy(method, time_step_spec, action_spec, robot["init_std"], models,
                                 seed=seed)
    return saved_model.export_policy(policy, out, {
        "task": task, "method": method, "init_std": robot["init_std"],
        "init_std_source": robot["init_std_source"], **(info or {})})


def main(argv):
    del argv
    gin.parse_config_files_and_bindings(FLAGS.gin_file, FLAGS.gin_param)
    with common.user_errors("launch.export"):
        run_dirs = [d for d in (FLAGS.distance_dir, FLAGS.predictor_dir, FLAGS.gcbc_dir) if d]
        robot_settings(FLAGS.task, run_dirs)  # a bad --task or missing statistics fail first
        need = [k for k in factory.requires(FLAGS.method)
                if not {"predictor": FLAGS.predictor_dir, "distance": FLAGS.distance_dir,
                        "gcbc": FLAGS.gcbc_dir}.get(k)]
        if need:
            raise training.SettingError(f"--method={FLAGS.method} needs --{need[0]}_dir.")
        models = factory.load_models(FLAGS.predictor_dir, FLAGS.distance_dir,
                                     gcbc_dir=FLAGS.gcbc_dir)
        path = export(FLAGS.task, FLAGS.method, models, FLAGS.out, FLAGS.seed,
                      {"predictor_dir": FLAGS.predictor_dir, "distance_dir": FLAGS.distance_dir,
                       "gin": gin.config_str()}, run_dirs=run_dirs)
    logging.info("Exported %s policy to %s", FLAGS.method, path)
    print(path)


if __name__ == "__main__":
    app.run(main)
