"""What the training launchers share: the run record and user errors without a traceback.

* :func:`write_run_record` writes ``<root_dir>/operative_config.gin``: once the run's checks
  have passed (settings, data, the checkpoint restored; just before the first step), every gin
  binding in force (a killed run keeps it); after training, gin's *operative* config, the
  settings the run actually consumed. One name, every training launcher. A refused resume
  leaves the record of the checkpoints alone, and a start that fails before training removes
  what it wrote (no run directory without a checkpoint).
* :func:`user_errors` turns the project's user-facing errors (bad settings, a run directory of
  other settings or in use, damaged or missing data, a diverged run, a full disk, a lost worker,
  an interruption) into one message on stderr and exit code 1 (an interruption: 128 + the
  signal's number); ``MBOLD_VERBOSE=1`` re-raises them with their traceback.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sys
from typing import Iterator

import gin

from absl import flags
from absl import logging

from mbold_tf.data import rlds
from mbold_tf.utils import distribute
from mbold_tf.utils import run_config
from mbold_tf.utils import run_lock
from mbold_tf.utils import training

RUN_RECORD = "operative_config.gin"
_GIN_CALL_NOTE = re.compile(r"\s*In call to configurable '[^']*' \(<[^>]*>\)")
USER_ERRORS = (training.SettingError, rlds.MappingError, run_config.ConfigMismatchError,
               run_lock.RunDirectoryLockedError, training.NonFiniteLossError, FileNotFoundError,
               IOError, training.TrainingInterrupted, training.WorkerLostError)


def start_strategy(program: str) -> None:
    """Creates this process's training strategy (before any other TF op; a ``TF_CONFIG``
    cluster waits for its workers, :mod:`mbold_tf.utils.distribute`).

    A malformed ``TF_CONFIG`` exits with ``<program>: <message>``.
    """
    try:
        info = distribute.task_info()
    except ValueError as e:
        sys.exit(f"{program}: {e}")
    strategy = distribute.strategy_from_environment()
    if info.num_workers > 1:
        logging.info("%s: %s:%d of %d workers (%s), %d replicas in sync", program,
                     info.task_type, info.task_id, info.num_workers,
                     "chief" if info.is_chief else "not chief", strategy.num_replicas_in_sync)


def write_run_record(root_dir: str, operative: bool) -> str:
    """Writes the gin record of the run (all bindings, or the operative ones); returns its path.

    Only the chief of a multi-worker cluster writes it (the others return None).
    """
    if not distribute.task_info().is_chief:
        return None
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
        # gin appends "In call to configurable '...' (<function ...>)" lines: not the message.
        message = _GIN_CALL_NOTE.sub("", str(e))
        code = getattr(e, "exit_code", 1)
        if code == 1:
            sys.exit(f"{program}: {message}")
        print(f"{program}: {message}", file=sys.stderr)
        sys.exit(code)


@contextlib.contextmanager
def failed_start_leaves_nothing(root_dir: str, started) -> Iterator[None]:
    """Removes what the block added to ``root_dir`` (and the directory, if it made it) when the
    block raises before training started (``started()`` is False), e.g. a bad dataset path or
    key: a run directory then always holds a checkpoint. Entries that were there are kept."""
    before = set(os.listdir(root_dir)) if os.path.isdir(root_dir) else None
    try:
        yield
    except BaseException:
        if not started() and distribute.task_info().is_chief and os.path.isdir(root_dir):
            for name in sorted(set(os.listdir(root_dir)) - (before or set())):
                path = os.path.join(root_dir, name)
                if os.path.isdir(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    os.remove(path)
            if before is None and not os.listdir(root_dir):
                os.rmdir(root_dir)
        raise


def define_training_flags(root_dir_help: str) -> None:
    """The training launchers' flags: ``--root_dir`` (required), ``--gin_file``, ``--gin_param``.

    Every other setting is a gin binding (one owner per setting, as TF-Agents' train_eval).
    """
    flags.DEFINE_string("root_dir", None, root_dir_help)
    flags.DEFINE_multi_string("gin_file", [], "Gin files, applied in order.")
    flags.DEFINE_multi_string("gin_param", [], "Gin bindings, applied after the files.")
    flags.mark_flag_as_required("root_dir")


def run_training(program: str, train, distributed: bool = True) -> None:
    """A training launcher's main: parse gin, start the strategy (``distributed``), write the
    run record once the run's checks pass and again after training, run ``train(root_dir) ->
    dict`` with user errors printed without a traceback, and print the result as the last line
    (JSON).

    ``train`` is called after gin is parsed.
    """
    flags_ = flags.FLAGS
    gin.parse_config_files_and_bindings(flags_.gin_file, flags_.gin_param)
    root_dir = os.path.expanduser(flags_.root_dir)
    if distributed:
        start_strategy(program)  # first: before any TF op
    started = []

    def checks_passed():  # a killed run keeps its settings; a refused one keeps the old record
        started.append(True)
        write_run_record(root_dir, operative=False)

    with user_errors(program), failed_start_leaves_nothing(root_dir, lambda: bool(started)), \
            training.when_checks_pass(checks_passed):
        result = train(root_dir)
    write_run_record(root_dir, operative=True)
    logging.info("%s: done", program)
    print(json.dumps(result, sort_keys=True))
