"""Training of the RIG baseline (App. B.1) in two resumable stages that share one run directory.

1. :func:`train_rig_vae`: the β-VAE on images sampled uniformly from the offline dataset
   (RLDS, :func:`mbold_tf.data.rlds.load_episodes`), through
   :class:`~mbold_tf.utils.training.TrainingLoop` in ``<root_dir>/vae``.
2. :func:`train_rig_sac`: TF-Agents' ``SacAgent`` on the latent MDP with the VAE frozen:
   observation z(s) ‖ z_g (posterior means), reward −‖z(s') − z_g‖₂, γ and episode length from
   :func:`mbold_tf.models.rig.rig_settings`. Episodes are collected ONLINE in the project's
   dm_control task (:func:`mbold_tf.envs.tasks.load`), each with a goal z_g ~ N(0, I) from the
   VAE prior; every ``train_steps_per_episode`` gradient steps one episode is collected.
   Transitions live in a :class:`LatentReplayBuffer` of whole latent episodes (checkpointed
   with the agent, so a resumed run keeps its data) and are relabelled when sampled: a
   ``final_goal_fraction`` of each batch gets the episode's final achieved latent as goal (the
   paper's relabelling), a ``future_goal_fraction`` a later achieved latent, the rest the
   episode's prior goal. ``offline_episodes`` > 0 also seeds the buffer with that many
   episodes of the offline dataset (encoded, with prior goals). Training runs in
   ``<root_dir>/sac``; the online environment steps are counted in the checkpoint and written
   to ``<root_dir>/sac/env_steps.json`` at every save.

The model settings go to ``<root_dir>/config.json`` (kind ``'rig'``), each stage's training
settings to its own ``config.json`` (kinds ``'rig_vae'``, ``'rig_sac'``, the latter with the VAE
checkpoint step it encodes with), so resuming with other settings fails naming them.
:func:`mbold_tf.agents.checkpoints.load_rig` rebuilds the trained VAE and actor.
"""
from __future__ import annotations

import itertools
import json
import os
import time
from typing import Dict, Optional, Tuple

from absl import logging
import gin
import numpy as np
import tensorflow as tf
from tf_agents.agents.sac import sac_agent
from tf_agents.trajectories import policy_step
from tf_agents.trajectories import time_step as ts
from tf_agents.trajectories import trajectory

from mbold_tf.agents import checkpoints
from mbold_tf.data import collect
from mbold_tf.data import rlds
from mbold_tf.envs import tasks
from mbold_tf.models import rig
from mbold_tf.utils import batch_norm
from mbold_tf.utils import run_config
from mbold_tf.utils import training

KIND = rig.KIND
DATASET_SIZES = ("tiny", "small", "cpu", "paper")  # tfds_builders/mbold_tabletop sizes


# -- shared ----------------------------------------------------------------------------------------
def _root_config(root_dir: str, action_dim: int) -> Dict:
    """Checks or writes ``<root_dir>/config.json`` (kind 'rig'): rig_settings() and the action
    size; returns them."""
    settings = {**rig.rig_settings(), "action_dim": int(action_dim)}
    run_config.check_or_write_config(root_dir, KIND, settings)
    return settings


def image_dataset(arrays: rlds.EpisodeArrays, batch_size: int,
                  seed: int = 0) -> tf.data.Dataset:
    """Batches of uint8 [B, 64, 64, 3] images drawn uniformly from all steps of ``arrays``.

    Stateless sampling keyed on (seed, batch number): the same seed gives the same batches.
    """
    images = tf.constant(arrays.images)
    n = int(arrays.images.shape[0])

    def make_batch(i):
        idx = tf.random.stateless_uniform([batch_size], tf.stack([tf.constant(seed, tf.int64), i]),
                                          0, n, dtype=tf.int64)
        return tf.gather(images, idx)

    return tf.data.Dataset.counter().map(make_batch, num_parallel_calls=tf.data.AUTOTUNE,
                                         deterministic=True).prefetch(tf.data.AUTOTUNE)


def dataset_task(dataset: str) -> Optional[str]:
    """The env task of an ``mbold_tabletop/<task>_<size>`` dataset name (None for others)."""
    if not dataset.startswith("mbold_tabletop/"):
        return None
    config = dataset.split("/", 1)[1].split(":")[0]
    for size in DATASET_SIZES:
        if config.endswith("_" + size):
            config = config[: -len(size) - 1]
            break
    task = collect.config_task(config).task
    return task if task in tasks.TASKS else None


# -- stage 1: the VAE ------------------------------------------------------------------------------
@gin.configurable(denylist=["root_dir", "arrays"])
def train_rig_vae(root_dir: str, dataset: str = "mbold_tabletop/reach_cpu",
                  data_dir: Optional[str] = None, max_episodes: Optional[int] = None,
                  total_steps: int = 3125000, batch_size: int = 32,
                  learning_rate: float = 3e-4, seed: int = 0,
                  bn_recalibration_batches: int = 50, checkpoint_every: int = 5000,
                  summary_every: int = 100, log_every: int = 500,
                  arrays: Optional[rlds.EpisodeArrays] = None) -> Dict:
    """Trains RIG's β-VAE into ``<root_dir>/vae``; resumes if it has a checkpoint.

    Args:
      root_dir: the RIG run directory.
      dataset / data_dir / max_episodes: the RLDS dataset (train split) whose images the VAE
        learns, unless ``arrays`` (EpisodeArrays, tests) is given.
      total_steps, batch_size, learning_rate: Adam steps on batches of uint8 [B, 64, 64, 3].
      seed: data and initialisation seed.
      bn_recalibration_batches: before every checkpoint the batch-norm statistics are
        recomputed from this many batches (:mod:`mbold_tf.utils.batch_norm`); 0 keeps Keras'.
      checkpoint_every / summary_every / log_every: periods in steps.
    Returns:
      dict: stage, steps, seconds, steps_per_s and the last step's loss, reconstruction, kl.
    Raises:
      SettingError for a non-positive size or period; ConfigMismatchError naming the settings
      that differ from the run directory's; NonFiniteLossError for a NaN loss.
    """
    training.check_positive(**{"train_rig_vae.total_steps": total_steps,
                               "train_rig_vae.batch_size": batch_size,
                               "train_rig_vae.checkpoint_every": checkpoint_every,
                               "train_rig_vae.summary_every": summary_every,
                               "train_rig_vae.log_every": log_every})
    tf.random.set_seed(seed)
    vae_dir = os.path.join(root_dir, rig.VAE_DIR)
    vae_config = {"dataset": dataset if arrays is None else "<arrays>", "data_dir": data_dir,
                  "max_episodes": max_episodes, "batch_size": int(batch_size),
                  "learning_rate": float(learning_rate), "seed": int(seed),
                  "bn_recalibration_batches": int(bn_recalibration_batches)}
    latest = tf.train.latest_checkpoint(os.path.join(vae_dir, "ckpt"))
    if latest and rig.checkpoint_step(latest) >= total_steps and arrays is None:
        # Trained already (a rerun of the launcher): check the settings, skip loading the data.
        _root_config(root_dir, rig.read_settings(root_dir)["action_dim"])
        run_config.check_or_write_config(vae_dir, rig.VAE_KIND, vae_config)
        logging.info("The RIG VAE in %s is trained (%s)", vae_dir, latest)
        return {"stage": "vae", "steps": rig.checkpoint_step(latest), "seconds": 0.0,
                "steps_per_s": 0.0}
    if arrays is None:
        arrays = rlds.load_episodes(dataset, "train", data_dir=data_dir,
                                    max_episodes=max_episodes)
    dataset = vae_config["dataset"]
    settings = _root_config(root_dir, arrays.actions.shape[-1])
    run_config.check_or_write_config(vae_dir, rig.VAE_KIND, vae_config)
    rlds.write_data_stats(vae_dir, arrays, dataset)

    vae = rig.build_vae(settings)
    optimizer = tf.keras.optimizers.Adam(learning_rate)
    step = tf.Variable(0, dtype=tf.int64, name="global_step")
    it = iter(image_dataset(arrays, batch_size, seed))

    @tf.function
    def train_step():
        with tf.GradientTape() as tape:
            losses = vae.losses_for({"observation": next(it)}, training=True)
        variables = vae.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(losses["loss"], variables), variables))
        return losses

    before_save = None
    if bn_recalibration_batches > 0:
        recal_it = iter(image_dataset(arrays, batch_size, seed + 1))

        def before_save():
            n = batch_norm.recalibrate(
                [vae], lambda b: vae.losses_for({"observation": b}, training=True),
                itertools.islice(recal_it, bn_recalibration_batches))
            logging.info("VAE batch-norm statistics recomputed from %d batches", n)

    loop = training.TrainingLoop(vae_dir, {"model": vae, "optimizer": optimizer}, step,
                                 total_steps, checkpoint_every=checkpoint_every,
                                 summary_every=summary_every, log_every=log_every,
                                 before_save=before_save)
    loop.restore()
    start = int(step.numpy())
    t0 = time.time()
    last = loop.run(train_step)
    seconds = time.time() - t0
    done = int(step.numpy())
    result = {"stage": "vae", "steps": done, "seconds": round(seconds, 1),
              "steps_per_s": round((done - start) / max(seconds, 1e-9), 2), **last}
    logging.info("Trained the RIG VAE: %s", result)
    return result


# -- stage 2: SAC on latents -----------------------------------------------------------------------
class LatentReplayBuffer(tf.Module):
    """A ring buffer of whole latent episodes, relabelled at sampling time (checkpointable).

    Variables: ``latents`` float32 [C, T+1, L] (z of each observation), ``actions`` float32
    [C, T, A], ``goals`` float32 [C, L] (the episode's prior goal), ``num_added`` int64 (episodes
    ever added; slot = index mod C, so the oldest episodes are overwritten first).
    """

    def __init__(self, capacity: int, episode_steps: int, latent_dim: int, action_dim: int,
                 name: str = "latent_replay_buffer"):
        super().__init__(name=name)
        self.capacity, self.episode_steps = int(capacity), int(episode_steps)
        c, t = self.capacity, self.episode_steps
        self.latents = tf.Variable(tf.zeros([c, t + 1, latent_dim]), trainable=False,
                                   name="latents")
        self.actions = tf.Variable(tf.zeros([c, t, action_dim]), trainable=False, name="actions")
        self.goals = tf.Variable(tf.zeros([c, latent_dim]), trainable=False, name="goals")
        self.num_added = tf.Variable(0, dtype=tf.int64, trainable=False, name="num_added")

    @property
    def size(self) -> int:
        """Episodes held (≤ capacity)."""
        return int(min(int(self.num_added.numpy()), self.capacity))

    def add(self, latents, actions, goals) -> None:
        """Adds N episodes: latents [N, T+1, L], actions [N, T, A], goals [N, L] (float32)."""
        latents = tf.convert_to_tensor(latents, tf.float32)
        actions = tf.convert_to_tensor(actions, tf.float32)
        goals = tf.convert_to_tensor(goals, tf.float32)
        n = int(latents.shape[0])
        want = [(latents, self.latents), (actions, self.actions)]
        for value, var in want:
            if tuple(value.shape[1:]) != tuple(var.shape[1:]):
                raise ValueError(f"Episodes of shape {value.shape.as_list()} do not fit the "
                                 f"buffer's {var.name} [N] + {var.shape[1:].as_list()}.")
        if n > self.capacity or goals.shape[0] != n:
            raise ValueError(f"Cannot add {n} episodes ({goals.shape[0]} goals) to a buffer of "
                             f"capacity {self.capacity}; add at most capacity at once.")
        idx = ((self.num_added + tf.range(n, dtype=tf.int64)) % self.capacity)[:, None]
        self.latents.scatter_nd_update(idx, latents)
        self.actions.scatter_nd_update(idx, actions)
        self.goals.scatter_nd_update(idx, goals)
        self.num_added.assign_add(n)

    def sample(self, batch_size: int, seed_pair, final_goal_fraction: float,
               future_goal_fraction: float) -> Dict[str, tf.Tensor]:
        """A relabelled batch (stateless sampling keyed on ``seed_pair``, int64 [2]).

        Episode e and step t uniform; the goal is the episode's final latent z_T with
        probability ``final_goal_fraction``, a later latent z_k (k uniform in t+1..T) with
        ``future_goal_fraction``, else its prior goal. Returns ``observation`` and
        ``next_observation`` float32 [B, 2L] (z_t ‖ g, z_{t+1} ‖ g), ``action`` [B, A],
        ``reward`` [B] = −‖z_{t+1} − g‖, ``goal_source`` int32 [B] (0 prior, 1 final, 2 future).
        """
        t_max = self.episode_steps
        seeds = tf.random.experimental.stateless_split(tf.cast(seed_pair, tf.int64), 4)
        size = tf.minimum(self.num_added, self.capacity)
        e = tf.random.stateless_uniform([batch_size], seeds[0], 0, size, dtype=tf.int64)
        t = tf.random.stateless_uniform([batch_size], seeds[1], 0, t_max, dtype=tf.int64)
        z = tf.gather_nd(self.latents, tf.stack([e, t], -1))
        z_next = tf.gather_nd(self.latents, tf.stack([e, t + 1], -1))
        action = tf.gather_nd(self.actions, tf.stack([e, t], -1))
        u = tf.random.stateless_uniform([batch_size], seeds[2])
        room = tf.cast(t_max - t, tf.float32)  # later steps t+1..T
        k = t + 1 + tf.cast(tf.floor(tf.random.stateless_uniform([batch_size], seeds[3])
                                     * room), tf.int64)
        k = tf.minimum(k, t_max)
        final = tf.gather_nd(self.latents, tf.stack([e, tf.fill(tf.shape(e), tf.constant(
            t_max, tf.int64))], -1))
        future = tf.gather_nd(self.latents, tf.stack([e, k], -1))
        prior = tf.gather(self.goals, e)
        is_final = u < final_goal_fraction
        is_future = tf.logical_and(~is_final, u < final_goal_fraction + future_goal_fraction)
        goal = tf.where(is_final[:, None], final, tf.where(is_future[:, None], future, prior))
        source = tf.where(is_final, 1, tf.where(is_future, 2, 0))
        return {"observation": tf.concat([z, goal], -1),
                "next_observation": tf.concat([z_next, goal], -1), "action": action,
                "reward": rig.latent_reward(z_next, goal), "goal_source": source}


def transition_from_batch(batch: Dict[str, tf.Tensor]) -> trajectory.Transition:
    """A TF-Agents ``Transition`` [B] from :meth:`LatentReplayBuffer.sample`'s batch.

    Discount 1 everywhere: episodes end only at the time limit, which SAC bootstraps through.
    """
    b = tf.shape(batch["reward"])[0]
    mid = tf.fill([b], ts.StepType.MID)
    ones = tf.ones([b], tf.float32)
    return trajectory.Transition(
        time_step=ts.TimeStep(mid, tf.zeros([b], tf.float32), ones, batch["observation"]),
        action_step=policy_step.PolicyStep(batch["action"], (), ()),
        next_time_step=ts.TimeStep(mid, batch["reward"], ones, batch["next_observation"]))


def build_agent(settings: Dict, action_dim: int, actor, actor_learning_rate: float = 3e-4,
                critic_learning_rate: float = 3e-4, alpha_learning_rate: float = 3e-4,
                target_update_tau: float = 5e-3, target_update_period: int = 1,
                reward_scale: float = 1.0, target_entropy_per_action_dim: float = -1.0):
    """(SacAgent, critic 1, critic 2) on the latent MDP of ``settings`` (rig_settings), initialised.

    ``actor``: :func:`mbold_tf.models.rig.build_actor`'s network (trained in place). Twin
    critics (:func:`mbold_tf.models.rig.build_critic`) with target copies; γ =
    ``settings['gamma']``; α's entropy target = ``target_entropy_per_action_dim`` × action_dim.
    """
    critic1 = rig.build_critic(settings, action_dim, "rig_critic_1")
    critic2 = rig.build_critic(settings, action_dim, "rig_critic_2")
    agent = sac_agent.SacAgent(
        ts.time_step_spec(rig.observation_spec(settings)), rig.action_spec(action_dim),
        critic_network=critic1, critic_network_2=critic2, actor_network=actor,
        actor_optimizer=tf.keras.optimizers.Adam(actor_learning_rate),
        critic_optimizer=tf.keras.optimizers.Adam(critic_learning_rate),
        alpha_optimizer=tf.keras.optimizers.Adam(alpha_learning_rate),
        target_update_tau=target_update_tau, target_update_period=target_update_period,
        gamma=settings["gamma"], reward_scale_factor=reward_scale,
        target_entropy=target_entropy_per_action_dim * action_dim,
        train_step_counter=tf.Variable(0, dtype=tf.int64, name="sac_train_step"))
    agent.initialize()
    return agent, critic1, critic2


def make_update_fn(agent, buffer: LatentReplayBuffer, batch_size: int, seed: int,
                   step: tf.Variable, final_goal_fraction: float, future_goal_fraction: float):
    """A compiled SAC gradient step on a relabelled batch keyed on (seed, ``step``).

    Returns a function of no arguments → dict of float32 scalars: loss, critic_loss, actor_loss,
    alpha_loss, alpha, reward (the batch's mean reward).
    """
    @tf.function
    def update():
        batch = buffer.sample(batch_size, tf.stack([tf.constant(seed, tf.int64), step]),
                              final_goal_fraction, future_goal_fraction)
        with tf.summary.record_if(False):
            info = agent.train(transition_from_batch(batch))
        return {"loss": info.loss, "critic_loss": info.extra.critic_loss,
                "actor_loss": info.extra.actor_loss, "alpha_loss": info.extra.alpha_loss,
                "alpha": tf.exp(agent._log_alpha),  # pylint: disable=protected-access
                "reward": tf.reduce_mean(batch["reward"])}

    return update


class OnlineCollector:
    """Collects episodes in a dm_control task with SAC's stochastic actor on VAE latents.

    Args:
      task: 'reach', 'push1', ... (:func:`mbold_tf.envs.tasks.load`).
      model: a :class:`~mbold_tf.models.rig.RigModel` (its VAE encodes, its actor acts).
      seed: episode k resets the task from seed (seed, k), draws its prior goal and its action
        noise from it, so a resumed run continues the same sequence.
    """

    def __init__(self, task: str, model: rig.RigModel, seed: int = 0):
        self.model = model
        self.steps = int(model.settings["episode_steps"])
        self.env = tasks.load(task, seed=seed, episode_steps=self.steps)
        self.seed = int(seed)
        env_dim = int(self.env.action_spec().shape[0])
        if env_dim != model.action_dim:
            raise ValueError(f"Task {task!r} has {env_dim}-d actions but the RIG model "
                             f"{model.action_dim}-d (from its dataset).")
        latent = model.latent_dim
        self._act = tf.function(self._act_fn, input_signature=[
            tf.TensorSpec([1, 64, 64, 3], tf.uint8), tf.TensorSpec([1, latent], tf.float32),
            tf.TensorSpec([2], tf.int32)])

    def _act_fn(self, image, goal, seed_pair):
        z = self.model.encode(image)
        dist = self.model.action_distribution(tf.concat([z, goal], -1))
        return z[0], dist.sample(seed=seed_pair)[0]

    def episode(self, index: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Runs episode ``index``: latents float32 [T+1, L], actions [T, A], prior goal [L]."""
        seq = np.random.SeedSequence([self.seed, int(index)])
        reset_seed, noise_seed = (int(x) & 0x7FFFFFFF for x in seq.generate_state(2))
        self.env.task.reseed(reset_seed)
        rng = np.random.default_rng(seq)
        goal = rng.standard_normal(self.model.latent_dim).astype(np.float32)
        goal_t = tf.constant(goal[None])
        time_step = self.env.reset()
        latents, actions = [], []
        for t in range(self.steps + 1):
            seed_pair = tf.constant([noise_seed, t], tf.int32)
            z, action = self._act(tf.constant(time_step.observation["image"][None]), goal_t,
                                  seed_pair)
            latents.append(z.numpy())
            if t == self.steps:
                break
            if time_step.last():
                raise RuntimeError(f"The environment ended its episode after {t} steps; RIG "
                                   f"expects rig_settings.episode_steps = {self.steps}.")
            a = action.numpy()
            actions.append(a)
            time_step = self.env.step(a)
        if not time_step.last():
            raise RuntimeError(f"The environment's episode runs past {self.steps} steps.")
        return np.stack(latents), np.stack(actions), goal

    def close(self):
        """Frees the environment's renderer."""
        tasks.close(self.env)


def encode_episodes(model: rig.RigModel, arrays: rlds.EpisodeArrays, episode_steps: int,
                    seed: int, batch_size: int = 512):
    """Offline episodes as buffer rows: latents [N, T+1, L], actions [N, T, A], goals [N, L].

    Raises ValueError when an episode does not have T+1 observations (the RIG episode length).
    """
    lengths = np.asarray(arrays.episode_length)
    if np.any(lengths != episode_steps + 1):
        raise ValueError(f"Offline episodes must have rig_settings.episode_steps + 1 = "
                         f"{episode_steps + 1} observations to seed the replay buffer; found "
                         f"lengths {sorted(set(lengths.tolist()))}. Set "
                         f"train_rig_sac.offline_episodes = 0 or use a matching dataset.")
    z = np.concatenate([model.encode(arrays.images[i:i + batch_size]).numpy()
                        for i in range(0, arrays.num_steps, batch_size)])
    n = arrays.num_episodes
    latents = z.reshape(n, episode_steps + 1, -1)
    actions = arrays.actions.reshape(n, episode_steps + 1, -1)[:, :episode_steps]
    actions = np.clip(actions, -1.0, 1.0).astype(np.float32)
    goals = np.random.default_rng([seed, 7]).standard_normal(
        (n, model.latent_dim)).astype(np.float32)
    return latents.astype(np.float32), actions, goals


def _check_sac_settings(total_steps: int, batch_size: int, train_steps_per_episode: int,
                        replay_capacity_episodes: int, checkpoint_every: int, summary_every: int,
                        log_every: int, initial_collect_episodes: int, offline_episodes: int,
                        final_goal_fraction: float, future_goal_fraction: float,
                        task: str) -> None:
    """Raises SettingError / ValueError naming a setting of :func:`train_rig_sac` out of range."""
    training.check_positive(**{"train_rig_sac.total_steps": total_steps,
                               "train_rig_sac.batch_size": batch_size,
                               "train_rig_sac.train_steps_per_episode": train_steps_per_episode,
                               "train_rig_sac.replay_capacity_episodes":
                                   replay_capacity_episodes,
                               "train_rig_sac.checkpoint_every": checkpoint_every,
                               "train_rig_sac.summary_every": summary_every,
                               "train_rig_sac.log_every": log_every})
    if initial_collect_episodes < 0 or offline_episodes < 0:
        raise training.SettingError(
            f"train_rig_sac.initial_collect_episodes ({initial_collect_episodes}) and "
            f"offline_episodes ({offline_episodes}) must be ≥ 0.")
    if offline_episodes > replay_capacity_episodes:
        raise training.SettingError(
            f"train_rig_sac.offline_episodes ({offline_episodes}) exceeds "
            f"replay_capacity_episodes ({replay_capacity_episodes}): the buffer would overwrite "
            f"them at once. Raise the capacity or seed fewer episodes.")
    if not (0.0 <= final_goal_fraction and 0.0 <= future_goal_fraction
            and final_goal_fraction + future_goal_fraction <= 1.0):
        raise ValueError(f"train_rig_sac.final_goal_fraction ({final_goal_fraction}) and "
                         f"future_goal_fraction ({future_goal_fraction}) must be ≥ 0 and sum "
                         f"to at most 1.")
    tasks.task_spec(task)  # ValueError listing the tasks


def _sac_record(task: str, batch_size: int, actor_learning_rate: float,
                critic_learning_rate: float, alpha_learning_rate: float,
                target_update_tau: float, target_update_period: int, reward_scale: float,
                target_entropy_per_action_dim: float, final_goal_fraction: float,
                future_goal_fraction: float, train_steps_per_episode: int,
                initial_collect_episodes: int, replay_capacity_episodes: int,
                offline_episodes: int, seed: int, vae_step: int) -> Dict:
    """The SAC stage's record (``sac/config.json``): its settings and the VAE step it encodes
    with."""
    return {
        "task": task, "batch_size": int(batch_size),
        "actor_learning_rate": float(actor_learning_rate),
        "critic_learning_rate": float(critic_learning_rate),
        "alpha_learning_rate": float(alpha_learning_rate),
        "target_update_tau": float(target_update_tau),
        "target_update_period": int(target_update_period), "reward_scale": float(reward_scale),
        "target_entropy_per_action_dim": float(target_entropy_per_action_dim),
        "final_goal_fraction": float(final_goal_fraction),
        "future_goal_fraction": float(future_goal_fraction),
        "train_steps_per_episode": int(train_steps_per_episode),
        "initial_collect_episodes": int(initial_collect_episodes),
        "replay_capacity_episodes": int(replay_capacity_episodes),
        "offline_episodes": int(offline_episodes), "seed": int(seed), "vae_step": vae_step}


def _write_env_steps(sac_dir: str, task: str, counters: Dict[str, tf.Variable],
                     step: tf.Variable) -> Dict:
    """Writes (atomically) and returns the SAC stage's record of its online collection."""
    record = {"task": task, "env_steps": int(counters["env_steps"].numpy()),
              "online_episodes": int(counters["online_episodes"].numpy()),
              "offline_episodes": int(counters["offline_episodes"].numpy()),
              "train_steps": int(step.numpy()),
              "note": "RIG collects online: env_steps are environment steps taken by its "
                      "exploration policy in the simulator, beyond the offline dataset."}
    os.makedirs(sac_dir, exist_ok=True)
    tmp = os.path.join(sac_dir, rig.ENV_STEPS_FILE + ".tmp")
    with open(tmp, "w") as f:
        json.dump(record, f, indent=1, sort_keys=True)
    os.replace(tmp, os.path.join(sac_dir, rig.ENV_STEPS_FILE))
    return record


class _CollectAndUpdate:
    """The SAC stage's training step: collects the online episodes the schedule needs by now
    (``initial_collect_episodes``, then one per ``train_steps_per_episode`` updates), then runs
    one update. Times both, without the first of each (it traces the functions)."""

    def __init__(self, collector: "OnlineCollector", buffer: "LatentReplayBuffer",
                 counters: Dict[str, tf.Variable], update, step: tf.Variable,
                 initial_collect_episodes: int, train_steps_per_episode: int):
        self._collector, self._buffer, self._counters = collector, buffer, counters
        self._update, self._step = update, step
        self._initial, self._per_episode = initial_collect_episodes, train_steps_per_episode
        self.timers = {"collect_s": 0.0, "collect_steps": 0, "update_s": 0.0, "updates": 0,
                       "traced_collect": False, "traced_update": False}

    def collect_one(self) -> None:
        """Collects one online episode into the buffer and counts it."""
        t0 = time.perf_counter()
        index = int(self._counters["online_episodes"].numpy())
        latents, actions, goal = self._collector.episode(index)
        self._buffer.add(latents[None], actions[None], goal[None])
        self._counters["online_episodes"].assign_add(1)
        self._counters["env_steps"].assign_add(actions.shape[0])
        if self.timers["traced_collect"]:
            self.timers["collect_s"] += time.perf_counter() - t0
            self.timers["collect_steps"] += actions.shape[0]
        self.timers["traced_collect"] = True

    def __call__(self) -> Dict[str, np.ndarray]:
        n = int(self._step.numpy())
        needed = self._initial + n // self._per_episode + 1
        while int(self._counters["online_episodes"].numpy()) < needed:
            self.collect_one()
        t0 = time.perf_counter()
        out = {k: v.numpy() for k, v in self._update().items()}
        if self.timers["traced_update"]:
            self.timers["update_s"] += time.perf_counter() - t0
            self.timers["updates"] += 1
        self.timers["traced_update"] = True
        out["env_steps"] = np.float32(self._counters["env_steps"].numpy())
        return out

    def rates(self) -> Dict[str, float]:
        """env_steps_per_s (collection: physics, render, VAE, actor) and update_steps_per_s."""
        t = self.timers
        return {"env_steps_per_s": round(t["collect_steps"] / max(t["collect_s"], 1e-9), 1),
                "update_steps_per_s": round(t["updates"] / max(t["update_s"], 1e-9), 2)}


def _seed_offline_episodes(model, buffer: "LatentReplayBuffer",
                           counters: Dict[str, tf.Variable], arrays, vae_config: Dict,
                           offline_episodes: int, episode_steps: int, seed: int) -> None:
    """Adds ``offline_episodes`` episodes of the VAE's dataset (or ``arrays``), encoded, with
    prior goals, to an empty buffer."""
    if arrays is None:
        arrays = rlds.load_episodes(vae_config["dataset"], "train",
                                    data_dir=vae_config["data_dir"],
                                    max_episodes=offline_episodes)
    arrays = arrays.select(np.arange(min(offline_episodes, arrays.num_episodes)))
    latents, actions, goals = encode_episodes(model, arrays, episode_steps, seed)
    buffer.add(latents, actions, goals)
    counters["offline_episodes"].assign(len(latents))
    logging.info("Seeded the replay buffer with %d offline episodes", len(latents))


def _sac_task_and_model(root_dir: str, task: str, offline_episodes: int, arrays):
    """Checks that ``task`` is the VAE's data's and that the gin model settings are still the
    VAE's; returns (root settings, the RIG model with its VAE restored, the VAE's config)."""
    stored = rig.read_settings(root_dir)
    vae_config = run_config.read_config(os.path.join(root_dir, rig.VAE_DIR), rig.VAE_KIND)
    data_task = dataset_task(vae_config["dataset"])
    if data_task is not None and data_task != task:
        raise ValueError(f"train_rig_sac.task = {task!r} but the VAE of {root_dir!r} learned "
                         f"{vae_config['dataset']!r} ({data_task!r} images); set "
                         f"train_rig_sac.task = {data_task!r} or use another run directory.")
    # The gin model settings must still be those the VAE was trained with.
    settings = _root_config(root_dir, stored["action_dim"])
    model = checkpoints.load_rig(root_dir, vae_only=True)
    if offline_episodes and arrays is None and vae_config["dataset"] == "<arrays>":
        raise ValueError("train_rig_sac.offline_episodes > 0 needs the offline episodes: the "
                         "VAE was trained on in-memory arrays, so pass arrays= as well.")
    return settings, model, vae_config


@gin.configurable(denylist=["root_dir", "arrays"])
def train_rig_sac(root_dir: str, task: str = "reach", total_steps: int = 600000,
                  batch_size: int = 256, actor_learning_rate: float = 3e-4,
                  critic_learning_rate: float = 3e-4, alpha_learning_rate: float = 3e-4,
                  target_update_tau: float = 5e-3, target_update_period: int = 1,
                  reward_scale: float = 1.0, target_entropy_per_action_dim: float = -1.0,
                  final_goal_fraction: float = 0.5, future_goal_fraction: float = 0.0,
                  train_steps_per_episode: int = 30, initial_collect_episodes: int = 34,
                  replay_capacity_episodes: int = 33334, offline_episodes: int = 0,
                  seed: int = 0, checkpoint_every: int = 10000, summary_every: int = 100,
                  log_every: int = 1000,
                  arrays: Optional[rlds.EpisodeArrays] = None) -> Dict:
    """Trains SAC on the latent MDP into ``<root_dir>/sac``, collecting online; resumes.

    Needs the VAE stage's checkpoint (:func:`train_rig_vae`), which it freezes.

    Args:
      root_dir: the RIG run directory.
      task: the dm_control task collected in ('reach', 'push1', ...); must be the task of the
        VAE's ``mbold_tabletop`` dataset.
      total_steps: SAC gradient steps (the paper: 600 RLKit epochs of 1,000).
      batch_size, *_learning_rate, target_update_tau / _period, reward_scale: SAC (RLKit's
        defaults: 256, 3e-4, 5e-3, 1, 1).
      target_entropy_per_action_dim: α's entropy target is this × the action size (RLKit: −1).
      final_goal_fraction / future_goal_fraction: shares of each batch relabelled with the
        episode's final / a later achieved latent (the paper: 0.5 final: each transition is
        stored with its prior goal and with the final latent).
      train_steps_per_episode: gradient steps per collected episode (30: one per env step, as
        RLKit's 1,000 steps per 1,000 collected).
      initial_collect_episodes: episodes collected before the first gradient step.
      replay_capacity_episodes: the ring buffer's size in episodes (RLKit: 1e6 transitions).
      offline_episodes: seed the buffer with this many offline episodes of the VAE's dataset
        (0: online data only, as the paper's RIG).
      seed: initialisation, collection and sampling seed.
      checkpoint_every / summary_every / log_every: periods in gradient steps.
      arrays: offline EpisodeArrays to seed from instead of the VAE's dataset (tests).
    Returns:
      dict: stage, steps, seconds, steps_per_s, env_steps, online_episodes, offline_episodes,
      replay_episodes (episodes ever added to the buffer), env_steps_per_s (collection: physics,
      render, VAE and actor), update_steps_per_s (gradient steps alone) and the last step's
      scalars (losses, alpha, the batch's mean reward, env_steps).
    Raises:
      SettingError for a non-positive size or period or more offline episodes than the buffer
      holds; ValueError for fractions outside [0, 1] or a task that is not the dataset's;
      FileNotFoundError without a VAE checkpoint; ConfigMismatchError naming the settings that
      differ from the run directory's.
    """
    _check_sac_settings(total_steps, batch_size, train_steps_per_episode,
                        replay_capacity_episodes, checkpoint_every, summary_every, log_every,
                        initial_collect_episodes, offline_episodes, final_goal_fraction,
                        future_goal_fraction, task)
    settings, model, vae_config = _sac_task_and_model(root_dir, task, offline_episodes, arrays)
    sac_dir = os.path.join(root_dir, rig.SAC_DIR)
    run_config.check_or_write_config(sac_dir, rig.SAC_KIND, _sac_record(
        task, batch_size, actor_learning_rate, critic_learning_rate, alpha_learning_rate,
        target_update_tau, target_update_period, reward_scale, target_entropy_per_action_dim,
        final_goal_fraction, future_goal_fraction, train_steps_per_episode,
        initial_collect_episodes, replay_capacity_episodes, offline_episodes, seed,
        rig.checkpoint_step(model.vae_checkpoint)))
    tf.random.set_seed(seed)
    step = tf.Variable(0, dtype=tf.int64, name="global_step")
    agent, critic1, critic2 = build_agent(
        settings, settings["action_dim"], model.actor, actor_learning_rate=actor_learning_rate,
        critic_learning_rate=critic_learning_rate, alpha_learning_rate=alpha_learning_rate,
        target_update_tau=target_update_tau, target_update_period=target_update_period,
        reward_scale=reward_scale, target_entropy_per_action_dim=target_entropy_per_action_dim)
    buffer = LatentReplayBuffer(replay_capacity_episodes, settings["episode_steps"],
                                settings["latent_dim"], settings["action_dim"])
    counters = {"env_steps": tf.Variable(0, dtype=tf.int64, name="env_steps"),
                "online_episodes": tf.Variable(0, dtype=tf.int64, name="online_episodes"),
                "offline_episodes": tf.Variable(0, dtype=tf.int64, name="offline_episodes")}
    trackables = {"agent": agent, "actor_network": model.actor, "critic_network_1": critic1,
                  "critic_network_2": critic2, "replay_buffer": buffer, **counters}
    collector = OnlineCollector(task, model, seed)
    update = make_update_fn(agent, buffer, batch_size, seed, step, final_goal_fraction,
                            future_goal_fraction)
    train_step = _CollectAndUpdate(collector, buffer, counters, update, step,
                                   initial_collect_episodes, train_steps_per_episode)
    loop = training.TrainingLoop(
        sac_dir, trackables, step, total_steps, checkpoint_every=checkpoint_every,
        summary_every=summary_every, log_every=log_every,
        before_save=lambda: _write_env_steps(sac_dir, task, counters, step))
    loop.restore()
    if offline_episodes and int(buffer.num_added.numpy()) == 0:
        _seed_offline_episodes(model, buffer, counters, arrays, vae_config, offline_episodes,
                               settings["episode_steps"], seed)
    start = int(step.numpy())
    t0 = time.time()
    try:
        last = loop.run(train_step)
    finally:
        collector.close()
    seconds, done = time.time() - t0, int(step.numpy())
    record = _write_env_steps(sac_dir, task, counters, step)
    result = {"stage": "sac", "steps": done, "seconds": round(seconds, 1),
              "steps_per_s": round((done - start) / max(seconds, 1e-9), 2),
              "env_steps": record["env_steps"], "online_episodes": record["online_episodes"],
              "offline_episodes": record["offline_episodes"],
              "replay_episodes": int(buffer.num_added.numpy()), **train_step.rates(), **last}
    logging.info("Trained RIG's SAC: %s", result)
    return result
