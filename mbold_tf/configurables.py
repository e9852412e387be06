"""Registers every gin configurable of the project (as dm_control's ``suite/__init__.py`` gathers
its domains): import this module before parsing gin files that may bind any of them.

    from mbold_tf import configurables  # noqa: F401  (registers every gin configurable)

It adds the trainers (and the distribution strategy they train under) to
:mod:`mbold_tf.planning.configurables`, which registers the rest and is what evaluation and
export import (they never load the training code). ``MODULES`` names the modules that define
configurables; a test checks that no other module does, so a new configurable cannot be left
unregistered.
"""
from mbold_tf.planning import configurables as _planning
from mbold_tf.training import distance  # noqa: F401
from mbold_tf.training import dreamer as train_dreamer  # noqa: F401
from mbold_tf.training import predictor  # noqa: F401
from mbold_tf.training import rig as train_rig  # noqa: F401
from mbold_tf.training import sorb as train_sorb  # noqa: F401
from mbold_tf.utils import distribute  # noqa: F401

MODULES = _planning.MODULES + (
    "mbold_tf.training.distance", "mbold_tf.training.dreamer", "mbold_tf.training.predictor",
    "mbold_tf.training.rig", "mbold_tf.training.sorb", "mbold_tf.utils.distribute")
