"""Training of offline goal-conditioned Dreamer (App. B.2) and its arm-ℓ2 oracle.

``train_dreamer(root_dir, reward=...)`` trains :class:`~mbold_tf.models.dreamer.DreamerModel` on
windows of the offline episodes (:func:`dreamer_dataset`) through
:class:`mbold_tf.utils.training.TrainingLoop` (resume, NaN guard, SIGTERM save, steps/s and ETA
logs, TensorBoard scalars in ``root_dir/train``). Each step updates the world model (with the
reward predictor), then the actor and the value in imagination (:class:`DreamerTrainer`). The
model's settings, the reward and the optimiser settings go to ``root_dir/config.json`` (kind
``'dreamer'``), so resuming or extending a run with other settings fails naming them;
:func:`mbold_tf.agents.checkpoints.load_dreamer` rebuilds the model from them and restores the
latest checkpoint.

Single device (no distribution strategy): the run fits one CPU or GPU.
"""
from __future__ import annotations

from typing import Dict, Optional

from absl import logging
import gin
import numpy as np
import tensorflow as tf

from mbold_tf.data import rlds
from mbold_tf.models import dreamer as dreamer_model
from mbold_tf.utils import run_config
from mbold_tf.utils import training

KIND = dreamer_model.KIND


def check_dataset_for_reward(arrays: rlds.EpisodeArrays, reward: str,
                             dataset: str = "the dataset") -> None:
    """Raises ValueError when ``reward`` needs data ``arrays`` lack ('arm_l2': privileged
    'ee_pos' float32 [M, 3])."""
    dreamer_model.check_reward(reward)
    if reward != "arm_l2":
        return
    ee = arrays.privileged.get(dreamer_model.EE_KEY)
    if ee is None:
        raise ValueError(
            f"reward='arm_l2' (the oracle) needs privileged end-effector positions "
            f"(arrays.privileged['{dreamer_model.EE_KEY}'], float32 [M, 3]); {dataset} has "
            f"privileged keys {sorted(arrays.privileged)}. Use a dataset built with privileged "
            f"state (mbold_tabletop/*), or reward='pixel_mse'.")
    if ee.shape != (arrays.num_steps, 3):
        raise ValueError(f"privileged '{dreamer_model.EE_KEY}' of {dataset} has shape "
                         f"{list(ee.shape)}; reward='arm_l2' needs [{arrays.num_steps}, 3].")


def dreamer_dataset(arrays: rlds.EpisodeArrays, batch_size: int, sequence_length: int,
                    reward: str, seed: int = 0) -> tf.data.Dataset:
    """Windows of one episode each, with a relabelled goal and the reward targets.

    Windows start uniformly over the valid start steps; the goal is one frame of the same
    window, uniform over its L frames (App. B.2: "a uniformly randomly selected observation from
    the trajectory"). Sampling is stateless, keyed on (seed, batch number): the same seed gives
    the same batches (as :mod:`mbold_tf.data.pipelines`).

    Elements (B = batch_size, L = sequence_length): 'images' uint8 [B, L, 64, 64, 3];
    'actions' float32 [B, L−1, A] (``actions[:, i]`` moves frame i to i+1); 'goal' uint8
    [B, 64, 64, 3]; 'goal_offset' int64 [B] (the goal's frame in the window); 'reward' float32
    [B, L] (:func:`~mbold_tf.models.dreamer.reward_targets`); 'step_index' int64 [B, L] and
    'goal_index' int64 [B] (rows of ``arrays``); with 'arm_l2' also 'ee_pos' float32
    [B, L, 3] and 'goal_ee_pos' [B, 3].
    Raises ValueError for an unknown reward, an 'arm_l2' dataset without 'ee_pos', or a
    sequence_length no episode has.
    """
    check_dataset_for_reward(arrays, reward)
    training.check_positive(**{"train_dreamer.batch_size": batch_size,
                               "train_dreamer.sequence_length": sequence_length})
    if sequence_length < 2:
        raise training.SettingError(f"train_dreamer.sequence_length must be ≥ 2 (frames per "
                                    f"window); got {sequence_length}.")
    t = arrays.step_time()
    room = np.repeat(arrays.episode_length, arrays.episode_length) - t
    starts = np.flatnonzero(room >= sequence_length)
    if starts.size == 0:
        raise training.SettingError(
            f"train_dreamer.sequence_length = {sequence_length} is longer than every episode "
            f"(longest: {int(arrays.episode_length.max())} frames); lower it.")
    images = tf.constant(arrays.images)
    actions = tf.constant(arrays.actions.astype(np.float32))
    ee = (tf.constant(arrays.privileged[dreamer_model.EE_KEY].astype(np.float32))
          if reward == "arm_l2" else None)
    starts_t = tf.constant(starts, tf.int64)
    frames = tf.range(sequence_length, dtype=tf.int64)

    def make_batch(seed_pair):
        seeds = tf.random.experimental.stateless_split(seed_pair, 2)
        pick = tf.random.stateless_uniform([batch_size], seeds[0], 0, starts.size,
                                           dtype=tf.int64)
        s = tf.gather(starts_t, pick)
        offset = tf.random.stateless_uniform([batch_size], seeds[1], 0, sequence_length,
                                             dtype=tf.int64)
        index = s[:, None] + frames
        goal_index = s + offset
        out = {"images": tf.gather(images, index),
               "actions": tf.gather(actions, index[:, :-1]),
               "goal": tf.gather(images, goal_index), "goal_offset": offset,
               "step_index": index, "goal_index": goal_index}
        if ee is not None:
            out["ee_pos"] = tf.gather(ee, index)
            out["goal_ee_pos"] = tf.gather(ee, goal_index)
        out["reward"] = dreamer_model.reward_targets(reward, out["images"], out["goal"],
                                                     out.get("ee_pos"), out.get("goal_ee_pos"))
        return out

    ds = tf.data.Dataset.counter()
    ds = ds.map(lambda i: make_batch(tf.stack([tf.constant(seed, tf.int64), i])),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)


class DreamerTrainer(tf.Module):
    """The three Adam optimisers and update steps of Dreamer v1 (global-norm clipped grads).

    ``world_model_step(batch)`` → (scalars, posterior); ``behaviour_step(posterior, goal)`` →
    scalars; ``train_step(batch)`` both (one training iteration). Scalars are float32 [].
    """

    def __init__(self, model: dreamer_model.DreamerModel, model_lr: float = 6e-4,
                 actor_lr: float = 8e-5, value_lr: float = 8e-5, grad_clip: float = 100.0):
        super().__init__(name="dreamer_trainer")
        self.model = model.build()
        self.grad_clip = float(grad_clip)
        self.model_optimizer = tf.keras.optimizers.Adam(model_lr)
        self.actor_optimizer = tf.keras.optimizers.Adam(actor_lr)
        self.value_optimizer = tf.keras.optimizers.Adam(value_lr)
        # Slots exist before a checkpoint is restored into them.
        self.model_optimizer.build(model.world_model_variables)
        self.actor_optimizer.build(model.actor_variables)
        self.value_optimizer.build(model.value_variables)

    def _apply(self, optimizer, tape, loss, variables) -> tf.Tensor:
        grads = tape.gradient(loss, variables)
        grads = [tf.zeros_like(v) if g is None else g for g, v in zip(grads, variables)]
        grads, norm = tf.clip_by_global_norm(grads, self.grad_clip)
        optimizer.apply_gradients(zip(grads, variables))
        return norm

    def world_model_step(self, batch: Dict[str, tf.Tensor]):
        """One world-model (and reward predictor) update; returns (scalars, posterior)."""
        variables = self.model.world_model_variables
        with tf.GradientTape() as tape:
            losses, post = self.model.world_model_losses(batch)
        losses["model_grad_norm"] = self._apply(self.model_optimizer, tape,
                                                losses["model_loss"], variables)
        return losses, post

    def behaviour_step(self, post: Dict[str, tf.Tensor], goal) -> Dict[str, tf.Tensor]:
        """One actor and one value update from imagination started at every posterior state.

        ``post``: 'deter' [B, L, D], 'stoch' [B, L, S]; ``goal`` uint8 [B, 64, 64, 3].
        """
        model = self.model
        length = int(post["deter"].shape[1])
        start = {k: tf.reshape(tf.stop_gradient(post[k]), [-1, post[k].shape[-1]])
                 for k in dreamer_model.STATE_KEYS}
        actor_vars, value_vars = model.actor_variables, model.value_variables
        with tf.GradientTape() as actor_tape:
            actor_embed = tf.repeat(model.goal_embedding("actor", goal), length, axis=0)
            traj = model.imagine(start, actor_embed)
            targets = model.behaviour_targets(traj, goal, length)
            actor_loss = -tf.reduce_mean(targets["weights"] * targets["returns"])
        returns = tf.stop_gradient(targets["returns"])
        feat = tf.stop_gradient(traj["feat"][:-1])
        with tf.GradientTape() as value_tape:
            value_embed = tf.repeat(model.goal_embedding("value", goal), length, axis=0)[None]
            value_pred = model.value(feat, value_embed)
            value_loss = tf.reduce_mean(targets["weights"] * 0.5 * tf.square(value_pred - returns))
        actor_norm = self._apply(self.actor_optimizer, actor_tape, actor_loss, actor_vars)
        value_norm = self._apply(self.value_optimizer, value_tape, value_loss, value_vars)
        return {"actor_loss": actor_loss, "value_loss": value_loss,
                "imagined_reward": tf.reduce_mean(targets["reward"]),
                "imagined_return": tf.reduce_mean(targets["returns"][0]),
                "imagined_value": tf.reduce_mean(targets["value"]),
                "actor_grad_norm": actor_norm, "value_grad_norm": value_norm}

    def train_step(self, batch: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        """World model, then behaviour, on one batch; the union of their scalars."""
        losses, post = self.world_model_step(batch)
        losses.update(self.behaviour_step(post, batch["goal"]))
        return losses


def _run_settings(reward: str, action_dim: int, sequence_length: int, model_lr: float,
                  actor_lr: float, value_lr: float, grad_clip: float) -> Dict:
    return {"reward": reward, "action_dim": int(action_dim),
            "sequence_length": int(sequence_length), "model": dreamer_model.dreamer_settings(),
            "model_lr": float(model_lr), "actor_lr": float(actor_lr),
            "value_lr": float(value_lr), "grad_clip": float(grad_clip)}


@gin.configurable(denylist=["root_dir", "arrays"])
def train_dreamer(root_dir: str, dataset: str = "mbold_tabletop/reach_cpu",
                  reward: str = "pixel_mse", total_steps: int = 2000, batch_size: int = 50,
                  sequence_length: int = 31, data_dir: Optional[str] = None,
                  max_episodes: Optional[int] = None, model_lr: float = 6e-4,
                  actor_lr: float = 8e-5, value_lr: float = 8e-5, grad_clip: float = 100.0,
                  seed: int = 0, checkpoint_every: int = 500, summary_every: int = 50,
                  log_every: int = 100,
                  arrays: Optional[rlds.EpisodeArrays] = None) -> Dict:
    """Trains goal-conditioned Dreamer into ``root_dir``; resumes if it has a checkpoint.

    Args:
      root_dir: run directory (checkpoints, summaries, config.json).
      dataset / data_dir / max_episodes: the RLDS dataset (train split), unless ``arrays``
        (EpisodeArrays) is given.
      reward: 'pixel_mse' (the paper's default) or 'arm_l2' (the privileged oracle; needs
        ``arrays.privileged['ee_pos']``).
      total_steps: training iterations (one world-model + one behaviour update each; the paper:
        2,000).
      batch_size, sequence_length: B windows of L frames (Dreamer v1: 50; episodes here hold 31
        frames, the whole trajectory).
      model_lr, actor_lr, value_lr, grad_clip: Dreamer v1's Adam settings.
      seed: data and initialisation seed.
      checkpoint_every / summary_every / log_every: periods in steps.
    Returns:
      dict: reward, steps, seconds, steps_per_s, the last scalars.
    Raises:
      ValueError for an unknown reward or an 'arm_l2' dataset without end-effector positions;
      ConfigMismatchError naming the settings that differ from ``root_dir``'s checkpoint;
      NonFiniteLossError naming the step and the last good checkpoint for a NaN loss.
    """
    training.check_positive(**{"train_dreamer.total_steps": total_steps,
                               "train_dreamer.batch_size": batch_size,
                               "train_dreamer.sequence_length": sequence_length,
                               "train_dreamer.checkpoint_every": checkpoint_every,
                               "train_dreamer.summary_every": summary_every,
                               "train_dreamer.log_every": log_every})
    dreamer_model.check_reward(reward)
    dreamer_model.dreamer_settings()  # validates the gin settings before data are loaded
    if arrays is None:
        arrays = rlds.load_episodes(dataset, "train", data_dir=data_dir,
                                    max_episodes=max_episodes)
    check_dataset_for_reward(arrays, reward, repr(dataset))
    tf.random.set_seed(seed)
    settings = _run_settings(reward, arrays.actions.shape[-1], sequence_length, model_lr,
                             actor_lr, value_lr, grad_clip)
    run_config.check_or_write_config(root_dir, KIND, settings)
    rlds.write_data_stats(root_dir, arrays, dataset)

    data = iter(dreamer_dataset(arrays, batch_size, sequence_length, reward, seed))
    model = dreamer_model.DreamerModel(settings["model"], settings["action_dim"])
    trainer = DreamerTrainer(model, model_lr, actor_lr, value_lr, grad_clip)
    step = tf.Variable(0, dtype=tf.int64, name="global_step")
    trackables = {"model": model, "model_optimizer": trainer.model_optimizer,
                  "actor_optimizer": trainer.actor_optimizer,
                  "value_optimizer": trainer.value_optimizer}
    compiled = tf.function(trainer.train_step)

    def train_step():
        return compiled(_model_inputs(next(data)))

    loop = training.TrainingLoop(root_dir, trackables, step, total_steps,
                                 checkpoint_every=checkpoint_every, summary_every=summary_every,
                                 log_every=log_every)
    result = {"reward": reward, **loop.timed_run(train_step)}
    logging.info("Trained Dreamer (%s): %s", reward, result)
    return result


def _model_inputs(batch: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """The keys the training step reads (one traced signature whatever the reward)."""
    return {k: batch[k] for k in ("images", "actions", "goal", "reward")}
