"""Nothing silently wrong: results that cannot miscount, run records that match their
checkpoints, verified means verified, one message per failure (docs/design.md, "Failure
behaviour"). Each test injects one fault on a tiny configuration and checks the outcome."""
import json
import os
import subprocess
import sys

import pytest

import mbold_tf
from mbold_tf.eval import results


def _run(args, env=None, **kwargs):
    """Runs ``python -m <args>`` from the repository root as a user would (no test-session TF
    log level); returns the CompletedProcess."""
    environ = {k: v for k, v in os.environ.items()
               if k not in ("TF_CPP_MIN_LOG_LEVEL", "MBOLD_VERBOSE")}
    environ.update(env or {})
    return subprocess.run([sys.executable, "-m"] + list(args), cwd=mbold_tf.REPO_ROOT,
                          capture_output=True, text=True, check=False, env=environ, **kwargs)


def _one_message(run, *needles):
    """The run failed with one message (no traceback) containing every needle."""
    assert run.returncode != 0, run.stdout[-2000:]
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    for needle in needles:
        assert needle in run.stderr, run.stderr[-3000:]


def _results_file(path, successes):
    episodes = []
    for g, success in enumerate(successes):
        metrics = {"goal_index": g, "success": 0.0, "start_object_distance": 0.2,
                   "object_distance": 0.1, "start_arm_distance": 0.2, "arm_distance": 0.1,
                   "object_displacement": 0.1, "object_moved": 1.0}
        episodes.append(results.episode_record("mbold", "predictor", "learned_distance", 0,
                                               metrics, 1.0))
        episodes[-1]["success"] = success
    header = results.make_header("reach", False, 0, len(successes), range(len(successes)), [0],
                                 "cmd", [], {}, {})
    with open(path, "w") as f:
        json.dump({"format": results.FORMAT, "version": results.VERSION, "header": header,
                   "episodes": episodes}, f)
    return path


@pytest.mark.parametrize("bad", [2, "yes", "1", 0.5, None, -1])
def test_a_success_outside_0_and_1_fails_naming_file_episode_and_field(tmp_path, bad):
    path = _results_file(str(tmp_path / "r.json"), [1, 0, bad, 1])
    with pytest.raises(results.ResultsFormatError,
                       match=r"r\.json: episode 2 .*has success = .*must be 0 or 1"):
        results.load_results(path)
    # Booleans and 0/1 are the values a results file holds; they load and count once.
    ok = results.load_results(_results_file(str(tmp_path / "ok.json"), [1, 0, True, False]))
    assert sum(e["success"] for e in ok["episodes"]) == 2


def test_report_of_a_success_of_2_prints_one_message_and_counts_nothing(tmp_path):
    path = _results_file(str(tmp_path / "two.json"), [1, 0, 2, 0])
    run = _run(["launch.report", path])
    _one_message(run, "two.json: episode 2", "success = 2")
    assert "%" not in run.stdout
