"""Trains the video predictor (MBOLD §4): ℓ2 (or ℓ1) loss over the h predicted frames.

``train_predictor(root_dir)`` builds :class:`~mbold_tf.models.video_predictor.VideoPredictor`
under gin, writes/checks ``root_dir/config.json``, and trains with Adam and scheduled sampling
through :class:`~mbold_tf.utils.training.TrainingLoop` (resumable checkpoints in
``root_dir/ckpt``, NaN guard, SIGTERM save, steps/s + ETA logs, TensorBoard scalars in
``root_dir/train``) plus, every ``strip_every`` steps, a validation MSE and a strip image of real
frames (top row) above closed-loop predictions (bottom row).

The strategy comes from :func:`mbold_tf.utils.distribute.strategy_from_environment`: one
device, several GPUs (``MirroredStrategy``) or a ``TF_CONFIG`` cluster
(``MultiWorkerMirroredStrategy``); ``batch_size`` is always the global batch, split evenly over
the replicas, and each worker's input pipeline samples with its own seed.
``precision`` picks float32 or Keras mixed precision (``mixed_float16`` on a GPU,
``mixed_bfloat16`` on a GPU or a CPU with bfloat16 instructions; refused elsewhere, naming the
CPU flag); predictions and the loss stay float32.

Two options shape the loss: ``motion_weight`` weights each pixel's error by how much the real
sequence changes there (so the few pixels of the moving arm and object count beyond the static
table), and a state-conditioned predictor (``VideoPredictor.state_conditioned``) adds the error of
its predicted robot states, weighted by ``state_loss_weight``.
"""
from __future__ import annotations

import os
import time
from typing import Dict, Optional

from absl import logging
import gin
import numpy as np
import tensorflow as tf

from mbold_tf.data import pipelines
from mbold_tf.data import rlds
from mbold_tf.models import video_predictor as vp
from mbold_tf.utils import distribute
from mbold_tf.utils import image_strips
from mbold_tf.utils import precision as precision_lib
from mbold_tf.utils import run_config
from mbold_tf.utils import training

LOSSES = ("l2", "l1")


def motion_weights(context_frame, targets, motion_weight: float):
    """float32 [B, h, H, W]: 1 + ``motion_weight`` · |change| of the real sequence per pixel.

    The change of frame t is the largest absolute difference over the colour channels between
    the real frame t and the real frame before it (``context_frame`` float32 [B, H, W, 3] before
    the first); it covers both where a thing was and where it went. ``targets`` float32
    [B, h, H, W, 3] in [0, 1]. Static pixels weigh 1.
    """
    targets = tf.cast(targets, tf.float32)
    previous = tf.concat([tf.cast(context_frame, tf.float32)[:, None], targets[:, :-1]], axis=1)
    change = tf.reduce_max(tf.abs(targets - previous), axis=-1)
    return 1.0 + float(motion_weight) * change


def reconstruction_loss(targets, preds, loss: str = "l2", weights=None):
    """Mean over batch, frames and pixels of (pred - target)^2 ('l2') or |pred - target| ('l1').

    With ``weights`` (float32 [B, h, H, W], e.g. :func:`motion_weights`), the weighted mean
    sum(w · err) / sum(w), err averaged over the colour channels: equal to the plain loss where
    all weights are equal.
    """
    diff = tf.cast(preds, tf.float32) - tf.cast(targets, tf.float32)
    if loss == "l2":
        err = tf.square(diff)
    elif loss == "l1":
        err = tf.abs(diff)
    else:
        raise ValueError(f"Unknown loss {loss!r}; choose one of {LOSSES}.")
    if weights is None:
        return tf.reduce_mean(err)
    weights = tf.cast(weights, tf.float32)
    return tf.reduce_sum(weights * tf.reduce_mean(err, axis=-1)) / tf.reduce_sum(weights)


def context_states(model: vp.VideoPredictor, proprio):
    """The context frames' robot states a state-conditioned ``model`` needs (float32 [B, C, P])
    from a window's ``proprio`` float32 [B, C+h, P]; None for an image-only model."""
    if not model.state_conditioned:
        return None
    return tf.cast(proprio[:, :model.context], tf.float32)


def window_losses(model: vp.VideoPredictor, arrays: rlds.EpisodeArrays,
                  batch_size: int = 64) -> np.ndarray:
    """float32 [N]: each window's closed-loop prediction MSE (over its h frames and pixels).

    Windows are those of :func:`~mbold_tf.data.pipelines.predictor_window_starts` in its order;
    the model predicts from the context frames and the actions alone, as when planning.
    """
    c, h = model.context, model.horizon
    starts = pipelines.predictor_window_starts(arrays, c, h)
    frame_offsets, action_offsets = pipelines.predictor_window_offsets(c, h)
    out = np.empty(starts.size, np.float32)
    for i in range(0, starts.size, batch_size):
        s = starts[i:i + batch_size, None]
        images = arrays.images[s + frame_offsets]
        states = arrays.proprio[s + frame_offsets[:c]] if model.state_conditioned else None
        preds = model.predict(images[:, :c], arrays.actions[s + action_offsets], states)
        real = images[:, c:].astype(np.float32) / 255.0
        out[i:i + s.shape[0]] = np.mean(np.square(np.asarray(preds) - real), axis=(1, 2, 3, 4))
    return out


class PredictorTrainer:
    """Model, optimizer, input pipeline, compiled train step and TrainingLoop of one run.

    Built by :func:`train_predictor`; exposed so that tests and tools can restore a run's exact
    training state (``trainer.loop.restore()``) without training.
    """

    def __init__(self, root_dir: str, dataset: str, data_dir: Optional[str], total_steps: int,
                 batch_size: int, learning_rate: float, loss: str, seed: int,
                 checkpoint_every: int, summary_every: int, log_every: int,
                 precision: str = "float32", arrays: Optional[rlds.EpisodeArrays] = None,
                 validation_fraction: float = 0.05, hard_window_share: float = 0.0,
                 rescore_every: int = 0, motion_weight: float = 0.0,
                 state_loss_weight: float = 1.0):
        if loss not in LOSSES:
            raise ValueError(f"Unknown loss {loss!r}; choose one of {LOSSES}.")
        if motion_weight < 0 or state_loss_weight < 0:
            raise training.SettingError(
                f"train_predictor.motion_weight = {motion_weight} and "
                f"train_predictor.state_loss_weight = {state_loss_weight} must be >= 0.")
        self.motion_weight = float(motion_weight)
        self.state_loss_weight = float(state_loss_weight)
        if hard_window_share and not 0.0 < hard_window_share < 1.0:
            raise training.SettingError(
                f"train_predictor.hard_window_share = {hard_window_share} must lie in (0, 1): the "
                f"share of each batch drawn in proportion to the windows' prediction error.")
        if bool(hard_window_share) != (rescore_every > 0):
            # One without the other would be accepted and do nothing.
            raise training.SettingError(
                f"train_predictor.hard_window_share = {hard_window_share} and "
                f"train_predictor.rescore_every = {rescore_every}: set both (share in (0, 1), "
                f"rescore_every > 0 steps) to draw hard windows, or neither.")
        self.hard_window_share = float(hard_window_share)
        self.rescore_every = int(rescore_every)
        self.root_dir = root_dir
        self.loss_name = loss
        self.strategy = distribute.strategy_from_environment()
        self.write_dir = distribute.worker_dir(root_dir)
        replicas = self.strategy.num_replicas_in_sync
        if batch_size % replicas:
            raise training.SettingError(
                f"train_predictor.batch_size = {batch_size} is the global batch and must split "
                f"evenly over the {replicas} replicas; set it to a multiple of {replicas}.")
        # Refused where the hardware lacks it: accepting it would record mixed precision for
        # weights trained (slower) in emulation.
        self.precision = precision_lib.check_precision(precision, "train_predictor.precision")
        self.mixed = self.precision != "float32"
        previous_policy = tf.keras.mixed_precision.global_policy()
        if self.mixed:
            tf.keras.mixed_precision.set_global_policy(self.precision)
        try:
            with self.strategy.scope():
                # The action size is the data's unless gin binds it (then train() checks that
                # the two agree): one owner, and no preset pins another robot to 4-D actions.
                try:
                    bound = gin.query_parameter("VideoPredictor.action_dim")
                except ValueError:
                    bound = None
                size = {} if bound is not None else {"action_dim": (
                    int(arrays.actions.shape[-1]) if arrays is not None
                    else rlds.action_dim(dataset, data_dir))}
                size.update(self._state_size(dataset, data_dir, arrays))
                self.model = vp.VideoPredictor(**size)
                # The loss, learning rate and batch shape the weights without changing the
                # model: recorded beside its settings, so that resuming with others fails and
                # results headers name them. A resume with other settings fails here, before
                # any data loads; a new run's record is written by train() once the data's
                # checks pass, so a failed start leaves no record without a checkpoint.
                self._record = dict(self.model.settings(), **{
                    vp.TRAINING_KEY: self._training_record(loss, learning_rate, batch_size)})
                if os.path.exists(run_config.config_path(self.write_dir)):
                    run_config.check_or_write_config(self.write_dir, vp.KIND, self._record)
                self.model.build_variables()
                optimizer = tf.keras.optimizers.Adam(learning_rate)
                if self.precision == "mixed_float16":  # bfloat16 has float32's range: no scaling
                    optimizer = tf.keras.mixed_precision.LossScaleOptimizer(optimizer)
                self.optimizer = optimizer
                self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        finally:
            tf.keras.mixed_precision.set_global_policy(previous_policy)
        self.loop = training.TrainingLoop(
            root_dir, {"model": self.model, "optimizer": self.optimizer}, self.step,
            total_steps, checkpoint_every=checkpoint_every, summary_every=summary_every,
            log_every=log_every)
        self.dataset_name = dataset
        self.data_dir = data_dir
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self._arrays = arrays
        self._given_arrays = arrays is not None
        self._held_out = None
        self.validation_fraction = float(validation_fraction)

    def _training_record(self, loss, learning_rate, batch_size) -> dict:
        """The trainer's settings recorded beside the model's (they shape the weights)."""
        record = {"loss": loss, "learning_rate": float(learning_rate),
                  "batch_size": int(batch_size)}
        # Recorded only when they differ from the plain recipe, so runs trained before these
        # options existed still resume and load with the settings they were trained with.
        if self.motion_weight:
            record["motion_weight"] = self.motion_weight
        if self.precision != "float32":
            record["precision"] = self.precision
        if self.model.state_conditioned:
            record["state_loss_weight"] = self.state_loss_weight
        return record

    @staticmethod
    def _state_size(dataset, data_dir, arrays) -> dict:
        """{'state_dim': P} from the data for a state-conditioned model whose size gin does not
        bind; {} otherwise."""
        def bound(name):
            try:
                return gin.query_parameter(f"VideoPredictor.{name}")
            except ValueError:
                return None
        if not bound("state_conditioned") or bound("state_dim") is not None:
            return {}
        if arrays is not None:
            return {"state_dim": int(arrays.proprio.shape[-1])}
        return {"state_dim": int(rlds.proprio_dim(dataset, data_dir))}

    # ---------------------------------------------------------------- data
    def arrays(self, split: str = "train") -> rlds.EpisodeArrays:
        """The training episodes (without any held-out share), or another split's."""
        if split == "train" and self._arrays is not None:
            return self._arrays
        arrays = rlds.load_episodes(self.dataset_name, split, data_dir=self.data_dir)
        if split == "train":
            if self.validation_fraction and not self._has_split("validation"):
                arrays, self._held_out = rlds.hold_out(arrays, self.validation_fraction)
                logging.info("%s has no validation split: holding out its last %d of %d "
                             "train episodes (train_predictor.validation_fraction = %g) for "
                             "the validation summaries; they are not trained on.",
                             self.dataset_name, self._held_out.num_episodes,
                             self._held_out.num_episodes + arrays.num_episodes,
                             self.validation_fraction)
            self._arrays = arrays
        return arrays

    def _has_split(self, split: str) -> bool:
        return split in rlds.split_names(self.dataset_name, self.data_dir)

    def validation_arrays(self) -> rlds.EpisodeArrays:
        """The dataset's validation split, or the share of train held out when it has none
        (episodes passed in as ``arrays`` are their own validation, and the log says so)."""
        if self._given_arrays:
            logging.info("Validation summaries use the episodes passed in (no dataset split).")
            return self._arrays
        if self._has_split("validation"):
            return self.arrays("validation")
        self.arrays("train")
        return self._held_out

    def _dataset(self, arrays, batch_size, seed, window_weights=None):
        return pipelines.predictor_dataset(
            arrays, batch_size=batch_size, context=self.model.context,
            horizon=self.model.horizon, seed=seed, window_weights=window_weights,
            weighted_share=self.hard_window_share if window_weights is not None else 0.0,
            with_proprio=self.model.state_conditioned)

    def score_windows(self, step: int) -> np.ndarray:
        """float32 [N]: every training window's closed-loop MSE under the current weights.

        Also writes them to ``root_dir/hard_windows/step_<step>.npz`` (``starts``, ``mse``)
        and logs how concentrated they are.
        """
        arrays = self.arrays("train")
        t0 = time.time()
        losses = window_losses(self.model, arrays)
        seconds = time.time() - t0
        if not np.all(np.isfinite(losses)):
            raise training.NonFiniteLossError(
                f"step {step}: {int(np.sum(~np.isfinite(losses)))} of {losses.size} windows "
                f"have a non-finite prediction error; the weights are broken.")
        out_dir = os.path.join(self.write_dir, "hard_windows")
        os.makedirs(out_dir, exist_ok=True)
        np.savez(os.path.join(out_dir, f"step_{step:07d}.npz"), mse=losses,
                 starts=pipelines.predictor_window_starts(arrays, self.model.context,
                                                          self.model.horizon))
        top = np.sort(losses)[::-1][:max(1, losses.size // 10)]
        top_share = float(top.sum() / max(losses.sum(), 1e-12))
        logging.info("step %d: scored %d training windows in %.1f s (closed-loop MSE mean %.5f, "
                     "the worst 10%% hold %.1f%% of it); %g of each batch is now drawn in "
                     "proportion to it.", step, losses.size, seconds, float(losses.mean()),
                     100 * top_share, self.hard_window_share)
        with self.loop.writer.as_default():
            tf.summary.scalar("hard_windows/mean_window_mse", float(losses.mean()), step=step)
            tf.summary.scalar("hard_windows/worst_decile_share", top_share, step=step)
            tf.summary.scalar("hard_windows/score_seconds", seconds, step=step)
        return losses

    # ---------------------------------------------------------------- training
    def _replica_step(self, batch, step):
        model = self.model
        images = tf.cast(batch["images"], tf.float32) / 255.0
        frames, targets = images[:, :model.context], images[:, model.context:]
        p = vp.ground_truth_probability(step, model.schedule_k)
        seed = tf.cast(tf.stack([tf.constant(self.seed + 7919, tf.int64), step]), tf.int32)
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        seed = tf.random.experimental.stateless_fold_in(seed, replica)
        states = target_states = None
        if model.state_conditioned:
            proprio = tf.cast(batch["proprio"], tf.float32)
            states, target_states = proprio[:, :model.context], proprio[:, model.context:]
        weights = (motion_weights(frames[:, -1], targets, self.motion_weight)
                   if self.motion_weight else None)
        with tf.GradientTape() as tape:
            preds, kl, pred_states = model.unroll(
                frames, batch["actions"], targets, p, seed=seed, training=True, states=states,
                target_states=target_states, return_states=True)
            rec = reconstruction_loss(targets, preds, self.loss_name, weights)
            total = rec + model.kl_weight * kl if model.stochastic else rec
            if model.state_conditioned:
                state_mse = tf.reduce_mean(tf.square(pred_states - target_states))
                total += self.state_loss_weight * state_mse
            scaled = total / self.strategy.num_replicas_in_sync
            if self.precision == "mixed_float16":
                scaled = self.optimizer.get_scaled_loss(scaled)
        grads = tape.gradient(scaled, model.trainable_variables)
        if self.precision == "mixed_float16":
            grads = self.optimizer.get_unscaled_gradients(grads)
        self.optimizer.apply_gradients(zip(grads, model.trainable_variables))
        mse = tf.reduce_mean(tf.square(preds - targets))
        out = {"loss": total, "mse": mse, "ground_truth_prob": p}
        if model.stochastic:
            out["kl"] = kl
        if model.state_conditioned:
            out["state_mse"] = state_mse
        return out

    def train(self, strip_every: int = 0) -> Dict[str, float]:
        """Trains (or resumes) to ``total_steps``; returns the last scalars with ``step``,
        ``train_seconds`` and ``steps_per_s``. The run's record (config.json, data_stats.json)
        is written once the data passed its checks."""
        stats = rlds.data_stats(self.arrays("train"), self.dataset_name)
        if stats["action_dim"] != self.model.action_dim:
            raise training.SettingError(
                f"{self.dataset_name} has {stats['action_dim']}-D actions but the predictor is "
                f"built for {self.model.action_dim}: set --gin_param=\"VideoPredictor.action_dim="
                f"{stats['action_dim']}\".")
        run_config.check_or_write_config(self.write_dir, vp.KIND, self._record)
        rlds.write_data_stats(self.write_dir, self.arrays("train"), self.dataset_name)
        train_arrays = self.arrays("train")

        def dataset_fn(input_context):
            per_replica = input_context.get_per_replica_batch_size(self.batch_size)
            return self._dataset(train_arrays, per_replica,
                                 distribute.shard_seed(self.seed, input_context))

        def weighted_dataset_fn(weights, step):
            def fn(input_context):
                per_replica = input_context.get_per_replica_batch_size(self.batch_size)
                seed = distribute.shard_seed(self.seed, input_context) + 1_000_003 * step
                return self._dataset(train_arrays, per_replica, seed, window_weights=weights)
            return fn

        # Hard windows: at every multiple of rescore_every (and on resuming past the first),
        # all training windows are scored with the current weights and
        # hard_window_share of each batch is drawn in proportion to the scores.
        feed = {"iterator": iter(self.strategy.distribute_datasets_from_function(dataset_fn)),
                "scored_at": None}

        @tf.function
        def compiled_step(batch):
            outs = self.strategy.run(self._replica_step, args=(batch, self.step))
            return {k: self.strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None)
                    for k, v in outs.items()}

        def train_step():
            if self.rescore_every:
                step = int(self.step.numpy())
                every = self.rescore_every
                if step >= every and (feed["scored_at"] is None
                                      or step // every > feed["scored_at"] // every):
                    weights = self.score_windows(step)
                    feed["iterator"] = iter(self.strategy.distribute_datasets_from_function(
                        weighted_dataset_fn(weights, step)))
                    feed["scored_at"] = step
            return compiled_step(next(feed["iterator"]))

        summary_fn = None
        if strip_every:
            val_arrays = self.validation_arrays()
            val_batch = next(iter(self._dataset(val_arrays, 8, seed=12345)))

            def summary_fn(step):
                preds = self.model.predict(val_batch["images"][:, :self.model.context],
                                           val_batch["actions"],
                                           context_states(self.model, val_batch.get("proprio")))
                real = tf.cast(val_batch["images"][:, self.model.context:], tf.float32) / 255.0
                tf.summary.scalar("validation/mse", tf.reduce_mean(tf.square(preds - real)),
                                  step=step)
                strips = [image_strips.strip_image(real[i].numpy(), preds[i].numpy())
                          for i in range(3)]
                tf.summary.image("validation/real_above_predicted", np.stack(strips), step=step,
                                 max_outputs=3)

        self.loop.restore()
        start_step = int(self.step.numpy())
        t0 = time.time()
        last = self.loop.run(train_step, summary_fn=summary_fn, summary_fn_every=strip_every)
        seconds = time.time() - t0
        done = int(self.step.numpy()) - start_step
        out = dict(last)
        out.update(step=int(self.step.numpy()), train_seconds=round(seconds, 1),
                   steps_per_s=round(done / max(seconds, 1e-9), 3))
        return out


@gin.configurable(denylist=["root_dir", "arrays"])
def train_predictor(root_dir: str, dataset: str = "mbold_tabletop/push1_cpu",
                    data_dir: Optional[str] = None, total_steps: int = 200_000,
                    batch_size: int = 16, learning_rate: float = 1e-3, loss: str = "l2",
                    seed: int = 0, checkpoint_every: int = 1000, summary_every: int = 100,
                    log_every: int = 100, strip_every: int = 1000,
                    precision: str = "float32",
                    arrays: Optional[rlds.EpisodeArrays] = None,
                    validation_fraction: float = 0.05, hard_window_share: float = 0.0,
                    rescore_every: int = 0, motion_weight: float = 0.0,
                    state_loss_weight: float = 1.0) -> Dict[str, float]:
    """Trains (or resumes) the video predictor in ``root_dir``; returns the final scalars.

    Args:
      root_dir: run directory (config.json, ckpt/, train/ summaries).
      dataset / data_dir: TFDS name (or prepared directory) and data dir of the episodes.
      total_steps: stop at this step (resuming counts the steps already done).
      batch_size: global batch (paper 16). learning_rate: Adam (1e-3).
      loss: 'l2' (paper) or 'l1' (the authors' code).
      seed: input-pipeline and scheduled-sampling seed.
      checkpoint_every / summary_every / log_every / strip_every: periods in steps
        (strip_every=0 disables the validation strip and validation MSE summaries).
      precision: 'float32', 'mixed_float16' (GPU only) or 'mixed_bfloat16' (a GPU or a CPU
        with avx512_bf16/amx_bf16); refused, naming the flag, where the hardware lacks it.
      arrays: already loaded training episodes (skips loading ``dataset``).
      validation_fraction: for a dataset without a validation split, this share of its train
        episodes (the last ones) is held out for the validation summaries and not trained on.
      hard_window_share / rescore_every: 0 / 0 draws windows uniformly (the paper). With a
        share in (0, 1) and a period > 0: at every multiple of ``rescore_every`` steps (and on
        resuming past the first), every training window is scored by its closed-loop MSE under
        the current weights (:func:`window_losses`; saved in ``root_dir/hard_windows/``) and
        that share of each batch is drawn in proportion to the scores, the rest uniformly
        (on push1 the error is mostly the hand's, so pushes gain little: docs/measurements.md).
      motion_weight: 0 for the plain loss; λ > 0 weights each pixel's error by
        1 + λ·|change of the real sequence there| (:func:`motion_weights`).
      state_loss_weight: weight of the predicted robot states' MSE in the loss of a
        state-conditioned predictor (``VideoPredictor.state_conditioned``).
    Returns:
      the last logged scalars (loss, mse, ground_truth_prob[, kl]) with step, train_seconds and
      steps_per_s (of this invocation).
    """
    training.check_positive(**{"train_predictor.total_steps": total_steps,
                               "train_predictor.batch_size": batch_size,
                               "train_predictor.checkpoint_every": checkpoint_every,
                               "train_predictor.summary_every": summary_every,
                               "train_predictor.log_every": log_every})
    trainer = PredictorTrainer(root_dir, dataset, data_dir, total_steps, batch_size,
                               learning_rate, loss, seed, checkpoint_every, summary_every,
                               log_every, precision, arrays=arrays,
                               validation_fraction=validation_fraction,
                               hard_window_share=hard_window_share, rescore_every=rescore_every,
                               motion_weight=motion_weight, state_loss_weight=state_loss_weight)
    return trainer.train(strip_every=strip_every)
