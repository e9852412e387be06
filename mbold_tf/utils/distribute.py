"""The training strategy from the environment, and what each worker of a cluster writes where.

* ``TF_CONFIG`` naming several tasks (``chief`` and/or ``worker``) →
  ``tf.distribute.MultiWorkerMirroredStrategy`` (synchronous all-reduce over gRPC);
* several visible GPUs → ``tf.distribute.MirroredStrategy``;
* otherwise TF's default strategy (one device).

Only the *chief* (the ``chief`` task, or worker 0 when the cluster has none) writes the run
directory: checkpoints, summaries, config and data records. Every other worker writes its
checkpoints (which take part in the same collective save) to a private scratch directory under
``<root_dir>/.workers/`` that is deleted when its training ends, and its summaries nowhere. A restarted
cluster resumes from the chief's latest checkpoint, so the run directory must be on a file system
that every worker sees (as for ``tf.keras.callbacks.BackupAndRestore``).

A worker that cannot reach the others does not hang: :func:`strategy_from_environment` waits at
most ``join_timeout_s`` (gin: ``strategy_from_environment.join_timeout_s``) for the cluster to
form, then is stopped with a message naming the addresses that did not answer.
"""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
from typing import List, Optional

import gin
import tensorflow as tf

DEFAULT_JOIN_TIMEOUT_S = 120.0


@dataclasses.dataclass(frozen=True)
class TaskInfo:
    """Where this process sits in the cluster: ``task_type`` ('chief', 'worker' or None for a
    single process), ``task_id``, ``num_workers`` (chief included) and ``is_chief``."""
    task_type: Optional[str]
    task_id: int
    num_workers: int
    is_chief: bool
    addresses: tuple = ()


def task_info(tf_config: Optional[str] = None) -> TaskInfo:
    """Parses ``TF_CONFIG`` (or the given JSON string); a single process when it is unset.

    Raises ValueError naming what is wrong with a malformed ``TF_CONFIG``.
    """
    raw = os.environ.get("TF_CONFIG", "") if tf_config is None else tf_config
    if not raw.strip():
        return TaskInfo(None, 0, 1, True)
    try:
        cfg = json.loads(raw)
        cluster = cfg.get("cluster", {})
        task = cfg.get("task", {})
        task_type, task_id = task.get("type"), int(task.get("index", 0))
    except (ValueError, AttributeError, TypeError) as e:
        raise ValueError(f"TF_CONFIG is not valid JSON of the form {{'cluster': {{'worker': "
                         f"['host:port', ...]}}, 'task': {{'type': 'worker', 'index': 0}}}}: "
                         f"{e}") from None
    jobs = {k: list(v) for k, v in cluster.items() if k in ("chief", "worker")}
    other = sorted(set(cluster) - {"chief", "worker", "evaluator"})
    if other:
        raise ValueError(f"TF_CONFIG names jobs {other}; multi-worker training here uses "
                         f"'chief' and 'worker' tasks only (parameter servers are not used).")
    if task_type not in jobs or not 0 <= task_id < len(jobs[task_type]):
        raise ValueError(f"TF_CONFIG's task {task!r} is not one of its cluster's tasks "
                         f"{ {k: len(v) for k, v in jobs.items()} }.")
    num = sum(len(v) for v in jobs.values())
    is_chief = task_type == "chief" or ("chief" not in jobs and task_type == "worker"
                                        and task_id == 0)
    addresses = tuple(f"{k}:{i} {a}" for k in ("chief", "worker") for i, a in
                      enumerate(jobs.get(k, ())))
    return TaskInfo(task_type, task_id, num, is_chief, addresses)


def unreachable(addresses, timeout_s: float = 2.0) -> List[str]:
    """The entries ``'<type>:<id> host:port'`` of ``addresses`` whose port refuses or times out
    a TCP connection."""
    bad = []
    for entry in addresses:
        host, _, port = entry.split(" ", 1)[1].rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=timeout_s):
                pass
        except (OSError, ValueError):
            bad.append(entry)
    return bad


def _watchdog_main(argv: List[str]) -> None:
    """Entry of the watchdog process: ``parent_pid timeout_s task addresses_json``.

    Sleeps until the timeout (or the parent's exit), then names the tasks that do not answer and
    kills the parent, whose collective start-up blocks in C++ without returning to Python.
    """
    pid, timeout_s, me, addresses = int(argv[0]), float(argv[1]), argv[2], json.loads(argv[3])
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        time.sleep(0.2)
        try:
            os.kill(pid, 0)
        except OSError:
            return
    others = [a for a in addresses if not a.startswith(me + " ")]
    missing = unreachable(others)
    names = ", ".join(missing) if missing else (
        "none refused a connection (a task may have started with another TF_CONFIG)")
    sys.stderr.write(
        f"Multi-worker training: the cluster did not form within {timeout_s:.0f} s (this task: "
        f"{me}). Unreachable tasks: {names}. Start every task listed in TF_CONFIG with the same "
        f"cluster, or fix the addresses.\n")
    sys.stderr.flush()
    os.kill(pid, signal.SIGKILL)


_STRATEGY: Optional[tf.distribute.Strategy] = None


@gin.configurable
def strategy_from_environment(join_timeout_s: float = DEFAULT_JOIN_TIMEOUT_S
                              ) -> tf.distribute.Strategy:
    """The strategy for this process (module docstring), created once and then reused.

    A multi-worker strategy must exist before any other TF op runs, so the training launchers
    call this first; the trainers' own calls then return the same object.

    With several workers, this blocks until all of them have joined; after ``join_timeout_s``
    seconds without them a watchdog process prints which tasks did not answer and kills this
    one (TF's collective start-up cannot be interrupted from Python).
    """
    global _STRATEGY
    if _STRATEGY is None:
        _STRATEGY = _create(join_timeout_s)
    return _STRATEGY


def _create(join_timeout_s: float) -> tf.distribute.Strategy:
    info = task_info()
    if info.num_workers > 1:
        # TF's collective start-up blocks in C++ (holding the interpreter), so the bounded
        # wait is kept by a separate process.
        watchdog = subprocess.Popen(
            [sys.executable, "-c", "import sys; from mbold_tf.utils import distribute; "
             "distribute._watchdog_main(sys.argv[1:])", str(os.getpid()), str(join_timeout_s),
             f"{info.task_type}:{info.task_id}", json.dumps(list(info.addresses))],
            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        # The first collective is the barrier: every worker has joined once it returns.
        tf.function(lambda: strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(
            lambda: tf.constant(1.0)), axis=None))()
        watchdog.kill()
        watchdog.wait()
        return strategy
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def worker_dir(root_dir: str, info: Optional[TaskInfo] = None) -> str:
    """The directory this process writes: ``root_dir`` for the chief, else a scratch directory
    ``root_dir/.workers/<type>_<id>`` (deleted by :func:`clean_worker_dir`)."""
    info = info or task_info()
    if info.is_chief:
        return root_dir
    return os.path.join(root_dir, ".workers", f"{info.task_type}_{info.task_id}")


def clean_worker_dir(path: str, root_dir: str) -> None:
    """Removes a non-chief's scratch directory (never the run directory itself)."""
    if os.path.abspath(path) != os.path.abspath(root_dir) and os.path.isdir(path):
        import shutil  # pylint: disable=g-import-not-at-top
        shutil.rmtree(path, ignore_errors=True)
        try:
            os.rmdir(os.path.dirname(path))  # .workers/, once no other worker uses it
        except OSError:
            pass


def shard_seed(seed: int, input_context: Optional[tf.distribute.InputContext]) -> int:
    """The input pipeline's seed: ``seed`` for pipeline 0, ``seed + 1000·pipeline_id`` for the
    others.

    The training pipelines draw windows uniformly with replacement from all episodes (an endless
    stream, no epochs), so a worker's shard of that stream is an independent stream: every
    worker holds the episodes and samples with its own seed, ``global batch / replicas`` per
    replica. Pipeline 0 keeps the single-process seed, so one worker reproduces a plain run.
    """
    if input_context is None:
        return int(seed)
    return int(seed) + 1000 * int(input_context.input_pipeline_id)
