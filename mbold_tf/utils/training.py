"""A small, shared training loop: resumable checkpoints, TensorBoard scalars, progress, NaN guard.

Both the video predictor and the distance agent train through :class:`TrainingLoop`, so that every
long job behaves the same way: it resumes from the latest checkpoint in ``root_dir``, logs steps/s
and an ETA, writes scalar summaries, refuses to save non-finite weights, and saves a checkpoint
when it is interrupted (Ctrl-C or SIGTERM), so nothing is lost when a run is killed.

Each save also records how long training took in ``root_dir/timing.json``
(:func:`mbold_tf.utils.timing.training_time` reads it): one segment per process that trained the
run, with its steps, wall seconds and the process's CPU seconds (all threads). CPU time is the
budget measure that survives shared cores and pauses; wall time is what a user waits.
"""
from __future__ import annotations

import json
import math
import os
import signal
import time
from typing import Callable, Dict, List, Mapping, Optional, Tuple

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


def _remove_temporaries(ckpt_dir: str) -> None:
    """Deletes what an interrupted checkpoint write leaves (``*_temp`` directories, TF's
    ``checkpoint.tmp*`` state files); finished checkpoints are untouched."""
    if not os.path.isdir(ckpt_dir):
        return
    import shutil  # pylint: disable=g-import-not-at-top

    for name in sorted(os.listdir(ckpt_dir)):
        path = os.path.join(ckpt_dir, name)
        if name.startswith("checkpoint.tmp") or (name.endswith("_temp") and os.path.isdir(path)):
            if os.path.isdir(path):
                shutil.rmtree(path)
            else:
                os.remove(path)
            logging.info("Removed %s, left by an interrupted checkpoint write", path)


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
        self._saved_step = int(self.step.numpy())
        path = self.manager.save(checkpoint_number=self._saved_step)
        logging.info("Saved checkpoint %s", path)
        self._record_time()
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
        if start_step < self.total_steps:
            logging.info("step %d/%d: tracing and compiling the training step (the first step "
                         "takes longer)...", start_step, self.total_steps)
        previous_handler = _install_sigterm_handler()
        try:
            with self.writer.as_default():
                while int(self.step.numpy()) < self.total_steps:
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
        except KeyboardInterrupt:
            if self.task.num_workers > 1:
                # A save is a collective of all workers; one interrupted worker cannot make it.
                logging.warning("Interrupted at step %d; a multi-worker run resumes from the "
                                "chief's last checkpoint (%s) when all workers are restarted.",
                                int(self.step.numpy()), self._last_good())
                raise
            logging.warning("Interrupted at step %d; saving a checkpoint before exiting.",
                            int(self.step.numpy()))
            self.save()
            raise
        finally:
            if previous_handler is not None:
                signal.signal(signal.SIGTERM, previous_handler)
        return last


def _sigterm_to_interrupt(signum, frame):
    del signum, frame
    raise KeyboardInterrupt("SIGTERM")


def _install_sigterm_handler():
    try:
        return signal.signal(signal.SIGTERM, _sigterm_to_interrupt)
    except ValueError:  # not in the main thread: leave signals alone
        return None


def _fmt_seconds(seconds: float) -> str:
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h:d}:{m:02d}:{s:02d}"
