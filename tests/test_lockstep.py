"""Lockstep evaluation: episodes of several goals and seeds planned as one batch give the
sequential path's records, resume mid-block identically, and refuse a batch beyond memory."""
import json
import os

import gin
import numpy as np
import pytest
import tensorflow as tf

import mbold_tf
from mbold_tf.agents import distances
from mbold_tf.envs import goals
from mbold_tf.eval import episode_runner
from mbold_tf.eval import policy_eval
from mbold_tf.models import distance_networks as dn
from mbold_tf.models import video_predictor
from mbold_tf.planning import cem
from mbold_tf import configurables  # noqa: F401  (the tiny presets bind the trainers too)

TINY = [os.path.join(mbold_tf.REPO_ROOT, "gin", "presets", "tiny", f)
        for f in ("predictor.gin", "distance.gin", "planner.gin")]
METHODS = ["mbold", "q_only", "random"]


@pytest.fixture(scope="module")
def tiny():
    """Untrained tiny predictor and distance (gin/presets/tiny), 3 reach goals."""
    gin.clear_config()
    gin.parse_config_files_and_bindings(TINY, [])
    predictor = video_predictor.VideoPredictor()
    predictor.build_variables()
    nets = dn.build_networks(dn.network_settings(), act_spec=dn.action_spec(4))
    models = {"predictor": predictor, "distance": distances.LearnedDistance(*nets)}
    yield models, goals.generate_goal_set("reach", num_goals=3, seed=5)
    gin.clear_config()


def _evaluate(tiny, out, lockstep):
    models, goal_set = tiny
    return policy_eval.evaluate_methods(goal_set, METHODS, models, seeds=[0, 1], out_dir=out,
                                        num_gifs=1, command="pytest", model_dirs={},
                                        lockstep=lockstep)


def _strip(data):
    return [{k: v for k, v in e.items() if k != "seconds"} for e in data["episodes"]]


@pytest.fixture(scope="module")
def both(tiny, tmp_path_factory):
    """The same 3 goals × 2 seeds × 3 methods, one episode at a time and 4 at once."""
    seq_out = str(tmp_path_factory.mktemp("seq"))
    seq = _evaluate(tiny, seq_out, 1)
    out = str(tmp_path_factory.mktemp("lockstep"))
    lock = _evaluate(tiny, out, 4)
    seq["gifs"] = sorted(os.listdir(os.path.join(seq_out, "gifs")))
    lock["gifs"] = sorted(os.listdir(os.path.join(out, "gifs")))
    return seq, lock, out


def test_lockstep_records_equal_the_sequential_ones(both):
    seq, lock, _ = both
    assert len(seq["episodes"]) == 18
    assert _strip(lock) == _strip(seq)
    # the same GIFs (every success, each cell and seed's first failure, the first goal of
    # seed 0), seed 1 included
    assert lock["gifs"] == seq["gifs"]
    assert any("seed1_" in name for name in seq["gifs"]), seq["gifs"]
    # the seeds plan differently (else equality would not show that each keeps its own)
    by = {(e["method"], e["seed"], e["goal_index"]): e for e in seq["episodes"]}
    assert any(by[("mbold", 0, g)]["arm_distance"] != by[("mbold", 1, g)]["arm_distance"]
               for g in range(3))


def test_a_resume_in_the_middle_of_a_lockstep_block_continues_identically(tiny, both,
                                                                          monkeypatch):
    _, lock, out = both
    path = os.path.join(out, policy_eval.RESULTS_NAME)
    with open(path) as f:
        data = json.load(f)
    # Killed after 2 episodes of mbold's first block of 4 (seed 0, goals 0-1) were written.
    data["episodes"] = data["episodes"][:2]
    with open(path, "w") as f:
        json.dump(data, f)
    ran = []
    original = episode_runner.EpisodeRunner.run_lockstep
    monkeypatch.setattr(episode_runner.EpisodeRunner, "run_lockstep",
                        lambda self, method, model, block, **k: ran.append((method, block))
                        or original(self, method, model, block, **k))
    again = _evaluate(tiny, out, 4)
    assert _strip(again) == _strip(lock)
    assert ran[0] == ("mbold", [(0, 2), (1, 0), (1, 1), (1, 2)])
    assert sum(len(b) for _, b in ran) == 16


def test_lockstep_cem_equals_cem_of_each_element():
    """cem_batch over 3 problems (two of one seed, other means) = cem() of each, bit for bit."""
    rng = np.random.default_rng(0)
    targets = tf.constant(rng.uniform(-0.6, 0.6, (3, 6, 2)), tf.float32)
    means = tf.constant(rng.uniform(-0.3, 0.3, (3, 6, 2)), tf.float32)
    seeds = tf.constant([[0, 1], [7, 3], [0, 1]], tf.int64)
    for refit in cem.REFIT_RULES:
        config = cem.CEMConfig(num_samples=50, num_elites=5, iterations=3, horizon=6,
                               refit=refit)
        best, cost = cem.cem_batch(lambda a: tf.reduce_sum((a - targets[:, None]) ** 2, [2, 3]),
                                   means, tf.constant([0.6, 0.3]), seeds, config)
        for b in range(3):
            one, one_cost = cem.cem(lambda a: tf.reduce_sum((a - targets[b]) ** 2, [1, 2]),  # noqa: B023
                                    means[b], tf.constant([0.6, 0.3]), seeds[b], config)
            np.testing.assert_array_equal(best[b].numpy(), one.numpy())
            assert cost[b].numpy() == one_cost.numpy()


def test_a_lockstep_batch_beyond_memory_fails_naming_the_setting(tiny):
    models, goal_set = tiny
    runner = episode_runner.EpisodeRunner(goal_set, models)
    try:
        cells = policy_eval.evaluation_grid(METHODS, ["predictor"])
        policy_eval.check_lockstep_memory(runner, cells, 20, available=10 ** 12)
        with pytest.raises(policy_eval.EvaluationSetupError,
                           match=r"--lockstep=20 would need about .* GB .*'mbold'"):
            policy_eval.check_lockstep_memory(runner, cells, 20, available=10 ** 6)
    finally:
        runner.close()
