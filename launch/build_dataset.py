"""Build an ``mbold_tabletop`` TFDS dataset (random-policy episodes) with both cores.

    python -m launch.build_dataset --config=push1_small [--data_dir=~/tensorflow_datasets]

Same result as ``tfds build tfds_builders/mbold_tabletop --config=push1_small``; this command
also reports the build rate and the share of episodes that moved an object. On Apache Beam::

    python -m launch.build_dataset --config=push1_paper \
        --beam_pipeline_options="runner=DirectRunner,direct_num_workers=2,direct_running_mode=multi_processing"
"""
import json
import sys

from absl import app
from absl import flags
from absl import logging

from mbold_tf.data.build import build
from mbold_tf.utils import beam

flags.DEFINE_string("config", "push1_small", "BuilderConfig name, <task>_<size>.")
flags.DEFINE_string("data_dir", None, "TFDS data dir (default ~/tensorflow_datasets).")
flags.DEFINE_string("beam_pipeline_options", None,
                    "Build on Apache Beam with these options, comma-separated key=value (as "
                    "TFDS' CLI), e.g. 'runner=DirectRunner,direct_num_workers=2,"
                    "direct_running_mode=multi_processing' or 'runner=DataflowRunner,project=...'.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    try:
        stats = build(FLAGS.config, FLAGS.data_dir, FLAGS.beam_pipeline_options)
    except (IOError, beam.BeamOptionsError) as e:  # a damaged dataset names the shard
        sys.exit(f"launch.build_dataset: {e}")
    logging.info("%s", stats)
    print(json.dumps(stats))


if __name__ == "__main__":
    app.run(main)
