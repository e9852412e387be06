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
    """Registers the configurables the way launchers do: through mbold_tf.configurables."""
    from mbold_tf import configurables  # noqa: F401  pylint: disable=unused-import


def test_every_configurable_is_registered_by_the_one_module():
    """A module defining a gin configurable that mbold_tf.configurables does not import would
    leave its bindings unparseable in the launchers."""
    from mbold_tf import configurables

    defining = []
    for info in pkgutil.walk_packages(mbold_tf.__path__, "mbold_tf."):
        module = importlib.import_module(info.name)
        path = getattr(module, "__file__", "") or ""
        if path.endswith(".py") and "@gin.configurable" in open(path).read():
            defining.append(info.name)
    assert sorted(defining) == sorted(configurables.MODULES)


@pytest.mark.parametrize("path", GIN_FILES, ids=[os.path.relpath(p, ROOT) for p in GIN_FILES])
def test_gin_file_parses(path):
    _import_all()
    gin.clear_config()
    gin.parse_config_file(path)
    gin.clear_config()


@pytest.mark.parametrize("binding", [
    "distance_dataset.batch_size = 32", "distance_dataset.reward_scheme = 'ten_one'",
    "distance_dataset.negatives_key = 'goal'", "predictor_dataset.horizon = 10",
    "make_cost.name = 'pixel_l2'"])
def test_a_setting_owned_elsewhere_cannot_be_bound_in_gin(binding):
    """Each of these values is passed by its owner (train_distance, the model, the method), so
    a gin binding would be ignored: it must fail at parse time instead."""
    _import_all()
    gin.clear_config()
    try:
        with pytest.raises(ValueError, match="denylisted kwarg"):
            gin.parse_config(binding)
    finally:
        gin.clear_config()


def test_unknown_reward_scheme_fails_naming_the_choices(tmp_path):
    from mbold_tf.training import distance

    gin.clear_config()
    with pytest.raises(ValueError, match="Unknown reward scheme 'binary'; choose one of"):
        distance.train_distance(str(tmp_path / "run"), reward_scheme="binary")
