"""Robot-side runner for an exported MBOLD policy: needs only numpy and TensorFlow.

Copy this one file to the robot computer (it imports neither ``mbold_tf`` nor ``tf_agents``)::

    policy = RobotPolicy("/path/to/export")      # the directory launch.export wrote
    policy.reset()                                # at the start of every episode
    action = policy.act({"image": img, "goal_image": goal, "joint_pos": q, "gripper": g})

``act`` checks every observation entry against the exported spec (key, shape, dtype) and raises
a ValueError naming the entry, the shape/dtype received and the one expected (an entry the export
does not know is ignored, with one warning). The returned action is always finite and inside the
exported bounds (non-finite entries become 0, then clipped). This class is the checked entry
point: calling the raw SavedModel with wrong shapes gives TensorFlow's signature dump instead.

**Deadline.** ``RobotPolicy(dir, deadline_s=0.1)`` never blocks the control loop for longer than
the control period: the policy runs in a worker thread, and when a call (a replan) has not
answered within ``deadline_s`` the runner returns the next action of the previous plan (zeros
when there is none) and logs it. The late call's plan is adopted when it arrives, skipping the
actions executed meanwhile. :meth:`RobotPolicy.latency` reports p50 / p95 / max seconds per
``act``, the number of deadline misses and the largest overrun past the deadline.

**Warm-up.** Loading runs the policy on a blank observation (zeros of the exported spec) before
the first ``act``: the first call (graph optimisation and a plan), a step after it and a second
plan, timed and logged (:attr:`RobotPolicy.warm_up_s`), so the robot's first steps do not pay the
tracing. While the second plan runs in the worker thread, the runner also measures how late a
timed wait wakes up on this machine (``wake_margin_s``, at most half the deadline) and thereafter
stops waiting that much before the deadline, so an overrun stays within the deadline plus that
margin. ``holds_deadline_s`` (a plan plus the margin) is the shortest deadline at which replans
answer in time here; a shorter deadline is logged as such (its replans fall back on the previous
plan, zeros before the first plan arrives). ``launch.export`` records these numbers, with the
machine and its load, in ``mbold_export.json`` (``measured_on_export``).

Run as a script it steps an environment with the policy::

    python mbold_tf/export/robot_side.py --policy_dir=export/push1 \\
        --env=mbold_tf.envs.goal_env:make_env --env_args='{"task": "push1", "goal": 0}'

``--env`` is ``module:callable`` returning a TF-Agents ``PyEnvironment``-like or ``dm_env``
environment whose observations are dicts holding the exported keys (the simulator is the only
thing that may import the training package; the policy path never does). ``--inputs=x.npz
--outputs=y.npz`` instead replays recorded observations (arrays ``<key>`` of shape [T, ...]) and
saves the actions, for checking an export against the training process.
"""
from __future__ import annotations

import argparse
import collections
from concurrent import futures
import importlib
import json
import logging
import os
import sys
import time
from typing import Dict, List, Mapping, Optional

import numpy as np
import tensorflow as tf

EXPORT_FORMAT_VERSION = 1
METADATA_FILE = "mbold_export.json"

_log = logging.getLogger(__name__)
_TimeStep = collections.namedtuple("TimeStep", ["step_type", "reward", "discount", "observation"])
_FIRST, _MID = 0, 1


class ExportError(RuntimeError):
    """The export directory is missing, incomplete or from another format version."""


def read_metadata(policy_dir: str) -> Dict:
    """The export's ``mbold_export.json``, after checking the directory and format version."""
    if not os.path.isdir(policy_dir):
        raise ExportError(f"No exported policy at {policy_dir!r}: the directory does not exist. "
                          f"Export one with `python -m launch.export --out={policy_dir} ...`.")
    path = os.path.join(policy_dir, METADATA_FILE)
    if not os.path.exists(path) or not os.path.exists(os.path.join(policy_dir,
                                                                   "saved_model.pb")):
        raise ExportError(f"{policy_dir!r} is not an mbold-tf export (missing {METADATA_FILE} or "
                          f"saved_model.pb); re-export it with launch.export.")
    with open(path) as f:
        try:
            meta = json.load(f)
        except json.JSONDecodeError as e:
            raise ExportError(f"{path} is not valid JSON ({e}); the export is damaged: "
                              f"re-export the policy with launch.export.") from None
    version = meta.get("format_version") if isinstance(meta, dict) else None
    if version != EXPORT_FORMAT_VERSION:
        raise ExportError(f"{policy_dir!r} was exported with format version {version}; this "
                          f"runner reads version {EXPORT_FORMAT_VERSION}. Re-export the policy "
                          f"with the matching mbold-tf release.")
    return meta


class RobotPolicy:
    """An exported policy, stepped one observation at a time (batch 1).

    Args:
      policy_dir: the directory ``launch.export`` wrote.
      deadline_s: answer every ``act`` within this many seconds (see the module docstring);
        None waits for the policy however long it takes.
      warm_up: run and time the policy on a blank observation at load (the module docstring);
        the result is :attr:`warm_up_s` (None without).
    """

    def __init__(self, policy_dir: str, deadline_s: Optional[float] = None,
                 warm_up: bool = True):
        if deadline_s is not None and not deadline_s > 0:
            raise ValueError(f"deadline_s must be positive seconds or None; got {deadline_s!r}.")
        self.metadata = read_metadata(policy_dir)
        try:
            self._policy = tf.saved_model.load(policy_dir)
        except Exception as e:  # pylint: disable=broad-except  # TF raises many kinds here
            raise ExportError(
                f"The SavedModel in {policy_dir!r} cannot be loaded ({type(e).__name__}: "
                f"{str(e).strip()[:200]}); its saved_model.pb or variables/ files are damaged: "
                f"re-export the policy with launch.export.") from None
        saved_version = int(self._policy.get_metadata()["export_format_version"].numpy())
        if saved_version != EXPORT_FORMAT_VERSION:
            raise ExportError(f"SavedModel in {policy_dir!r} has format version {saved_version}, "
                              f"expected {EXPORT_FORMAT_VERSION}.")
        spec = self.metadata["action"]
        self._low = np.asarray(spec["minimum"], np.float32)
        self._high = np.asarray(spec["maximum"], np.float32)
        self._obs_spec = self.metadata["observation"]
        self._state = None
        self._first = True
        self._warned_keys = set()
        self.deadline_s = deadline_s
        self._worker = futures.ThreadPoolExecutor(1, thread_name_prefix="policy") \
            if deadline_s is not None else None
        self._pending: Optional[futures.Future] = None
        self._plan: Optional[np.ndarray] = None   # [h, A] of the last plan, when exported
        self._plan_pos = 0                        # its next action
        self._fallbacks_since_call = 0
        self._latencies: List[float] = []
        self.deadline_misses = 0
        self._margin_s = 0.0  # stop waiting this much before the deadline (measured)
        self.warm_up_s: Optional[Dict[str, float]] = self._warm_up() if warm_up else None

    def _warm_up(self) -> Dict[str, float]:
        """Runs the policy on a blank observation: a first call, a step after it and a second
        plan (in the worker thread, sampling how late timed waits wake meanwhile); returns the
        seconds of each, ``wake_margin_s`` and ``holds_deadline_s``, and logs them."""
        blank = {k: np.zeros(spec["shape"], spec["dtype"])[None]
                 for k, spec in self._obs_spec.items()}
        state = self._policy.get_initial_state(1)
        t0 = time.monotonic()
        out = self._call(blank, state, True)
        first = time.monotonic() - t0
        t0 = time.monotonic()
        self._call(blank, out.state, False)
        step = time.monotonic() - t0
        worker = self._worker or futures.ThreadPoolExecutor(1, thread_name_prefix="warm_up")
        late = [0.0]
        t0 = time.monotonic()
        pending = worker.submit(self._call, blank, state, True)
        while True:
            wait_start = time.monotonic()
            try:
                pending.result(timeout=0.01)
                break
            except futures.TimeoutError:
                late.append(time.monotonic() - wait_start - 0.01)
        plan = time.monotonic() - t0
        if worker is not self._worker:
            worker.shutdown()
        margin = max(late)
        if self.deadline_s is not None:
            self._margin_s = min(margin, self.deadline_s / 2)
        result = {"first_call_s": round(first, 4), "step_s": round(step, 4),
                  "plan_s": round(plan, 4), "wake_margin_s": round(margin, 4),
                  "holds_deadline_s": round(plan + margin, 4)}
        _log.info("Warm-up on a blank observation: first call %.2f s (graph optimisation "
                     "and a plan), a step after it %.3f s, a plan %.2f s; timed waits wake up "
                     "to %.3f s late meanwhile. Replans answer in time for deadlines of %.2f s "
                     "or more on this machine now.", first, step, plan, margin,
                     result["holds_deadline_s"])
        if self.deadline_s is not None and self.deadline_s < result["holds_deadline_s"]:
            _log.warning("deadline_s = %.3f s is shorter than a plan here (%.2f s): every "
                         "replan overruns it, and act() returns the previous plan's next "
                         "action meanwhile (zeros until the first plan of an episode arrives).",
                         self.deadline_s, plan)
        return result

    def reset(self) -> None:
        """Starts a new episode (fresh plan, step counter 0)."""
        if self._pending is not None:
            self._pending.result()  # let a late call finish; its result is for the last episode
            self._pending = None
        self._state = self._policy.get_initial_state(1)
        self._first = True
        self._plan, self._plan_pos = None, 0

    def latency(self) -> Dict[str, float]:
        """Seconds per ``act`` so far: p50, p95, max, calls and deadline misses (counts) and,
        with a deadline, ``max_overrun_s`` (the longest ``act`` past it)."""
        if not self._latencies:
            return {"calls": 0, "deadline_misses": self.deadline_misses}
        lat = np.asarray(self._latencies)
        out = {"calls": int(lat.size), "p50": float(np.percentile(lat, 50)),
               "p95": float(np.percentile(lat, 95)), "max": float(lat.max()),
               "deadline_misses": self.deadline_misses}
        if self.deadline_s is not None:
            out["max_overrun_s"] = max(0.0, float(lat.max()) - self.deadline_s)
        return out

    def check_observation(self, observation: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Validates an unbatched observation dict; returns it batched ([1, ...]) as numpy."""
        batched = {}
        extra = set(observation) - set(self._obs_spec) - self._warned_keys
        if extra:
            self._warned_keys |= extra
            _log.warning("Observation entries %s are not in the export's spec %s; they are "
                            "ignored.", sorted(extra), sorted(self._obs_spec))
        for key, spec in self._obs_spec.items():
            if key not in observation:
                raise ValueError(f"Observation is missing {key!r} (expected shape "
                                 f"{tuple(spec['shape'])}, dtype {spec['dtype']}); got keys "
                                 f"{sorted(observation)}.")
            value = np.asarray(observation[key])
            if tuple(value.shape) != tuple(spec["shape"]):
                raise ValueError(f"Observation {key!r} has shape {value.shape}; the exported "
                                 f"policy expects {tuple(spec['shape'])}.")
            if value.dtype.name != spec["dtype"]:
                raise ValueError(f"Observation {key!r} has dtype {value.dtype.name}; the "
                                 f"exported policy expects {spec['dtype']}.")
            if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
                raise ValueError(f"Observation {key!r} contains NaN or infinite values.")
            batched[key] = value[None]
        return batched

    def _call(self, obs, state, first):
        step_type = _FIRST if first else _MID
        time_step = _TimeStep(tf.constant([step_type], tf.int32), tf.zeros([1], tf.float32),
                              tf.ones([1], tf.float32), obs)
        return self._policy.action(time_step, state)

    def _adopt(self, out, skipped: int) -> np.ndarray:
        """Takes a finished call's state; returns its action (or, for a call that answered
        late, the action of its plan after the ``skipped`` ones executed meanwhile)."""
        self._state = out.state
        self._first = False
        action = np.asarray(out.action)[0]
        plan = out.state.get("plan") if isinstance(out.state, dict) else None
        if plan is not None:
            plan = np.asarray(plan)[0]
            # The returned action is plan[k] for some k; the runner continues after it.
            k = int(np.argmin(np.abs(plan - action).sum(axis=-1)))
            self._plan, self._plan_pos = plan, k + 1 + skipped
            if skipped:
                action = self._next_from_plan()
        return action

    def _next_from_plan(self) -> np.ndarray:
        if self._plan is None or self._plan_pos >= len(self._plan):
            return np.zeros_like(self._low)
        action = self._plan[self._plan_pos]
        self._plan_pos += 1
        return action

    def act(self, observation: Mapping[str, np.ndarray]) -> np.ndarray:
        """float32 [A] action for one observation dict; finite and within the bounds.

        With a deadline, answers within ``deadline_s`` plus a bounded margin (the error of the
        wake-up lateness measured at warm-up; see ``latency()['max_overrun_s']``).
        """
        start = time.monotonic()
        if self._state is None:
            self.reset()
        obs = self.check_observation(observation)
        if self._worker is None:
            action = self._adopt(self._call(obs, self._state, self._first), 0)
        else:
            if self._pending is None:  # no call in flight: plan from this observation
                self._pending = self._worker.submit(self._call, obs, self._state, self._first)
                self._fallbacks_since_call = 0
            try:
                # The measured wake-up lateness is taken off the wait, so that the answer
                # comes within the deadline plus (at most) the margin's error.
                out = self._pending.result(timeout=max(0.0, self.deadline_s - self._margin_s -
                                                       (time.monotonic() - start)))
                self._pending = None
                action = self._adopt(out, self._fallbacks_since_call)
            except futures.TimeoutError:
                self.deadline_misses += 1
                self._fallbacks_since_call += 1
                action = self._next_from_plan()
                _log.warning("The policy missed the %.3f s deadline; executing %s.",
                                self.deadline_s, "the previous plan's next action"
                                if self._plan is not None and
                                self._plan_pos <= len(self._plan) else "a zero action")
        self._latencies.append(time.monotonic() - start)
        action = np.asarray(action, np.float32)
        action = np.where(np.isfinite(action), action, 0.0).astype(np.float32)
        return np.clip(action, self._low, self._high)


def _observation_dict(obs) -> Dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in dict(obs).items()}


def _is_last(time_step) -> bool:
    """dm_env ``TimeStep.last()`` or TF-Agents ``TimeStep.is_last()``."""
    return bool(time_step.last() if hasattr(time_step, "last") else time_step.is_last())


def run_episode(policy: RobotPolicy, env, max_steps: int = 1000) -> Dict[str, float]:
    """Steps ``env`` (PyEnvironment or dm_env) with ``policy`` for one episode."""
    time_step = env.reset()
    policy.reset()
    steps, total = 0, 0.0
    while not _is_last(time_step):
        action = policy.act(_observation_dict(time_step.observation))
        time_step = env.step(action)
        if time_step.reward is not None:
            total += float(np.asarray(time_step.reward))
        steps += 1
        if steps >= max_steps:
            break
    return {"steps": steps, "return": total}


def _replay(policy: RobotPolicy, inputs: str, outputs: str) -> None:
    data = np.load(inputs)
    keys = list(policy.metadata["observation"])
    length = len(data[keys[0]])
    policy.reset()
    actions = [policy.act({k: data[k][t] for k in keys}) for t in range(length)]
    np.savez(outputs, actions=np.stack(actions),
             loaded_modules=np.array(sorted(m for m in sys.modules
                                            if m.split(".")[0] in ("mbold_tf", "tf_agents"))))


def main(argv=None) -> None:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--policy_dir", required=True)
    parser.add_argument("--inputs", help="npz of recorded observations to replay")
    parser.add_argument("--outputs", help="npz to write the replayed actions to")
    parser.add_argument("--env", help="module:callable returning the environment")
    parser.add_argument("--env_args", default="{}", help="JSON kwargs for --env")
    parser.add_argument("--episodes", type=int, default=1)
    parser.add_argument("--deadline_s", type=float, default=None,
                        help="answer every step within this many seconds (see RobotPolicy)")
    args = parser.parse_args(argv)
    try:
        policy = RobotPolicy(args.policy_dir, deadline_s=args.deadline_s)
    except (ExportError, ValueError) as e:
        sys.exit(f"robot_side: {e}")
    print(json.dumps({"warm_up_s": policy.warm_up_s}))
    if args.inputs:
        _replay(policy, args.inputs, args.outputs or "actions.npz")
        return
    if not args.env:
        parser.error("give --env (module:callable) to step an environment, or --inputs")
    module, _, attr = args.env.partition(":")
    env = getattr(importlib.import_module(module), attr)(**json.loads(args.env_args))
    for episode in range(args.episodes):
        print(json.dumps({"episode": episode, **run_episode(policy, env)}))
    print(json.dumps({"latency_s": policy.latency()}))


if __name__ == "__main__":
    main()
