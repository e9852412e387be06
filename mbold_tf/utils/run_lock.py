"""One writer per run directory: an exclusive lock on ``<root_dir>/.lock``.

Two trainings on one ``root_dir`` would overwrite each other's checkpoints, and one could resume
from a checkpoint that the other's ``CheckpointManager`` has just deleted. :func:`hold` takes an
exclusive ``fcntl.flock`` on the lock file for the duration of the block and writes the holder's
host, PID and start time into it. The operating system releases a ``flock`` when its process dies,
so a killed run never leaves a stale lock behind; the recorded holder only serves the message.
"""
from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import socket
from typing import Iterator

LOCK_NAME = ".lock"


class RunDirectoryLockedError(RuntimeError):
    """Another process is writing the run directory."""


@contextlib.contextmanager
def hold(root_dir: str) -> Iterator[str]:
    """Holds the run directory's lock inside the block; yields the lock file's path.

    Raises RunDirectoryLockedError naming the holder (host, PID, start time) when another
    process holds it.
    """
    os.makedirs(root_dir, exist_ok=True)
    path = os.path.join(root_dir, LOCK_NAME)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            with open(path) as f:
                holder = f.read().strip() or "{}"
            try:
                info = json.loads(holder)
            except json.JSONDecodeError:
                info = {}
            raise RunDirectoryLockedError(
                f"{root_dir!r} is being written by another run (PID {info.get('pid', '?')} on "
                f"{info.get('host', '?')}, since {info.get('started', '?')}). Two writers would "
                f"overwrite each other's checkpoints: wait for it, stop it, or use another "
                f"--root_dir.") from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({
            "host": socket.gethostname(), "pid": os.getpid(),
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds")}).encode())
        os.fsync(fd)
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
