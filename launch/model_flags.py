"""The ``--<role>_dir`` flags of the launchers that load trained models, defined once.

The roles and their help come from :data:`mbold_tf.agents.checkpoints.MODEL_DIRS`, and
:func:`mbold_tf.agents.checkpoints.load_models` loads the returned mapping::

    model_flags.define(("predictor", "distance"))  # at import, before app.run
    models = checkpoints.load_models(model_flags.model_dirs(("predictor", "distance")))
"""
from typing import Dict, Optional, Sequence

from absl import flags

from mbold_tf.agents import checkpoints


def define(roles: Sequence[str] = checkpoints.MODEL_ROLES) -> None:
    """Defines ``--<role>_dir`` (a string, default None) for each of ``roles``."""
    for role in roles:
        flags.DEFINE_string(f"{role}_dir", None, checkpoints.MODEL_DIRS[role])


def model_dirs(roles: Sequence[str] = checkpoints.MODEL_ROLES) -> Dict[str, Optional[str]]:
    """The parsed ``--<role>_dir`` values by role (None where the flag was not given)."""
    return {role: getattr(flags.FLAGS, f"{role}_dir") for role in roles}
