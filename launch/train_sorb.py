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
from absl import app

from launch import common
from mbold_tf.training import sorb

common.define_training_flags('Run directory (checkpoints, summaries, config.json, graph.npz).')


def main(argv):
    del argv
    common.run_training("launch.train_sorb", sorb.train_sorb)


if __name__ == "__main__":
    app.run(main)
