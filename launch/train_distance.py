"""Train the distance function (CQL-TD3) or a baseline: ``python -m launch.train_distance``.

  python -m launch.train_distance --root_dir=/work/runs/distance_cql_td3_push1_cpu \
      --gin_file=gin/presets/cpu/distance.gin

Flags are only the run directory and gin (as TF-Agents' train_eval): every setting has one owner,
the gin binding. Methods (``train_distance.method``): cql_td3, td3, temporal, vae, gcbc, e.g.
``--gin_param="train_distance.method='temporal'"``. No hard negatives:
``--gin_param="train_distance.negatives_key='none'"``. Rerunning with the same root_dir resumes.
The last line printed is a JSON summary.
"""
from absl import app

from launch import common
from mbold_tf.training import distance

common.define_training_flags('Run directory (checkpoints, summaries, config.json).')


def main(argv):
    del argv
    common.run_training("launch.train_distance", distance.train_distance)


if __name__ == "__main__":
    app.run(main)
