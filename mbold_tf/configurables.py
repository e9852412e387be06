"""Registers every gin configurable of the project (as dm_control's ``suite/__init__.py`` gathers
its domains): import this module before parsing gin files that may bind any of them.

    from mbold_tf import configurables  # noqa: F401  (registers every gin configurable)

``MODULES`` names the modules that define configurables; a test checks that no other module
does, so a new configurable cannot be left unregistered.
"""
from mbold_tf.agents import cql_td3_agent  # noqa: F401
from mbold_tf.data import neighbors  # noqa: F401
from mbold_tf.data import pipelines  # noqa: F401
from mbold_tf.data import rlds  # noqa: F401
from mbold_tf.models import baselines  # noqa: F401
from mbold_tf.models import distance_networks  # noqa: F401
from mbold_tf.models import dreamer  # noqa: F401
from mbold_tf.models import rig  # noqa: F401
from mbold_tf.models import sorb  # noqa: F401
from mbold_tf.models import video_predictor  # noqa: F401
from mbold_tf.planning import cem  # noqa: F401
from mbold_tf.planning import costs  # noqa: F401
from mbold_tf.planning import factory  # noqa: F401
from mbold_tf.training import distance  # noqa: F401
from mbold_tf.training import dreamer as train_dreamer  # noqa: F401
from mbold_tf.training import predictor  # noqa: F401
from mbold_tf.training import rig as train_rig  # noqa: F401
from mbold_tf.training import sorb as train_sorb  # noqa: F401
from mbold_tf.utils import distribute  # noqa: F401

MODULES = ("mbold_tf.agents.cql_td3_agent", "mbold_tf.data.neighbors", "mbold_tf.data.pipelines",
           "mbold_tf.data.rlds",
           "mbold_tf.models.baselines", "mbold_tf.models.distance_networks",
           "mbold_tf.models.dreamer", "mbold_tf.models.rig", "mbold_tf.models.sorb",
           "mbold_tf.models.video_predictor", "mbold_tf.planning.cem", "mbold_tf.planning.costs",
           "mbold_tf.planning.factory", "mbold_tf.training.distance",
           "mbold_tf.training.dreamer", "mbold_tf.training.predictor", "mbold_tf.training.rig",
           "mbold_tf.training.sorb", "mbold_tf.utils.distribute")
