"""Training of the SoRB baseline (Search on the Replay Buffer, App. B.4).

``train_sorb(root_dir)`` trains :class:`~mbold_tf.models.sorb.SorbModel` (distributional critic
+ deterministic actor, Polyak targets, TD3's delayed actor updates and target smoothing) on the
MBOLD distance's data: relabelled transitions with hard negatives
(:func:`mbold_tf.data.pipelines.distance_dataset` with :func:`mbold_tf.data.neighbors.
neighbor_table` over the arm joints), through :class:`mbold_tf.utils.training.TrainingLoop`
(resume, NaN guard, SIGTERM save, logs; batch-norm statistics recomputed before every save).
The settings go to ``root_dir/config.json`` (kind ``'sorb'``).

After training it builds SoRB's graph: ``graph_size`` observations sampled (seeded) from the
training steps and their pairwise predicted distances, saved as ``root_dir/graph.npz``
(:class:`~mbold_tf.models.sorb.SorbGraph`); a rerun on a finished run rebuilds it only when it
is missing or from another checkpoint. :func:`mbold_tf.agents.checkpoints.load_sorb` returns the
model with ``.graph``.
"""
from __future__ import annotations

import time
from typing import Callable, Dict, Optional

from absl import logging
import gin
import numpy as np
import tensorflow as tf

from mbold_tf.data import neighbors
from mbold_tf.data import pipelines
from mbold_tf.data import rlds
from mbold_tf.models import sorb
from mbold_tf.utils import batch_norm
from mbold_tf.utils import distribute
from mbold_tf.utils import run_config
from mbold_tf.utils import training

KIND = sorb.KIND


def build_train_step(model: sorb.SorbModel, next_batch: Callable[[], Dict[str, tf.Tensor]],
                     step: tf.Variable, critic_optimizer, actor_optimizer,
                     target_update_tau: float = 0.005, actor_update_period: int = 2,
                     target_policy_noise: float = 0.1, target_policy_noise_clip: float = 0.2,
                     actor_bc_weight: float = 0.0) -> Callable[[], Dict[str, tf.Tensor]]:
    """One compiled SoRB update: critic, the actor every ``actor_update_period`` steps, targets.

    ``next_batch()`` returns a :func:`pipelines.distance_dataset` batch; ``step`` (int64
    variable, incremented by the caller) decides the actor updates; ``actor_bc_weight``: see
    :meth:`SorbModel.actor_loss`. Returns a ``tf.function`` giving float32 scalars: critic_loss,
    kl, actor_loss (of the last actor update), expected_distance, target_distance,
    reached_fraction.
    """
    last_actor_loss = tf.Variable(0.0, trainable=False, name="last_actor_loss")
    critic_vars = model.critic.trainable_variables
    actor_vars = model.actor.trainable_variables

    @tf.function
    def train_step():
        batch = next_batch()
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(critic_vars)
            out = model.critic_loss(batch, training=True,
                                    target_policy_noise=target_policy_noise,
                                    target_policy_noise_clip=target_policy_noise_clip)
        critic_optimizer.apply_gradients(zip(tape.gradient(out["critic_loss"], critic_vars),
                                             critic_vars))

        def update_actor():
            with tf.GradientTape(watch_accessed_variables=False) as atape:
                atape.watch(actor_vars)
                loss = model.actor_loss(batch, training=True, bc_weight=actor_bc_weight)
            actor_optimizer.apply_gradients(zip(atape.gradient(loss, actor_vars), actor_vars))
            last_actor_loss.assign(loss)
            return loss

        tf.cond(tf.equal(step % actor_update_period, 0), update_actor,
                lambda: tf.identity(last_actor_loss))
        model.update_targets(target_update_tau)
        return dict(out, actor_loss=tf.identity(last_actor_loss))

    return train_step


def _recalibration(model: sorb.SorbModel, batches, num_batches: int, step: tf.Variable):
    """``before_save()``: recompute the online networks' batch-norm statistics, log the gap
    mean |E[d]_train − E[d]_inference| of the critic at the data actions, before and after."""
    def critic_distance(batch, training):
        obs = {"image": batch["observation"], "goal_image": batch["goal"]}
        logits, _ = model.critic((obs, batch["action"]), training=training)
        return sorb.expected_distance(logits)

    def forward(batch):
        critic_distance(batch, True)
        model.actor({"image": batch["observation"], "goal_image": batch["goal"]}, training=True)

    return batch_norm.recalibration_hook([model.actor, model.critic], forward, critic_distance,
                                         batches, num_batches, step, "distance_gap")



def graph_nodes(arrays: rlds.EpisodeArrays, graph_size: int, seed: int) -> np.ndarray:
    """int64 [graph_size]: distinct step indices of ``arrays``, uniform without replacement,
    sorted (numpy ``default_rng(seed)``). Raises ValueError when the data has fewer steps."""
    if graph_size > arrays.num_steps:
        raise ValueError(f"sorb_settings.graph_size = {graph_size} exceeds the {arrays.num_steps} "
                         f"observations of the training data; lower it or use more episodes.")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(arrays.num_steps, size=graph_size, replace=False)).astype(np.int64)


def build_graph(model: sorb.SorbModel, arrays: rlds.EpisodeArrays, graph_size: int, seed: int,
                checkpoint_step: int) -> sorb.SorbGraph:
    """The graph: ``graph_size`` seeded training observations and their pairwise distances
    (float32 [N, N], ``model.pairwise_distances``, eval mode)."""
    idx = graph_nodes(arrays, graph_size, seed)
    images = arrays.images[idx]
    return sorb.SorbGraph(images=images, distances=model.pairwise_distances(images, images),
                          indices=idx, checkpoint_step=int(checkpoint_step), seed=int(seed))


def _graph_is_current(graph: Optional[sorb.SorbGraph], settings: Dict, step: int,
                      seed: int) -> bool:
    return (graph is not None and graph.checkpoint_step == step and graph.seed == seed
            and graph.images.shape[0] == settings["graph_size"])


def _check_train_settings(total_steps: int, batch_size: int, actor_update_period: int,
                          checkpoint_every: int, summary_every: int, log_every: int,
                          negatives_key: str, target_update_tau: float,
                          actor_bc_weight: float) -> None:
    """Raises SettingError / ValueError naming a setting of :func:`train_sorb` out of range."""
    training.check_positive(**{"train_sorb.total_steps": total_steps,
                               "train_sorb.batch_size": batch_size,
                               "train_sorb.actor_update_period": actor_update_period,
                               "train_sorb.checkpoint_every": checkpoint_every,
                               "train_sorb.summary_every": summary_every,
                               "train_sorb.log_every": log_every})
    if negatives_key not in pipelines.NEGATIVE_KEYS:
        raise ValueError(f"Unknown negatives_key {negatives_key!r}; choose one of "
                         f"{pipelines.NEGATIVE_KEYS}.")
    if not 0.0 < target_update_tau <= 1.0:
        raise training.SettingError(f"train_sorb.target_update_tau must be in (0, 1], got "
                                    f"{target_update_tau}.")
    if actor_bc_weight < 0:
        raise training.SettingError(f"train_sorb.actor_bc_weight must be >= 0 (0: the paper's "
                                    f"actor loss), got {actor_bc_weight}.")
    workers = distribute.task_info().num_workers
    if workers > 1:
        raise training.SettingError(
            f"train_sorb trains in one process (one device); TF_CONFIG describes {workers} "
            f"workers. Unset TF_CONFIG.")


def _run_settings(model_settings: Dict, action_dim: int, learning_rate: float,
                  negatives_key: str, target_update_tau: float, actor_update_period: int,
                  target_policy_noise: float, target_policy_noise_clip: float,
                  actor_bc_weight: float) -> Dict:
    """The run's record (config.json): the model, the training and the data's gin bindings."""
    data_bindings = {name: dict(sorted(gin.get_bindings(fn).items()))
                     for name, fn in (("distance_dataset", pipelines.distance_dataset),
                                      ("neighbor_table", neighbors.neighbor_table))}
    # sorb_settings' keys at the top level, so a mismatch on resume names the one that differs
    settings = {**model_settings, "action_dim": int(action_dim),
                "learning_rate": float(learning_rate), "negatives_key": negatives_key,
                "target_update_tau": float(target_update_tau),
                "actor_update_period": int(actor_update_period),
                "target_policy_noise": float(target_policy_noise),
                "target_policy_noise_clip": float(target_policy_noise_clip),
                "actor_bc_weight": float(actor_bc_weight), "data": data_bindings}
    return settings


def _graph_stage(model: sorb.SorbModel, arrays: rlds.EpisodeArrays, root_dir: str,
                 settings: Dict, checkpoint_step: int, seed: int) -> Dict:
    """Builds and saves the graph unless ``root_dir`` holds the one of this checkpoint; returns
    graph_rebuilt, graph_seconds, graph_pairs_per_s and graph_edge_fraction."""
    graph = sorb.read_graph(root_dir)
    rebuilt = not _graph_is_current(graph, settings, checkpoint_step, seed)
    t1 = time.time()
    if rebuilt:
        n = settings["graph_size"]
        logging.info("Building the SoRB graph: %d observations, %d pairs...", n, n * n)
        graph = build_graph(model, arrays, n, seed, checkpoint_step)
        sorb.write_graph(root_dir, graph)
    graph_seconds = time.time() - t1
    pairs = graph.distances.size
    off = ~np.eye(graph.distances.shape[0], dtype=bool)
    edge_fraction = float(np.mean(graph.distances[off] <= settings["max_dist"]))
    return {"graph_rebuilt": rebuilt, "graph_seconds": round(graph_seconds, 1),
            "graph_pairs_per_s": round(pairs / max(graph_seconds, 1e-9), 1) if rebuilt else None,
            "graph_edge_fraction": round(edge_fraction, 4)}


@gin.configurable(denylist=["root_dir", "arrays"])
def train_sorb(root_dir: str, dataset: str = "mbold_tabletop/push1_cpu",
               data_dir: Optional[str] = None, total_steps: int = 93750, batch_size: int = 64,
               learning_rate: float = 3e-4, negatives_key: str = "state",
               target_update_tau: float = 0.005, actor_update_period: int = 2,
               target_policy_noise: float = 0.1, target_policy_noise_clip: float = 0.2,
               actor_bc_weight: float = 0.0, seed: int = 0, max_episodes: Optional[int] = None,
               checkpoint_every: int = 5000, summary_every: int = 100, log_every: int = 500,
               bn_recalibration_batches: int = 50,
               arrays: Optional[rlds.EpisodeArrays] = None) -> Dict:
    """Trains SoRB's distance into ``root_dir`` (resuming), then builds and saves its graph.

    Args:
      root_dir: run directory (checkpoints, summaries, config.json, graph.npz).
      dataset / data_dir / max_episodes: the RLDS dataset (train split) to read, unless
        ``arrays`` (EpisodeArrays) is given.
      total_steps, batch_size: gradient steps and batch (the paper: 93,750 at 64, as MBOLD's).
      learning_rate: Adam, actor and critic (3e-4).
      negatives_key: hard negatives 'state' (paper), 'goal' or 'none' (pipelines).
      target_update_tau: Polyak rate of the target networks (0.005: factor 0.995).
      actor_update_period: the actor (and nothing else) updates every this many steps (TD3).
      target_policy_noise / _clip: Gaussian noise on the target action and its clip (TD3).
      actor_bc_weight: 0 (the paper) or TD3+BC's α (:meth:`SorbModel.actor_loss`).
      seed: data, initialisation and graph-node seed.
      checkpoint_every / summary_every / log_every: periods in steps.
      bn_recalibration_batches: batch-norm statistics recomputed from this many batches before
        every checkpoint (0: Keras' moving averages).
    The distance bins, ``max_dist`` and ``graph_size`` are :func:`sorb.sorb_settings`'s. No γ:
    the bins count steps, undiscounted.
    Returns:
      dict: method 'sorb', steps, seconds, steps_per_s, graph_seconds, graph_pairs_per_s,
      graph_edge_fraction (pairs ≤ max_dist), graph_rebuilt, and the last training scalars.
    Raises:
      SettingError for a non-positive size or period, or a multi-worker TF_CONFIG; ValueError
      for an unknown negatives key or a graph larger than the data; ConfigMismatchError when
      ``root_dir`` holds another kind of run or one of other settings; NonFiniteLossError when
      training diverges.
    """
    _check_train_settings(total_steps, batch_size, actor_update_period, checkpoint_every,
                          summary_every, log_every, negatives_key, target_update_tau,
                          actor_bc_weight)
    tf.random.set_seed(seed)
    model_settings = sorb.sorb_settings()
    if arrays is None:
        arrays = rlds.load_episodes(dataset, "train", data_dir=data_dir, max_episodes=max_episodes)
    graph_nodes(arrays, model_settings["graph_size"], seed)  # fails early when too large
    settings = _run_settings(model_settings, arrays.actions.shape[-1], learning_rate,
                             negatives_key, target_update_tau, actor_update_period,
                             target_policy_noise, target_policy_noise_clip, actor_bc_weight)
    run_config.check_or_write_config(root_dir, KIND, settings)
    rlds.write_data_stats(root_dir, arrays, dataset)  # (after the check: never in another run)

    table = neighbors.neighbor_table(arrays) if negatives_key != "none" else None

    def dataset_for(data_seed):
        return pipelines.distance_dataset(arrays, neighbor_table=table, batch_size=batch_size,
                                          negatives_key=negatives_key,
                                          reward_scheme="indicator", seed=data_seed)

    model = sorb.build_model(settings)
    critic_optimizer = tf.keras.optimizers.Adam(learning_rate)
    actor_optimizer = tf.keras.optimizers.Adam(learning_rate)
    step = tf.Variable(0, dtype=tf.int64, name="global_step")
    it = iter(dataset_for(seed))
    train_step = build_train_step(model, lambda: next(it), step, critic_optimizer,
                                  actor_optimizer, target_update_tau, actor_update_period,
                                  target_policy_noise, target_policy_noise_clip, actor_bc_weight)
    before_save = None
    if bn_recalibration_batches > 0:
        before_save = _recalibration(model, iter(dataset_for(seed + 1)),
                                     bn_recalibration_batches, step)
    trackables = {"model": model, "critic_optimizer": critic_optimizer,
                  "actor_optimizer": actor_optimizer}
    loop = training.TrainingLoop(root_dir, trackables, step, total_steps,
                                 checkpoint_every=checkpoint_every, summary_every=summary_every,
                                 log_every=log_every, before_save=before_save)
    trained = loop.timed_run(train_step)
    result = {"method": "sorb", **trained,
              **_graph_stage(model, arrays, root_dir, settings, trained["steps"], seed)}
    logging.info("Trained sorb: %s", result)
    return result
