"""Train the SoRB baseline (App. B.4) and build its graph: ``python -m launch.train_sorb``.

  python -m launch.train_sorb --root_dir=/work/runs/sorb_push1_cpu \
      --gin_file=gin/presets/cpu/sorb.gin

Flags are only the run directory and gin (as TF-Agents' train_eval): every setting has one owner,
the gin binding (``train_sorb.*`` for training, ``sorb_settings.*`` for the networks, bins,
``max_dist`` and ``graph_size``). Rerunning with the same root_dir resumes; on a finished run it
only rebuilds a missing or stale ``graph.npz``. The last line printed is a JSON summary.
The SoRB policy also needs a GCBC run (``launch.train_distance`` with
``train_distance.method='gcbc'``): it reaches the graph's waypoints with it.
"""
import json
import os

from absl import app
from absl import flags
from absl import logging
import gin

from launch import common

flags.DEFINE_string("root_dir", None, "Run directory (checkpoints, summaries, config.json, "
                    "graph.npz).")
flags.DEFINE_multi_string("gin_file", [], "Gin files, applied in order.")
flags.DEFINE_multi_string("gin_param", [], "Gin bindings, applied after the files.")
flags.mark_flag_as_required("root_dir")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    os.environ.setdefault("MUJOCO_GL", "egl")
    from mbold_tf.training import sorb  # pylint: disable=g-import-not-at-top
    gin.parse_config_files_and_bindings(FLAGS.gin_file, FLAGS.gin_param)
    root_dir = os.path.expanduser(FLAGS.root_dir)
    common.start_strategy("launch.train_sorb")  # first: before any TF op
    common.write_run_record(root_dir, operative=False)  # a killed run keeps its settings
    with common.user_errors("launch.train_sorb"):
        result = sorb.train_sorb(root_dir)
    common.write_run_record(root_dir, operative=True)
    logging.info("done")
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    app.run(main)
