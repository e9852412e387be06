"""What the training launchers share: the run record and user errors without a traceback.

* :func:`write_run_record` writes ``<root_dir>/operative_config.gin``: before training, every
  gin binding in force (a killed run keeps it); after training, gin's *operative* config, the
  settings the run actually consumed. One name, every training launcher.
* :func:`user_errors` turns the project's user-facing errors (bad settings, a run directory of
  other settings or in use, damaged data, a diverged run) into one message on stderr and exit
  code 1; ``MBOLD_VERBOSE=1`` re-raises them with their traceback.
"""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator

import gin

from mbold_tf.data import rlds
from mbold_tf.utils import run_config
from mbold_tf.utils import run_lock
from mbold_tf.utils import training

RUN_RECORD = "operative_config.gin"
USER_ERRORS = (training.SettingError, rlds.MappingError, run_config.ConfigMismatchError,
               run_lock.RunDirectoryLockedError, training.NonFiniteLossError, FileNotFoundError,
               IOError)


def write_run_record(root_dir: str, operative: bool) -> str:
    """Writes the gin record of the run (all bindings, or the operative ones); returns its path."""
    os.makedirs(root_dir, exist_ok=True)
    path = os.path.join(root_dir, RUN_RECORD)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(gin.operative_config_str() if operative else gin.config_str())
    os.replace(tmp, path)
    return path


@contextlib.contextmanager
def user_errors(program: str) -> Iterator[None]:
    """Exits with ``<program>: <message>`` for the errors in :data:`USER_ERRORS`."""
    try:
        yield
    except USER_ERRORS as e:
        if os.environ.get("MBOLD_VERBOSE") == "1":
            raise
        sys.exit(f"{program}: {e}")
