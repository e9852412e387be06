"""Build an ``mbold_tabletop`` TFDS dataset (random-policy episodes) with both cores.

    python -m launch.build_dataset --config=push1_small [--data_dir=~/tensorflow_datasets]

Same result as ``tfds build tfds_builders/mbold_tabletop --config=push1_small``; this command
also reports the build rate and the share of episodes that moved an object.
"""
import json
import sys

from absl import app
from absl import flags
from absl import logging

from mbold_tf.data.build import build

flags.DEFINE_string("config", "push1_small", "BuilderConfig name, <task>_<size>.")
flags.DEFINE_string("data_dir", None, "TFDS data dir (default ~/tensorflow_datasets).")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    try:
        stats = build(FLAGS.config, FLAGS.data_dir)
    except IOError as e:  # a damaged existing dataset: the message names the shard
        sys.exit(f"launch.build_dataset: {e}")
    logging.info("%s", stats)
    print(json.dumps(stats))


if __name__ == "__main__":
    app.run(main)
