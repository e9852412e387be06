"""``python -m launch.benchmark planner``: time of one full CEM replan, in process and exported.

For the CPU and paper configurations (``gin/presets/cpu`` and ``gin/paper``: predictor size and
CEM samples/iterations), builds the MBOLD policy (video predictor + learned distance + CEM, the
weights' values do not change the cost of a replan), and measures

* ``replan_s``: one full replan (N samples × I iterations, h = 13 predicted frames each, scored
  by the critics at the actor's action) through the compiled ``TFPolicy.action``;
* ``exported_replan_s``: the same through the ``PolicySaver`` SavedModel loaded by the TF-only
  robot-side runner;
* ``s_per_executed_action``: replan time × replans per episode / episode length, with the
  preset's schedule (every ``replan_every`` steps, every step over the last
  ``closed_loop_final_steps``); the paper's planner needs about 2 s per executed action;
* ``predictor_utilisation``: the predictor's counted FLOPs in a replan over ``replan_s``, as
  GFLOP/s and as a fraction of this CPU's fp32 peak (:mod:`mbold_tf.utils.flops`, which sets the
  peak from the CPU's vector flags);
* ``lockstep`` (CPU configuration): for 1, 5 and 20 episodes planned together
  (``make_policy(..., episode_seeds=True)``, as ``launch.evaluate --lockstep``), one replan of
  all of them, ``planning_episodes_per_hour`` (planning time only: replans per episode × the
  replan's time over the episodes) and the predictor's share of peak, in float32 and, where
  the CPU has bfloat16 instructions, with the models computing in bfloat16
  (``load_models.precision = 'mixed_bfloat16'``; its share is still of the fp32 peak).
"""
import os
import statistics
import tempfile
import time

import gin
import numpy as np
import tensorflow as tf

import mbold_tf
from mbold_tf.agents import distances
from mbold_tf.envs import goal_env
from mbold_tf.envs import tasks
from mbold_tf.export import robot_side
from mbold_tf.export import saved_model
from mbold_tf.models import distance_networks as dn
from mbold_tf.models import video_predictor
from mbold_tf.planning import cem
from mbold_tf.planning import factory
from mbold_tf.planning import mpc_policy
# The preset gin files also bind the training functions: register them before parsing.
from mbold_tf import configurables  # noqa: F401  (registers every gin configurable)
from mbold_tf.utils import flops
from mbold_tf.utils import precision as precision_lib
from launch.benchmarks import predictor as predictor_benchmark

# Planning precisions the lockstep entry times: bfloat16 only where the CPU has it (elsewhere
# load_models refuses it, and emulated bfloat16 is slower than float32).
PLANNING_PRECISIONS = ("float32",) + (("mixed_bfloat16",) if precision_lib.cpu_has_bf16()
                                       else ())
CONFIGS = {"cpu": ("presets/cpu/predictor.gin", "presets/cpu/planner.gin"),
           "paper": ("paper/predictor.gin", "paper/planner.gin"),
           # the device check's --quick smoke run (networks of the tiny distance too)
           "tiny": ("presets/tiny/predictor.gin", "presets/tiny/planner.gin",
                    "presets/tiny/distance.gin")}


def _observation(rng):
    return {"image": rng.integers(0, 256, (64, 64, 3), dtype=np.uint8),
            "goal_image": rng.integers(0, 256, (64, 64, 3), dtype=np.uint8),
            "joint_pos": rng.normal(size=7).astype(np.float32),
            "gripper": np.zeros(2, np.float32)}


def _batched_time_step(time_step_spec, obs):
    from tf_agents.trajectories import time_step as ts  # pylint: disable=g-import-not-at-top
    return ts.restart({k: tf.constant(v[None]) for k, v in obs.items()}, batch_size=1)


def _median_time(fn, repeats: int) -> float:
    fn()  # warm-up: tracing and compilation
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _one_config(name: str, repeats: int) -> dict:
    gin.clear_config()
    gin.parse_config_files_and_bindings(
        [os.path.join(mbold_tf.REPO_ROOT, "gin", f) for f in CONFIGS[name]], [])
    config = cem.CEMConfig()
    predictor = video_predictor.VideoPredictor()
    actor, critic1, critic2 = dn.build_networks(dn.network_settings(),
                                                act_spec=dn.action_spec(4))
    distance = distances.LearnedDistance(actor, critic1, critic2)
    time_step_spec, action_spec = goal_env.tf_specs()
    policy = factory.make_policy("mbold", time_step_spec, action_spec,
                                 tasks.task_spec("push1").collection_std,
                                 {"predictor": predictor, "distance": distance})
    obs = _observation(np.random.default_rng(0))
    time_step = _batched_time_step(time_step_spec, obs)
    action_fn = tf.function(policy.action)
    state = policy.get_initial_state(1)  # step 0: every call replans
    replan = _median_time(lambda: action_fn(time_step, state).action.numpy(), repeats)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "policy")
        saved_model.export_policy(policy, path)
        robot = robot_side.RobotPolicy(path)

        def exported_step():
            robot.reset()
            return robot.act(obs)

        exported = _median_time(exported_step, repeats)
    replan_every = gin.query_parameter("make_policy.replan_every")
    length = gin.query_parameter("make_policy.episode_length")
    final = gin.query_parameter("make_policy.closed_loop_final_steps")
    actor_steps = gin.query_parameter("make_policy.final_actor_steps")
    replans = mpc_policy.replans_per_episode(length, replan_every, final, actor_steps)
    per_action = replan * replans / length
    per_frame = predictor_benchmark.frame_flops(predictor)  # the replan's dominant cost
    lockstep = {}
    if name == "cpu":
        batches = (1, 2) if repeats == 1 else (1, 5, 20)
        for prec in PLANNING_PRECISIONS:
            with precision_lib.keras_policy(prec):  # the models compute in this precision
                models = {"predictor": video_predictor.VideoPredictor().build_variables(),
                          "distance": distances.LearnedDistance(*dn.build_networks(
                              dn.network_settings(), act_spec=dn.action_spec(4)))}
            lockstep[prec] = _lockstep(
                lambda: factory.make_policy("mbold", time_step_spec, action_spec,
                                            tasks.task_spec("push1").collection_std, models,
                                            episode_seeds=True),
                models["predictor"], config, replans, batches)
    return {"lockstep": lockstep, "samples": config.num_samples, "iterations": config.iterations,
            "horizon": config.horizon, "replan_every": replan_every,
            "closed_loop_final_steps": final, "final_actor_steps": actor_steps,
            "replans_per_episode": replans,
            "predictor_settings": predictor.settings(),
            "predicted_frames_per_replan": config.num_samples * config.iterations *
            config.horizon,
            "replan_s": round(replan, 3), "exported_replan_s": round(exported, 3),
            "predictor_mflop_per_frame": round(per_frame / 1e6, 2),
            "predictor_utilisation": flops.utilisation(
                per_frame * config.num_samples * config.iterations * config.horizon, replan),
            "s_per_executed_action": round(per_action, 3),
            "speedup_vs_paper_2s_per_action": round(2.0 / per_action, 2)}


def _lockstep(policy_of, predictor, config, replans: int, batches) -> dict:
    """One lockstep replan of each batch size in ``batches``: its time (the second call; the
    first traces and sets up the kernels), the planning episodes per hour it implies and the
    predictor's utilisation."""
    per_frame = predictor_benchmark.frame_flops(predictor)
    from tf_agents.trajectories import time_step as ts  # pylint: disable=g-import-not-at-top
    rng = np.random.default_rng(1)
    out = {}
    for batch in batches:
        policy = policy_of()
        obs = [_observation(rng) for _ in range(batch)]
        time_step = ts.restart({k: tf.constant(np.stack([o[k] for o in obs]))
                                for k in obs[0]}, batch_size=batch)
        state = dict(policy.get_initial_state(batch), seed=tf.range(batch, dtype=tf.int64))
        action_fn = tf.function(policy.action)
        action_fn(time_step, state).action.numpy()  # warm-up: trace, kernels, not timed
        t0 = time.perf_counter()
        action_fn(time_step, state).action.numpy()
        replan = time.perf_counter() - t0
        frames = config.num_samples * config.iterations * config.horizon * batch
        out[str(batch)] = {
            "replan_s": round(replan, 3),
            "planning_episodes_per_hour": round(3600 * batch / (replan * replans), 1),
            "predictor_utilisation": flops.utilisation(per_frame * frames, replan)}
    return out


def run(quick: bool) -> dict:
    """Replan timings for the CPU and paper configurations (quick: CPU only, 1 repeat)."""
    repeats = 1 if quick else 3
    names = ["cpu"] if quick else ["cpu", "paper"]
    results = {name: _one_config(name, repeats) for name in names}
    return {"device": tf.config.list_physical_devices("GPU") and "gpu" or "cpu",
            "cpu_count": os.cpu_count(), "repeats": repeats, "peak": flops.cpu_peak_gflops(),
            "load_average_1min": round(os.getloadavg()[0], 2), **results}
