"""Train the distance function (CQL-TD3) or a baseline: ``python -m launch.train_distance``.

  python -m launch.train_distance --root_dir=/work/runs/distance_cql_td3_push1_cpu \
      --gin_file=gin/presets/cpu/distance.gin

Flags are only the run directory and gin (as TF-Agents' train_eval): every setting has one owner,
the gin binding. Methods (``train_distance.method``): cql_td3, td3, temporal, vae, gcbc, e.g.
``--gin_param="train_distance.method='temporal'"``. No hard negatives:
``--gin_param="train_distance.negatives_key='none'"``. Rerunning with the same root_dir resumes.
The last line printed is a JSON summary.
"""
import json
import os

from absl import app
from absl import flags
from absl import logging
import gin

from launch import common

flags.DEFINE_string("root_dir", None, "Run directory (checkpoints, summaries, config.json).")
flags.DEFINE_multi_string("gin_file", [], "Gin files, applied in order.")
flags.DEFINE_multi_string("gin_param", [], "Gin bindings, applied after the files.")
flags.mark_flag_as_required("root_dir")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    os.environ.setdefault("MUJOCO_GL", "egl")
    from mbold_tf.training import distance  # pylint: disable=g-import-not-at-top
    gin.parse_config_files_and_bindings(FLAGS.gin_file, FLAGS.gin_param)
    root_dir = os.path.expanduser(FLAGS.root_dir)
    common.start_strategy("launch.train_distance")  # first: before any TF op
    common.write_run_record(root_dir, operative=False)  # a killed run keeps its settings
    with common.user_errors("launch.train_distance"):
        result = distance.train_distance(root_dir)
    common.write_run_record(root_dir, operative=True)
    logging.info("done")
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    app.run(main)
