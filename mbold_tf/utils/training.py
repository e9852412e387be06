"""A small, shared training loop: resumable checkpoints, TensorBoard scalars, progress, NaN guard.

Both the video predictor and the distance agent train through :class:`TrainingLoop`, so that every
long job behaves the same way: it resumes from the latest checkpoint in ``root_dir``, logs steps/s
and an ETA, writes scalar summaries, refuses to save non-finite weights, and saves a checkpoint
when it is interrupted (Ctrl-C or SIGTERM), so nothing is lost when a run is killed.

Failures reach the user as one message (the launchers' ``user_errors``): an interruption
(:class:`TrainingInterrupted`: the step in progress finishes, so the checkpoint's label equals
every step counter inside it), a full disk or other failed write (:class:`CheckpointWriteError`,
naming the last good checkpoint and the partial files) and a lost worker of a cluster
(:class:`WorkerLostError`). :func:`when_checks_pass` lets a launcher write its run record only
once a run's checks (settings, data, checkpoint) have passed.

Each save also records how long training took in ``root_dir/timing.json``
(:func:`mbold_tf.utils.timing.training_time` reads it): one segment per process that trained the
run, with its steps, wall seconds and the process's CPU seconds (all threads). CPU time is the
budget measure that survives shared cores and pauses; wall time is what a user waits.
"""
from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
import signal
import time
from typing import Callable, Dict, Iterator, List, Mapping, Optional, Tuple

from absl import logging
import numpy as np
import tensorflow as tf

from mbold_tf.utils import distribute
from mbold_tf.utils import run_lock
from mbold_tf.utils import timing


class SettingError(ValueError):
    """A setting (size, count, period) with a value it cannot take."""


def check_positive(**settings: int) -> None:
    """Raises SettingError naming the first setting that is not a positive integer.

    Called with the settings' full names, e.g. ``check_positive(**{"train_predictor.batch_size":
    batch_size})``, so the message says where to change it.
    """
    for name, value in settings.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise SettingError(f"{name} must be a positive integer; got {value!r}. Set it in "
                               f"the gin file or with --gin_param=\"{name}=...\".")


class NonFiniteLossError(RuntimeError):
    """Raised when a training step returns a NaN or infinite scalar; weights are not saved."""


class TrainingInterrupted(RuntimeError):
    """SIGTERM or Ctrl-C stopped the training (after saving, in a single process); a rerun
    resumes. ``exit_code`` is the shell's convention for the signal (128 + its number)."""

    def __init__(self, message: str, signum: int = signal.SIGINT):
        super().__init__(message)
        self.exit_code = 128 + int(signum)


class CheckpointWriteError(IOError):
    """A checkpoint could not be written (e.g. the disk is full); the message names the last
    good checkpoint, from which a rerun resumes."""


class WorkerLostError(RuntimeError):
    """Another worker of a multi-worker cluster stopped answering during training."""


_START_CALLBACKS: List[Callable[[], None]] = []


@contextlib.contextmanager
def when_checks_pass(callback: Callable[[], None]) -> Iterator[None]:
    """Inside the block, the first :class:`TrainingLoop` to start calls ``callback()`` once,
    after its latest checkpoint is restored and before its first step: by then the run's
    settings, data and checkpoint have passed their checks (a launcher writes its run record
    there, so a refused or failed start leaves the record alone)."""
    _START_CALLBACKS.append(callback)
    try:
        yield
    finally:
        if callback in _START_CALLBACKS:
            _START_CALLBACKS.remove(callback)


def _checks_passed() -> None:
    while _START_CALLBACKS:
        _START_CALLBACKS.pop(0)()


def non_finite_variables(trackables: Mapping[str, object]) -> List[str]:
    """Names of the floating-point variables of ``trackables`` (variables, ``tf.Module``s,
    Keras models and optimizers) that hold a NaN or infinite value; empty when all are finite."""
    variables = []
    for obj in trackables.values():
        if isinstance(obj, tf.Variable):
            variables.append(obj)
            continue
        found = getattr(obj, "variables", ())
        variables.extend(found() if callable(found) else found)
    seen, bad = set(), []
    for v in variables:
        if id(v) in seen or not v.dtype.is_floating:
            continue
        seen.add(id(v))
        if not bool(tf.reduce_all(tf.math.is_finite(v))):
            bad.append(v.name)
    return bad


def _temporaries(ckpt_dir: str, step: Optional[int] = None) -> List[str]:
    """What an interrupted checkpoint write leaves in ``ckpt_dir``: ``*_temp`` directories, TF's
    ``checkpoint.tmp*`` state files and, with ``step``, that step's unfinished ``ckpt-<step>.*``
    files (a save that failed before its state file named it)."""
    if not os.path.isdir(ckpt_dir):
        return []
    found = []
    for name in sorted(os.listdir(ckpt_dir)):
        path = os.path.join(ckpt_dir, name)
        if name.startswith("checkpoint.tmp") or (name.endswith("_temp") and os.path.isdir(path)) \
                or (step is not None and name.startswith(f"ckpt-{step}.")):
            found.append(path)
    return found


def _remove_temporaries(ckpt_dir: str, step: Optional[int] = None) -> List[str]:
    """Deletes :func:`_temporaries` (finished checkpoints are untouched); returns their paths."""
    import shutil  # pylint: disable=g-import-not-at-top

    removed = _temporaries(ckpt_dir, step)
    for path in removed:
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.exists(path):
            os.remove(path)
        logging.info("Removed %s, left by an interrupted checkpoint write", path)
    return removed


def _no_space(error: BaseException) -> bool:
    return getattr(error, "errno", None) == errno.ENOSPC or \
        "No space left on device" in str(error)


_TASK_NAME = re.compile(r"/job:(\w+)/replica:\d+/task:(\d+)")


def lost_workers(message: str, me: distribute.TaskInfo) -> List[str]:
    """The tasks (``'worker:1'``) other than ``me`` that a TF error message names."""
    mine = f"{me.task_type}:{me.task_id}"
    return sorted({f"{job}:{task}" for job, task in _TASK_NAME.findall(message)} - {mine})


def check_finite_weights(trackables: Mapping[str, object], checkpoint: str) -> None:
    """Raises ValueError naming ``checkpoint`` when a restored weight is NaN or infinite."""
    bad = non_finite_variables(trackables)
    if bad:
        raise ValueError(f"Checkpoint {checkpoint} holds non-finite weights ({bad[:3]}); it "
                         f"cannot be used. Retrain, or restore an earlier checkpoint of the run.")


class TrainingLoop:
    """Runs ``train_step`` until ``total_steps`` with checkpointing, summaries and progress.

    Args:
      root_dir: run directory; checkpoints go to ``root_dir/ckpt``, summaries to ``root_dir/train``.
      trackables: objects to checkpoint (models, optimizers, agents, ...), by name.
      step: an int64 ``tf.Variable`` step counter, checkpointed with the rest. ``train_step`` must
        not increment it; the loop does.
      total_steps: the loop stops when ``step`` reaches this value.
      checkpoint_every / summary_every / log_every: periods in steps.
      max_to_keep: checkpoints kept by the ``tf.train.CheckpointManager``.
      before_save: called before every checkpoint is written (e.g. to recompute batch-norm
        statistics, :mod:`mbold_tf.utils.batch_norm`).
      bounds: scalar name -> (low, high): a step whose scalar leaves this range raises
        NonFiniteLossError (the run diverged), e.g. Q-values far outside what the rewards allow.

    In a multi-worker cluster (``TF_CONFIG``, :mod:`mbold_tf.utils.distribute`) every worker runs
    the loop; all restore the chief's latest checkpoint in ``root_dir/ckpt``, all take part in each
    save, but only the chief writes ``root_dir`` (the others write to a scratch directory that is
    removed at the end) and only the chief writes summaries.
    """

    def __init__(self, root_dir: str, trackables: Mapping[str, tf.Module], step: tf.Variable,
                 total_steps: int, checkpoint_every: int = 1000, summary_every: int = 100,
                 log_every: int = 100, max_to_keep: int = 3,
                 before_save: Optional[Callable[[], None]] = None,
                 bounds: Optional[Mapping[str, Tuple[float, float]]] = None):
        self.root_dir = root_dir
        self.bounds = dict(bounds or {})
        self.before_save = before_save
        self._saved_step: Optional[int] = None
        self._segment: Optional[Dict[str, float]] = None  # this process's timing record
        self._earlier_segments: List[Dict[str, float]] = []
        self._segment_clock = (0.0, 0.0)
        self.step = step
        self.total_steps = int(total_steps)
        self.checkpoint_every = max(1, int(checkpoint_every))
        self.summary_every = max(1, int(summary_every))
        self.log_every = max(1, int(log_every))
        self.task = distribute.task_info()
        self.write_dir = distribute.worker_dir(root_dir, self.task)
        self.chief_ckpt_dir = os.path.join(root_dir, "ckpt")
        _remove_temporaries(os.path.join(self.write_dir, "ckpt"))
        self._trackables = dict(trackables)
        self.checkpoint = tf.train.Checkpoint(step=step, **self._trackables)
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, os.path.join(self.write_dir, "ckpt"), max_to_keep=max_to_keep)
        self.writer = (tf.summary.create_file_writer(os.path.join(root_dir, "train"))
                       if self.task.is_chief else tf.summary.create_noop_writer())

    def restore(self) -> Optional[str]:
        """Restores the latest checkpoint if there is one; returns its path (or None)."""
        latest = tf.train.latest_checkpoint(self.chief_ckpt_dir)
        if latest:
            self.checkpoint.restore(latest).expect_partial()
            logging.info("Resumed from %s at step %d", latest, int(self.step.numpy()))
        return latest

    def _last_good(self) -> str:
        return tf.train.latest_checkpoint(self.chief_ckpt_dir) or "none"

    def save(self) -> str:
        """Writes a checkpoint at the current step (after ``before_save``) and returns its path.

        Raises NonFiniteLossError, saving nothing, when any weight is NaN or infinite (a finite
        loss can come from ruined weights), so the latest checkpoint is always a usable one.
        """
        if self.before_save is not None:
            self.before_save()
        bad = non_finite_variables(self._trackables)
        if bad:
            raise NonFiniteLossError(
                f"Non-finite weights in {bad[:5]} at step {int(self.step.numpy())}; not saved. "
                f"Last good checkpoint: {self._last_good()}. Lower the "
                f"learning rate or check the input data, then rerun to resume from it.")
        step = int(self.step.numpy())
        try:
            path = self.manager.save(checkpoint_number=step)
            self._saved_step = step
            self._record_time()
        except (OSError, tf.errors.OpError) as e:
            if self.task.num_workers > 1 and isinstance(
                    e, (tf.errors.UnavailableError, tf.errors.DeadlineExceededError)):
                raise  # a save is a collective: a lost worker, handled by run()
            ckpt_dir = os.path.join(self.write_dir, "ckpt")
            latest = tf.train.latest_checkpoint(ckpt_dir) or ""
            finished = latest.endswith(f"ckpt-{step}")  # only its timing record failed
            removed = _remove_temporaries(ckpt_dir, None if finished else step)  # frees space
            last_good = self._last_good()
            cause = ("No space left on device" if _no_space(e)
                     else f"{type(e).__name__}: {str(e).strip().splitlines()[-1][:300]}")
            raise CheckpointWriteError(
                f"Could not save the checkpoint of step {step} in {ckpt_dir}: {cause}. "
                f"Last good checkpoint: {last_good} (a rerun resumes from it). The partial "
                f"write was removed: {removed or 'nothing left'}. Free space (or fix the "
                f"directory), then rerun the same command.") from None
        logging.info("Saved checkpoint %s", path)
        return path

    def _record_time(self) -> None:
        """Rewrites ``timing.json`` with this process's segment ending at the saved step (chief
        only; atomic, so a kill mid-write keeps the previous record)."""
        if self._segment is None or not self.task.is_chief:
            return
        self._segment.update(to_step=self._saved_step,
                             wall_seconds=round(time.time() - self._segment_clock[0], 4),
                             cpu_seconds=round(time.process_time() - self._segment_clock[1], 4))
        path = os.path.join(self.root_dir, timing.TIMING_FILE)
        with open(path + ".tmp", "w") as f:
            json.dump({"segments": self._earlier_segments + [dict(self._segment)]}, f, indent=1)
        os.replace(path + ".tmp", path)

    def run(self, train_step: Callable[[], Mapping[str, tf.Tensor]],
            summary_fn: Optional[Callable[[int], None]] = None,
            summary_fn_every: int = 0) -> Dict[str, float]:
        """Runs ``train_step()`` (returns a dict of scalar tensors) until ``total_steps``.

        ``summary_fn(step)``, if given, is called every ``summary_fn_every`` steps inside the
        summary writer (for images/videos). Returns the last step's scalars as floats.
        Raises NonFiniteLossError if a scalar is not finite: the message names the step and the
        last good checkpoint, and nothing is saved.
        """
        os.makedirs(self.write_dir, exist_ok=True)
        try:
            with run_lock.hold(self.write_dir):
                return self._run(train_step, summary_fn, summary_fn_every)
        finally:
            if not self.task.is_chief:
                distribute.clean_worker_dir(self.write_dir, self.root_dir)

    def timed_run(self, train_step: Callable[[], Mapping[str, tf.Tensor]],
                  **run_kwargs) -> Dict[str, float]:
        """:meth:`run`, timed over the steps this call trains (a resumed run times only its new
        steps): the last scalars plus ``steps`` (the step reached), ``seconds`` and
        ``steps_per_s``."""
        self.restore()  # (run() restores again, harmlessly) so that only new steps are timed
        start = int(self.step.numpy())
        t0 = time.time()
        last = self.run(train_step, **run_kwargs)
        seconds = time.time() - t0
        done = int(self.step.numpy())
        return {"steps": done, "seconds": round(seconds, 1),
                "steps_per_s": round((done - start) / max(seconds, 1e-9), 3), **last}

    def _run(self, train_step, summary_fn, summary_fn_every) -> Dict[str, float]:
        restored = self.restore()
        start_step = int(self.step.numpy())
        # Timing record: segments beyond the restored step were lost with their checkpoints.
        self._earlier_segments = [seg for seg in timing.read_segments(self.root_dir)
                                  if seg["to_step"] <= start_step]
        self._segment = {"from_step": start_step, "to_step": start_step,
                         "wall_seconds": 0.0, "cpu_seconds": 0.0}
        self._segment_clock = (time.time(), time.process_time())
        # Speed and ETA come from steady-state steps: the clock starts after the first step,
        # which traces and compiles the graph, and restarts at every log line.
        window_step, window_t = start_step, time.time()
        last: Dict[str, float] = {}
        _checks_passed()  # settings, data and checkpoint passed: the run record may be written
        if start_step < self.total_steps:
            logging.info("step %d/%d: tracing and compiling the training step (the first step "
                         "takes longer)...", start_step, self.total_steps)
        stop = _StopRequest()
        previous_handlers = stop.install()
        try:
            with self.writer.as_default():
                while int(self.step.numpy()) < self.total_steps:
                    if stop.signum is not None:
                        self._stop(stop.signum)
                    outputs = train_step()
                    self.step.assign_add(1)
                    step = int(self.step.numpy())
                    if step == start_step + 1:
                        logging.info("step %d/%d: first step done in %.1f s", step,
                                     self.total_steps, time.time() - window_t)
                        window_step, window_t = step, time.time()
                    # Every step: the scalars are computed already, and the error must name
                    # the step that went non-finite, not the next logged one.
                    last = {k: float(v) for k, v in outputs.items()}
                    bad = {k: v for k, v in last.items() if not math.isfinite(v)}
                    out = {k: last[k] for k, (lo, hi) in self.bounds.items()
                           if k in last and not lo <= last[k] <= hi}
                    if out and not bad:
                        raise NonFiniteLossError(
                            f"Training diverged at step {step}: "
                            + ", ".join(f"{k} = {v:.4g} (allowed {self.bounds[k]})"
                                        for k, v in out.items())
                            + f"; weights were not saved. Last good checkpoint: "
                            f"{self._last_good()}. Lower the learning "
                            f"rate, then rerun to resume from it.")
                    if bad:
                        raise NonFiniteLossError(
                            f"Non-finite training scalars {bad} at step {step}; weights were "
                            f"not saved. Last good checkpoint: "
                            f"{self._last_good()}. Lower the learning "
                            f"rate or check the input data, then rerun to resume from it.")
                    if step % self.summary_every == 0:
                        for k, v in last.items():
                            tf.summary.scalar(k, v, step=step)
                    if summary_fn is not None and summary_fn_every and \
                            step % summary_fn_every == 0:
                        summary_fn(step)
                    if (step % self.log_every == 0 or step == self.total_steps) and \
                            step > window_step:
                        now = time.time()
                        rate = (step - window_step) / max(now - window_t, 1e-9)
                        window_step, window_t = step, now
                        eta = (self.total_steps - step) / max(rate, 1e-9)
                        logging.info("step %d/%d  %.2f steps/s  ETA %s  %s", step,
                                     self.total_steps, rate, _fmt_seconds(eta),
                                     "  ".join(f"{k}={v:.4g}" for k, v in last.items()))
                    if step % self.checkpoint_every == 0:
                        self.save()
            self.writer.flush()
            step = int(self.step.numpy())
            if (step > start_step or not restored) and \
                    self._saved_step != step:  # not saved at this step yet
                logging.info("step %d/%d: saving the final checkpoint...", step,
                             self.total_steps)
                self.save()
            if stop.signum is not None:  # arrived during the last step: saved, now stop
                self._stop(stop.signum)
        except KeyboardInterrupt:
            # A second signal (or an interrupt before the handlers were installed) stops in the
            # middle of a step: its counters may disagree, so nothing is saved.
            raise TrainingInterrupted(
                f"Stopped at once during step {int(self.step.numpy()) + 1} (a second "
                f"interrupt); that step was not saved. Last good checkpoint: "
                f"{self._last_good()}; rerun the same command to resume from it.",
                stop.signum or signal.SIGINT) from None
        except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError,
                tf.errors.CancelledError, tf.errors.AbortedError) as e:
            if self.task.num_workers < 2:
                raise
            lost = lost_workers(str(e), self.task) or ["another worker"]
            raise WorkerLostError(
                f"Lost {', '.join(lost)} of the {self.task.num_workers}-worker cluster at step "
                f"{int(self.step.numpy())} (this task: {self.task.task_type}:"
                f"{self.task.task_id}; {type(e).__name__}). Restart all workers with the same "
                f"command: they resume from the chief's last checkpoint, "
                f"{self._last_good()}.") from None
        finally:
            stop.uninstall(previous_handlers)
        return last

    def _stop(self, signum: int) -> None:
        """Ends the run at a step boundary after SIGTERM/Ctrl-C: saves (single process) and
        raises TrainingInterrupted naming the checkpoint."""
        name = signal.Signals(signum).name
        step = int(self.step.numpy())
        if self.task.num_workers > 1:
            # A save is a collective of all workers; one interrupted worker cannot make it.
            raise TrainingInterrupted(
                f"{name} at step {step}; a multi-worker run resumes from the chief's last "
                f"checkpoint ({self._last_good()}) when all workers are restarted.", signum)
        path = self._last_good() if self._saved_step == step else None
        if path is None:
            logging.warning("%s at step %d: saving a checkpoint before exiting.", name, step)
            path = self.save()
        raise TrainingInterrupted(f"{name}: stopped at step {step}, saved as {path}; rerun the "
                                  f"same command to resume.", signum)


class _StopRequest:
    """SIGTERM and Ctrl-C (SIGINT) handlers that ask the loop to stop at the next step boundary,
    so a checkpoint never holds a half-finished step (e.g. an agent's own step counter one ahead
    of the loop's). A second signal stops at once (KeyboardInterrupt), saving nothing."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.signum: Optional[int] = None

    def _handle(self, signum, frame):
        del frame
        if self.signum is not None:
            raise KeyboardInterrupt(signal.Signals(signum).name)
        self.signum = signum
        logging.warning("%s: finishing this step, then saving a checkpoint and stopping (send "
                        "it again to stop at once, without saving).",
                        signal.Signals(signum).name)

    def install(self) -> Optional[Dict[int, object]]:
        """Installs the handlers; returns the previous ones (None off the main thread)."""
        try:
            return {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        except ValueError:  # not in the main thread: leave signals alone
            return None

    @staticmethod
    def uninstall(previous: Optional[Dict[int, object]]) -> None:
        """Puts back the handlers :meth:`install` returned."""
        for s, handler in (previous or {}).items():
            signal.signal(s, handler)


def _fmt_seconds(seconds: float) -> str:
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h:d}:{m:02d}:{s:02d}"
