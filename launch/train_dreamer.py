"""Train offline goal-conditioned Dreamer (App. B.2): ``python -m launch.train_dreamer``.

  python -m launch.train_dreamer --root_dir=/work/runs/dreamer_reach_cpu \
      --gin_file=gin/presets/cpu/dreamer.gin

Flags are only the run directory and gin: every setting has one owner, the gin binding. The
reward (``train_dreamer.reward``): 'pixel_mse' (negative pixel MSE to the goal, the paper's
default) or 'arm_l2' (the privileged end-effector oracle), e.g.
``--gin_param="train_dreamer.reward='arm_l2'"``. Rerunning with the same root_dir resumes; other
settings than the run's fail naming them. The last line printed is a JSON summary.
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
    from mbold_tf.training import dreamer  # pylint: disable=g-import-not-at-top
    gin.parse_config_files_and_bindings(FLAGS.gin_file, FLAGS.gin_param)
    root_dir = os.path.expanduser(FLAGS.root_dir)
    common.write_run_record(root_dir, operative=False)  # a killed run keeps its settings
    with common.user_errors("launch.train_dreamer"):
        result = dreamer.train_dreamer(root_dir)
    common.write_run_record(root_dir, operative=True)
    logging.info("done")
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    app.run(main)
