"""Build (if needed) an ``mbold_tabletop`` TFDS dataset and report its quality."""
import sys
import time

from absl import logging

import tensorflow_datasets as tfds

import tfds_builders  # noqa: F401  (registers mbold_tabletop)
from mbold_tf.data import collect
from mbold_tf.data import rlds


def build(config: str, data_dir=None) -> dict:
    """Builds ``mbold_tabletop/<config>`` if needed.

    Returns stats: episodes, dir, build seconds and episodes/s (when built now), and the share
    of validation episodes whose object moved > 7.5 cm (the data is only as good as its pushes).
    """
    builder = tfds.builder(f"mbold_tabletop/{config}", data_dir=data_dir)
    t0 = time.time()
    already = builder.is_prepared()
    if not already:
        logging.info("Building mbold_tabletop/%s (%d episodes) in %s...", config,
                     builder.builder_config.num_episodes, builder.data_dir)
        if not sys.stderr.isatty():  # progress bars' escape codes would litter log files
            tfds.disable_progress_bar()
    builder.download_and_prepare()
    seconds = time.time() - t0
    n = builder.builder_config.num_episodes
    # An existing dataset is checked shard by shard against its metadata (record counts), so a
    # damaged one is reported here, not by a training run that silently reads fewer episodes.
    counts = rlds.verify_shards(f"mbold_tabletop/{config}", data_dir)
    stats = {"config": config, "episodes": n, "dir": builder.data_dir,
             "already_built": already, "verified_episodes": counts}
    if not already:
        stats.update(build_seconds=round(seconds, 1), episodes_per_s=round(n / seconds, 2))
    arrays = rlds.load_episodes(f"mbold_tabletop/{config}", "validation", data_dir=data_dir)
    key = "block_pos" if "block_pos" in arrays.privileged else (
        "door_pos" if "door_pos" in arrays.privileged else None)
    if key:
        first = arrays.privileged[key][arrays.episode_start]
        last = arrays.privileged[key][arrays.episode_start + arrays.episode_length - 1]
        first = first.reshape(len(first), -1, first.shape[-1])
        last = last.reshape(len(last), -1, last.shape[-1])
        stats["validation_moved_share_7.5cm"] = collect.moved_share(first, last)
    return stats
