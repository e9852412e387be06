"""``python -m launch.benchmark rig``: RIG's VAE train steps/s, SAC train steps/s, collection rate.

No dataset or run directory needed (random images, untrained networks):

* VAE: Adam steps of RIG's β-VAE on random uint8 images at batch 32 (App. B.1 / A.1 sizes);
* SAC: ``SacAgent`` gradient steps (relabelled sampling from the latent replay buffer
  included) with the paper's 6 × 256 MLPs at batch 256 and the CPU preset's 3 × 256 at 128;
* collection: online environment steps/s of :class:`mbold_tf.training.rig.OnlineCollector`
  on reach and push1 (physics + 64×64 render + one VAE encoding + one actor sample per step),
  next to the bare environment's steps/s (physics + render, random actions).
"""
import time

import numpy as np
import tensorflow as tf

from launch.benchmarks.distance import calls_per_s
from mbold_tf.envs import tasks
from mbold_tf.models import rig
from mbold_tf.training import rig as rig_training

# The CPU preset's model and batch (gin/presets/cpu/rig.gin): smaller MLPs, batch 128.
CPU_PRESET = dict(actor_fc_layers=3, critic_fc_layers=3, fc_units=256)
CPU_PRESET_BATCH = 128


def _vae_rate(settings, quick, rng):
    vae = rig.build_vae(settings)
    optimizer = tf.keras.optimizers.Adam(3e-4)
    images = tf.constant(rng.integers(0, 256, (32, 64, 64, 3), dtype=np.uint8))

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = vae.losses_for({"observation": images}, training=True)["loss"]
        optimizer.apply_gradients(zip(tape.gradient(loss, vae.trainable_variables),
                                      vae.trainable_variables))
        return loss

    return calls_per_s(lambda: step().numpy(), 10 if quick else 100)


def _sac_rate(settings, quick, rng, batch_size=256):
    actor = rig.build_actor(settings)
    agent, _, _ = rig_training.build_agent(settings, 4, actor)
    buffer = rig_training.LatentReplayBuffer(100, settings["episode_steps"],
                                             settings["latent_dim"], 4)
    t = settings["episode_steps"]
    buffer.add(rng.normal(size=(100, t + 1, settings["latent_dim"])).astype(np.float32),
               rng.uniform(-1, 1, (100, t, 4)).astype(np.float32),
               rng.normal(size=(100, settings["latent_dim"])).astype(np.float32))
    step = tf.Variable(0, dtype=tf.int64)
    update = rig_training.make_update_fn(agent, buffer, batch_size, 0, step, 0.5, 0.0)

    def one():
        update()["loss"].numpy()
        step.assign_add(1)

    return calls_per_s(one, 10 if quick else 100)


def _collect_rate(task, settings, quick):
    model = rig.RigModel(settings)
    collector = rig_training.OnlineCollector(task, model, seed=0)
    try:
        collector.episode(0)  # trace
        episodes = 2 if quick else 10
        t0 = time.perf_counter()
        for i in range(episodes):
            collector.episode(i + 1)
        return episodes * collector.steps / (time.perf_counter() - t0)
    finally:
        collector.close()


def _env_rate(task, quick):
    env = tasks.load(task, seed=0)
    rng = np.random.default_rng(0)
    try:
        steps, t0 = 0, time.perf_counter()
        for _ in range(4 if quick else 20):
            time_step = env.reset()
            while not time_step.last():
                time_step = env.step(rng.uniform(-1, 1, 4))
                steps += 1
        return steps / (time.perf_counter() - t0)
    finally:
        tasks.close(env)


def run(quick: bool = False) -> dict:
    """Returns VAE and SAC train steps/s and environment collection steps/s (see above)."""
    rng = np.random.default_rng(0)
    paper = rig.rig_settings()
    cpu = rig.rig_settings(**CPU_PRESET)
    out = {"device": "GPU" if tf.config.list_physical_devices("GPU") else "CPU"}
    out["vae_train_steps_per_s_batch32"] = round(_vae_rate(paper, quick, rng), 2)
    out["sac_train_steps_per_s_batch256_paper_6x256"] = round(_sac_rate(paper, quick, rng), 2)
    out["sac_train_steps_per_s_batch128_cpu_preset_3x256"] = round(
        _sac_rate(cpu, quick, rng, CPU_PRESET_BATCH), 2)
    out["collect_env_steps_per_s"] = {task: round(_collect_rate(task, paper, quick), 1)
                                      for task in ("reach", "push1")}
    out["bare_env_steps_per_s"] = {task: round(_env_rate(task, quick), 1)
                                   for task in ("reach", "push1")}
    steps = out["sac_train_steps_per_s_batch256_paper_6x256"]
    collect = out["collect_env_steps_per_s"]["reach"]
    # The paper's 600 epochs: 600,000 gradient steps and 600,000 collected environment steps.
    out["paper_600_epochs_estimate_h"] = round((600000 / max(steps, 1e-9)
                                                + 600000 / max(collect, 1e-9)) / 3600, 1)
    return out
