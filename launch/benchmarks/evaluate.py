"""``python -m launch.benchmark evaluate``: one small MBOLD evaluation sequentially and in
lockstep, in one run, and the ratio of their wall times.

The CPU preset's predictor, distance networks and planner (``gin/presets/cpu``; the tiny preset
with ``--quick``), with their initial weights (the weights' values do not change the cost of
planning), evaluate MBOLD on the first push1 goals for seed 0 through
:func:`mbold_tf.eval.policy_eval.evaluate_methods`, once one episode at a time
(``lockstep=1``) and once all of them together (``lockstep`` = the number of goals). Reports
both wall times (models built, policies traced and episodes run), ``speedup`` (sequential over
lockstep), whether every episode record (but its wall time) is identical, and the load average.
"""
import os
import tempfile
import time

import gin

import mbold_tf
from mbold_tf.agents import distances
from mbold_tf.envs import goals
from mbold_tf.eval import policy_eval
from mbold_tf.models import distance_networks as dn
from mbold_tf.models import video_predictor
from mbold_tf.planning import cem
# The preset gin files also bind the training functions: register them before parsing.
from mbold_tf import configurables  # noqa: F401  (registers every gin configurable)

PRESET_FILES = ("predictor.gin", "distance.gin", "planner.gin")


def _timed_evaluation(goal_set, models, out: str, lockstep: int) -> tuple:
    """(seconds, results dict) of evaluating MBOLD on every goal of ``goal_set``, seed 0."""
    t0 = time.perf_counter()
    data = policy_eval.evaluate_methods(goal_set, ["mbold"], models, seeds=[0], out_dir=out,
                                        num_gifs=0, command="launch.benchmark evaluate",
                                        model_dirs={}, lockstep=lockstep)
    return time.perf_counter() - t0, data


def run(quick: bool) -> dict:
    """Sequential and lockstep wall times of one small evaluation, and their ratio."""
    preset, num_goals = ("tiny", 4) if quick else ("cpu", 10)
    gin.clear_config()
    gin.parse_config_files_and_bindings(
        [os.path.join(mbold_tf.REPO_ROOT, "gin", "presets", preset, f) for f in PRESET_FILES],
        [])
    predictor = video_predictor.VideoPredictor()
    predictor.build_variables()
    nets = dn.build_networks(dn.network_settings(), act_spec=dn.action_spec(4))
    models = {"predictor": predictor, "distance": distances.LearnedDistance(*nets)}
    goal_set = goals.generate_goal_set("push1", num_goals=num_goals, seed=0)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        seq_s, seq = _timed_evaluation(goal_set, models, os.path.join(tmp, "seq"), 1)
        lock_s, lock = _timed_evaluation(goal_set, models, os.path.join(tmp, "lockstep"),
                                         num_goals)

    def strip(data):
        return [{k: v for k, v in e.items() if k != "seconds"} for e in data["episodes"]]

    config = cem.CEMConfig()
    return {"preset": preset, "method": "mbold", "task": "push1", "goals": num_goals,
            "seeds": 1, "samples": config.num_samples, "iterations": config.iterations,
            "horizon": config.horizon, "sequential_s": round(seq_s, 1),
            "lockstep": num_goals, "lockstep_s": round(lock_s, 1),
            "speedup": round(seq_s / lock_s, 2), "identical_records": strip(seq) == strip(lock),
            "successes": [sum(e["success"] for e in d["episodes"]) for d in (seq, lock)],
            "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)]}
