"""Registers the gin configurables that planning, evaluation and export bind: every configurable
below :mod:`mbold_tf.training` (data, models, agents, planning), and none of the trainers.

    from mbold_tf.planning import configurables  # noqa: F401  (registers the planner's settings)

The training launchers import :mod:`mbold_tf.configurables`, which adds the trainers' settings.
"""
from mbold_tf.agents import checkpoints  # noqa: F401
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

MODULES = ("mbold_tf.agents.checkpoints", "mbold_tf.agents.cql_td3_agent", "mbold_tf.data.neighbors", "mbold_tf.data.pipelines",
           "mbold_tf.data.rlds",
           "mbold_tf.models.baselines", "mbold_tf.models.distance_networks",
           "mbold_tf.models.dreamer", "mbold_tf.models.rig", "mbold_tf.models.sorb",
           "mbold_tf.models.video_predictor", "mbold_tf.planning.cem", "mbold_tf.planning.costs",
           "mbold_tf.planning.factory")
