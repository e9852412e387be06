"""Train (or resume) the video predictor.

    python -m launch.train_predictor --root_dir=/work/runs/predictor_push1_cpu \
        --gin_file=gin/presets/cpu/predictor.gin [--gin_param='train_predictor.total_steps=100']

Rerunning the same command resumes from the latest checkpoint in ``root_dir/ckpt``; other model
settings than the run was started with fail with the list of differing settings. The last line
printed is a JSON object of the final training scalars.
"""
from absl import app

from launch import common
from mbold_tf.training.predictor import train_predictor

common.define_training_flags("Run directory (checkpoints, summaries, config.json).")


def main(argv):
    del argv
    common.run_training("launch.train_predictor", train_predictor)


if __name__ == "__main__":
    app.run(main)
