"""Train (or resume) the video predictor.

    python -m launch.train_predictor --root_dir=/work/runs/predictor_push1_cpu \
        --gin_file=gin/presets/cpu/predictor.gin [--gin_param='train_predictor.total_steps=100']

Rerunning the same command resumes from the latest checkpoint in ``root_dir/ckpt``; other model
settings than the run was started with fail with the list of differing settings. The last line
printed is a JSON object of the final training scalars.
"""
import json
import os

from absl import app
from absl import flags
from absl import logging
import gin

from launch import common
from mbold_tf.training.predictor import train_predictor

flags.DEFINE_string("root_dir", None, "Run directory (checkpoints, summaries, config.json).")
flags.DEFINE_multi_string("gin_file", [], "Gin files, e.g. gin/presets/cpu/predictor.gin.")
flags.DEFINE_multi_string("gin_param", [], "Gin bindings, e.g. train_predictor.total_steps=100.")
flags.mark_flag_as_required("root_dir")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    gin.parse_config_files_and_bindings(FLAGS.gin_file, FLAGS.gin_param)
    root_dir = os.path.expanduser(FLAGS.root_dir)
    common.start_strategy("launch.train_predictor")  # first: before any TF op
    common.write_run_record(root_dir, operative=False)  # a killed run keeps its settings
    with common.user_errors("launch.train_predictor"):
        result = train_predictor(root_dir)
    common.write_run_record(root_dir, operative=True)
    logging.info("Done: %s", result)
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    app.run(main)
