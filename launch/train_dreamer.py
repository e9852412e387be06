"""Train offline goal-conditioned Dreamer (App. B.2): ``python -m launch.train_dreamer``.

  python -m launch.train_dreamer --root_dir=/work/runs/dreamer_reach_cpu \
      --gin_file=gin/presets/cpu/dreamer.gin

Flags are only the run directory and gin: every setting has one owner, the gin binding. The
reward (``train_dreamer.reward``): 'pixel_mse' (negative pixel MSE to the goal, the paper's
default) or 'arm_l2' (the privileged end-effector oracle), e.g.
``--gin_param="train_dreamer.reward='arm_l2'"``. Rerunning with the same root_dir resumes; other
settings than the run's fail naming them. The last line printed is a JSON summary.
"""
from absl import app

from launch import common
from mbold_tf.training import dreamer

common.define_training_flags('Run directory (checkpoints, summaries, config.json).')


def main(argv):
    del argv
    common.run_training("launch.train_dreamer", dreamer.train_dreamer, distributed=False)


if __name__ == "__main__":
    app.run(main)
