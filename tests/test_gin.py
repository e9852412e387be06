"""Every shipped gin file parses against the registered configurables."""
import glob
import os

import gin
import pytest

import importlib
import pkgutil

import mbold_tf

ROOT = os.path.join(os.path.dirname(__file__), "..", "gin")
GIN_FILES = sorted(glob.glob(os.path.join(ROOT, "**", "*.gin"), recursive=True))


def _import_all():
    """Imports every mbold_tf module so that all configurables are registered."""
    for info in pkgutil.walk_packages(mbold_tf.__path__, "mbold_tf."):
        importlib.import_module(info.name)


@pytest.mark.parametrize("path", GIN_FILES, ids=[os.path.relpath(p, ROOT) for p in GIN_FILES])
def test_gin_file_parses(path):
    _import_all()
    gin.clear_config()
    gin.parse_config_file(path)
    gin.clear_config()


def test_paper_data_values():
    _import_all()
    gin.clear_config()
    gin.parse_config_file(os.path.join(ROOT, "paper", "data.gin"))
    assert gin.query_parameter("distance_dataset.p") == 0.3
    assert gin.query_parameter("neighbor_table.max_indexed") == 200000
    gin.clear_config()


def test_unknown_reward_scheme_in_gin_fails_clearly():
    import numpy as np
    from mbold_tf.data import pipelines, rlds

    gin.clear_config()
    gin.parse_config("distance_dataset.reward_scheme = 'binary'")
    arrays = rlds.EpisodeArrays(images=np.zeros((4, 64, 64, 3), np.uint8),
                                actions=np.zeros((4, 4), np.float32),
                                proprio=np.zeros((4, 7), np.float32),
                                episode_start=np.array([0, 2]), episode_length=np.array([2, 2]),
                                episode_ids=np.arange(2), privileged={})
    with pytest.raises(ValueError, match="'binary'"):
        pipelines.distance_dataset(arrays, negatives_key="none")
    gin.clear_config()
