"""``python -m launch.benchmark distance``: distance-agent train steps/s and Q evaluations/s.

Random uint8 images (no dataset needed). Train steps: ``CqlTd3Agent.train`` on 2-step
trajectories at batch 64 (paper networks, App. A.1, and the CPU preset's 2-layer MLPs).
Q evaluations: ``LearnedDistance.q_values`` (actor action, min of twin critics) at batch 2600
= 200 CEM samples × 13 predicted frames, uint8 and float32 inputs. Both report their counted
FLOPs (:mod:`mbold_tf.utils.flops`: one train step's graph, one Q evaluation) and the achieved
GFLOP/s as a fraction of this CPU's fp32 peak.
"""
import time

import numpy as np
import tensorflow as tf

from mbold_tf.agents import cql_td3_agent
from mbold_tf.agents import distances
from mbold_tf.models import distance_networks as dn
from mbold_tf.training import distance as distance_training
from mbold_tf.utils import flops


def random_transitions(rng, b):
    """Random relabelled transitions (uint8 images [b, 64, 64, 3], actions [b, 4], rewards and
    discounts [b], 30% reached): the distance pipeline's batch without a dataset."""
    img = lambda: tf.constant(rng.integers(0, 256, (b, 64, 64, 3), dtype=np.uint8))
    reached = rng.random(b) < 0.3
    return {"observation": img(), "next_observation": img(), "goal": img(),
            "action": tf.constant(rng.uniform(-1, 1, (b, 4)).astype(np.float32)),
            "reward": tf.constant(reached.astype(np.float32)),
            "discount": tf.constant(1.0 - reached.astype(np.float32))}


def calls_per_s(fn, n):
    """Calls of ``fn()`` per second over ``n`` calls, after two warm-up calls (tracing)."""
    fn()  # trace / warm up
    fn()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return n / (time.perf_counter() - t0)


def _one(networks, quick, rng):
    settings = {"method": "cql_td3", "action_dim": 4, "gamma": 0.8, "networks": networks,
                "reward_scheme": "indicator", "learning_rate": 3e-4, "cql_tau": 3.0}
    agent, (actor, c1, c2) = distance_training.build_agent(settings)
    traj = cql_td3_agent.trajectory_from_batch(random_transitions(rng, 64))
    train = tf.function(lambda: agent.train(traj).loss)
    t0 = time.perf_counter()
    train()
    trace_s = time.perf_counter() - t0
    steps = calls_per_s(lambda: train().numpy(), 5 if quick else 30)
    ld = distances.LearnedDistance(actor, c1, c2)
    b = 260 if quick else 2600
    img = rng.integers(0, 256, (b, 64, 64, 3), dtype=np.uint8)
    goal = rng.integers(0, 256, (b, 64, 64, 3), dtype=np.uint8)
    q_u8 = calls_per_s(lambda: ld.q_values(img, goal).numpy(), 2 if quick else 5) * b
    imgf, goalf = img.astype(np.float32) / 255, goal.astype(np.float32) / 255
    q_f32 = calls_per_s(lambda: ld.q_values(imgf, goalf).numpy(), 2 if quick else 5) * b
    train_flops = flops.graph_flops(lambda: agent.train(traj).loss)
    # The compiled Q of uint8 inputs, unwrapped: the profiler counts ops of the top graph only.
    q_fn = ld._q_policy["uint8"].python_function  # pylint: disable=protected-access
    q_flops = flops.graph_flops(q_fn, tf.TensorSpec([2, 64, 64, 3], tf.uint8),
                                tf.TensorSpec([2, 64, 64, 3], tf.uint8)) / 2
    return {"train_steps_per_s_batch64": round(steps, 2), "train_trace_s": round(trace_s, 1),
            "train_gflop_per_step": round(train_flops / 1e9, 3),
            "train_utilisation": flops.utilisation(train_flops * steps, 1.0),
            "q_mflop_per_eval": round(q_flops / 1e6, 2),
            "q_utilisation": flops.utilisation(q_flops * q_u8, 1.0),
            f"q_evals_per_s_batch{b}_uint8": round(q_u8, 1),
            f"q_evals_per_s_batch{b}_float32": round(q_f32, 1),
            "cem_iteration_q_s": round(b / q_u8, 3)}


def run(quick: bool = False) -> dict:
    rng = np.random.default_rng(0)
    out = {"device": "GPU" if tf.config.list_physical_devices("GPU") else "CPU"}
    out["paper_networks"] = _one(dn.network_settings(), quick, rng)
    out["cpu_preset_networks"] = _one(dn.network_settings(critic_fc_layers=2, actor_fc_layers=2),
                                      quick, rng)
    steps = out["paper_networks"]["train_steps_per_s_batch64"]
    out["paper_93750_steps_estimate_h"] = round(93750 / max(steps, 1e-9) / 3600, 1)
    return out
