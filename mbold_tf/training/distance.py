"""Training of the distance function (CQL-TD3, §4 / App. A.1) and its baselines.

``train_distance(root_dir, method=...)`` trains one of

* ``'cql_td3'``: :class:`~mbold_tf.agents.cql_td3_agent.CqlTd3Agent` (TD3 + CQL-Lagrange) on
  relabelled transitions with hard negatives (``negatives_key='none'`` trains without them);
* ``'td3'``: the same agent without the CQL term;
* ``'temporal'``: temporal distance regression (App. C.2);
* ``'vae'``: VAE latent ℓ2 (App. C.1);
* ``'gcbc'``: goal-conditioned behaviour cloning (App. B.3),

through :class:`mbold_tf.utils.training.TrainingLoop` (resume, NaN guard, SIGTERM save, steps/s
and ETA logs, TensorBoard scalars in ``root_dir/train``). The model's settings go to
``root_dir/config.json`` (kind ``'distance'``); :func:`mbold_tf.agents.checkpoints.load_distance`
and :func:`~mbold_tf.agents.checkpoints.load_gcbc` rebuild the model from them and restore the
latest checkpoint.

:func:`train_distance` owns the run's settings (γ, τ, learning rate, reward scheme, negatives)
and records them; the agent is built from that record (:func:`build_agent`), so
``CqlTd3Agent``'s copies of them are denylisted in gin and bind only through
``train_distance``. Each method's model, input pipeline and update come from one builder:
:func:`_agent_run` for the agent methods, :func:`_baseline_run` for the baselines.
"""
from __future__ import annotations

import itertools
import time
from typing import Callable, Dict, NamedTuple, Optional

from absl import logging
import gin
import tensorflow as tf
from tf_agents.trajectories import time_step as ts

from mbold_tf.agents import checkpoints
from mbold_tf.agents import cql_td3_agent
from mbold_tf.agents import distances
from mbold_tf.data import neighbors
from mbold_tf.data import pipelines
from mbold_tf.data import rlds
from mbold_tf.models import baselines
from mbold_tf.models import distance_networks as dn
from mbold_tf.models import video_predictor
from mbold_tf.training import predicted_frames
from mbold_tf.utils import batch_norm
from mbold_tf.utils import distribute
from mbold_tf.utils import run_config
from mbold_tf.utils import training

METHODS = ("cql_td3", "td3", "temporal", "vae", "gcbc")
KIND = checkpoints.KIND
AGENT_METHODS = checkpoints.AGENT_METHODS


DIVERGENCE_SLACK = 10.0  # Q may leave q_bounds by this many times their width before it "diverged"


def _check_choice(name: str, value, choices):
    if value not in choices:
        raise ValueError(f"Unknown {name} {value!r}; choose one of {choices}.")


def build_agent(settings: Dict, train_step_counter: Optional[tf.Variable] = None):
    """Networks and a :class:`CqlTd3Agent` from a run's stored settings.

    ``settings``: ``method`` ('cql_td3' or 'td3'), ``action_dim``, ``networks``, ``gamma``,
    ``reward_scheme`` (the TD targets are clipped into its Q range), ``learning_rate`` (Adam, actor
    and critics) and ``cql_tau``, as :func:`train_distance` records them.
    Returns (agent, (actor, critic1, critic2)).
    """
    actor, critic1, critic2 = dn.build_networks(settings["networks"],
                                                act_spec=dn.action_spec(settings["action_dim"]))
    agent = cql_td3_agent.CqlTd3Agent(
        ts.time_step_spec(dn.observation_spec()), dn.action_spec(settings["action_dim"]),
        actor_network=actor, critic_network=critic1, critic_network_2=critic2,
        actor_optimizer=tf.keras.optimizers.Adam(settings["learning_rate"]),
        critic_optimizer=tf.keras.optimizers.Adam(settings["learning_rate"]),
        cql=settings["method"] == "cql_td3", cql_tau=settings["cql_tau"], gamma=settings["gamma"],
        td_target_bounds=distances.q_bounds(settings["reward_scheme"], settings["gamma"]),
        train_step_counter=train_step_counter)
    agent.initialize()
    return agent, (actor, critic1, critic2)


class _Run(NamedTuple):
    """What :class:`~mbold_tf.utils.training.TrainingLoop` needs from one method's builder."""
    trackables: Dict[str, tf.Module]
    train_step: Callable[[], Dict[str, tf.Tensor]]
    before_save: Optional[Callable[[], None]]
    bounds: Dict


def _run_settings(method: str, action_dim: int, reward_scheme: str, gamma: float,
                  negatives_key: str, learning_rate: float, cql_tau: float,
                  predicted_states_dir: Optional[str], predicted_state_fraction: float) -> Dict:
    """The run's record (config.json): the model and, for the agent methods, its training."""
    agent_kind = method in AGENT_METHODS
    settings = {"method": method, "action_dim": int(action_dim),
                "networks": dn.network_settings() if agent_kind else baselines.baseline_settings()}
    if agent_kind:
        # The agent's gin settings (e.g. CqlTd3Agent.actor_bc_weight) join the run's record, so
        # resuming with other values fails naming them instead of mixing two trainings.
        agent_settings = {k: v for k, v in sorted(
            gin.get_bindings(cql_td3_agent.CqlTd3Agent).items())}
        settings.update(reward_scheme=reward_scheme, gamma=float(gamma),
                        negatives_key=negatives_key, learning_rate=float(learning_rate),
                        cql_tau=float(cql_tau), agent=agent_settings)
        if predicted_states_dir:
            settings["predicted_state_fraction"] = float(predicted_state_fraction)
    return settings


def _distributed(strategy, replica_step, batches):
    """A step running ``replica_step`` on the next distributed batch, scalars averaged."""
    def distributed_step():
        outs = strategy.run(replica_step, args=(next(batches),))
        return {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None)
                for k, v in outs.items()}
    return distributed_step


def _predicted_frames(arrays: rlds.EpisodeArrays, predicted_states_dir: Optional[str],
                      fraction: float) -> Dict:
    """``distance_dataset``'s keyword arguments that mix a predictor's frames into the states
    (none without ``predicted_states_dir``)."""
    if not predicted_states_dir:
        return {}
    t_pred = time.time()
    mix = {"state_images": predicted_frames.predicted_images(
               arrays, video_predictor.load_predictor(predicted_states_dir)),
           "state_image_fraction": fraction}
    logging.info("Predicted frames of %d steps from %s in %.1f s", len(arrays.images),
                 predicted_states_dir, time.time() - t_pred)
    return mix


def _agent_run(settings: Dict, arrays: rlds.EpisodeArrays, strategy, batch_size: int, seed: int,
               bn_recalibration_batches: int, step: tf.Variable,
               predicted_states_dir: Optional[str]) -> _Run:
    """The CQL-TD3 / TD3 agent's training: relabelled transitions with hard negatives."""
    negatives_key, reward_scheme = settings["negatives_key"], settings["reward_scheme"]
    table = None
    if negatives_key != "none":
        table = neighbors.neighbor_table(arrays)
    mix = _predicted_frames(arrays, predicted_states_dir,
                            settings.get("predicted_state_fraction"))

    def dataset_fn(input_context):
        return pipelines.distance_dataset(
            arrays, neighbor_table=table,
            batch_size=input_context.get_per_replica_batch_size(batch_size),
            negatives_key=negatives_key, reward_scheme=reward_scheme,
            seed=distribute.shard_seed(seed, input_context), **mix)

    with strategy.scope():
        agent, (actor, critic1, critic2) = build_agent(settings)
    trackables = {"agent": agent, "actor_network": actor, "critic_network_1": critic1,
                  "critic_network_2": critic2}
    it = iter(strategy.distribute_datasets_from_function(dataset_fn))

    def replica_step(batch):
        with tf.summary.record_if(False):
            info = agent.train(cql_td3_agent.trajectory_from_batch(batch))
        out = {"loss": info.loss}
        out.update({k: tf.cast(v, tf.float32) for k, v in info.extra._asdict().items()})
        return out

    distributed_step = _distributed(strategy, replica_step, it)
    if strategy.num_replicas_in_sync > 1:
        # The actor's every-other-step update cannot be a tf.cond around an all-reduce: two
        # compiled steps, chosen in Python (CqlTd3Agent.actor_update_decided_in_python).
        def traced(update_actor):
            @tf.function
            def step_fn():
                with agent.actor_update_decided_in_python(update_actor):
                    return distributed_step()
            return step_fn

        with_actor, critic_only = traced(True), traced(False)

        def train_step():
            n = int(agent.train_step_counter.numpy())
            return (with_actor if n % agent.actor_update_period == 0 else critic_only)()
    else:
        train_step = tf.function(distributed_step)

    before_save = None
    if bn_recalibration_batches > 0:
        recal_ds = pipelines.distance_dataset(
            arrays, neighbor_table=table, batch_size=batch_size, negatives_key=negatives_key,
            reward_scheme=reward_scheme, seed=seed + 1, **mix)
        before_save = _agent_recalibration(actor, critic1, critic2, iter(recal_ds),
                                           bn_recalibration_batches, step)
    # The true Q of these rewards lies in q_bounds; a critic ten ranges beyond it diverged.
    lo, hi = distances.q_bounds(reward_scheme, settings["gamma"])
    slack = DIVERGENCE_SLACK * (hi - lo)
    bounds = {k: (lo - slack, hi + slack) for k in ("q_data", "td_target")}
    return _Run(trackables, train_step, before_save, bounds)


def _baseline_run(settings: Dict, arrays: rlds.EpisodeArrays, strategy, batch_size: int,
                  seed: int, learning_rate: float, bn_recalibration_batches: int) -> _Run:
    """A baseline's training ('temporal', 'vae', 'gcbc'): its own loss on pairs of one episode."""

    def dataset_fn(input_context):
        return pipelines.pairs_dataset(
            arrays, batch_size=input_context.get_per_replica_batch_size(batch_size),
            seed=distribute.shard_seed(seed, input_context))

    with strategy.scope():
        model = checkpoints.build_baseline(settings)
        checkpoints.build_baseline_variables(model, settings["method"])
        optimizer = tf.keras.optimizers.Adam(learning_rate)
    it = iter(strategy.distribute_datasets_from_function(dataset_fn))

    def replica_step(batch):
        with tf.GradientTape() as tape:
            losses = model.losses_for(batch, training=True)
            # Optimizers sum the replicas' gradients: each replica's mean counts 1/replicas.
            scaled = losses["loss"] / strategy.num_replicas_in_sync
        variables = model.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(scaled, variables), variables))
        return losses

    train_step = tf.function(_distributed(strategy, replica_step, it))
    before_save = None
    if bn_recalibration_batches > 0:
        recal_it = iter(pipelines.pairs_dataset(arrays, batch_size=batch_size, seed=seed + 1))

        def before_save():
            n = batch_norm.recalibrate(
                [model], lambda b: model.losses_for(b, training=True),
                itertools.islice(recal_it, bn_recalibration_batches))
            logging.info("Batch-norm statistics recomputed from %d batches", n)
    return _Run({"model": model, "optimizer": optimizer}, train_step, before_save, {})


@gin.configurable(denylist=["root_dir", "arrays"])
def train_distance(root_dir: str, method: str = "cql_td3",
                   dataset: str = "mbold_tabletop/push1_cpu", data_dir: Optional[str] = None,
                   total_steps: int = 93750, batch_size: int = 64,
                   reward_scheme: str = "indicator", negatives_key: str = "state",
                   gamma: float = 0.8, learning_rate: float = 3e-4, cql_tau: float = 3.0,
                   seed: int = 0, max_episodes: Optional[int] = None,
                   checkpoint_every: int = 5000, summary_every: int = 100,
                   log_every: int = 500, arrays: Optional[rlds.EpisodeArrays] = None,
                   bn_recalibration_batches: int = 50, predicted_states_dir: Optional[str] = None,
                   predicted_state_fraction: float = 0.5) -> Dict:
    """Trains a distance function (or GCBC) into ``root_dir``; resumes if it has a checkpoint.

    Args:
      root_dir: run directory (checkpoints, summaries, config.json).
      method: one of METHODS.
      dataset / data_dir / max_episodes: the RLDS dataset (train split) to read, unless
        ``arrays`` (EpisodeArrays) is given.
      total_steps: gradient steps (the paper: 93,750 for the distance, batch 64).
      reward_scheme: 'indicator' or 'ten_one' (agent methods).
      negatives_key: 'state' (paper), 'goal' (authors' code) or 'none' (no hard negatives).
      gamma, learning_rate, cql_tau: Table 2 (γ 0.8, Adam 3e-4, τ 3 for reach/push, 10 door).
      seed: data and initialisation seed.
      checkpoint_every / summary_every / log_every: periods in steps.
      bn_recalibration_batches: before every checkpoint, the batch-norm moving statistics are
        recomputed from this many training batches (:mod:`mbold_tf.utils.batch_norm`), so the
        saved networks infer the way they trained; 0 keeps Keras' moving averages.
      predicted_states_dir: a trained video predictor's run directory (agent methods; not in
        the paper): a ``predicted_state_fraction`` of each batch's states and next states are
        that predictor's frames of the same steps (:mod:`mbold_tf.training.predicted_frames`),
        so the critic learns to read the frames the planner will score; goals stay real.
    Returns:
      dict: method, steps, seconds, steps_per_s, the last scalars.
    Raises:
      ValueError listing the choices for an unknown method, reward scheme or negatives key;
      NonFiniteLossError naming the step and the last good checkpoint for a NaN loss.
    """
    training.check_positive(**{"train_distance.total_steps": total_steps,
                               "train_distance.batch_size": batch_size,
                               "train_distance.checkpoint_every": checkpoint_every,
                               "train_distance.summary_every": summary_every,
                               "train_distance.log_every": log_every})
    _check_choice("method", method, METHODS)
    _check_choice("reward scheme", reward_scheme, distances.REWARD_SCHEMES)
    _check_choice("negatives_key", negatives_key, pipelines.NEGATIVE_KEYS)
    strategy = distribute.strategy_from_environment()
    write_dir = distribute.worker_dir(root_dir)
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise training.SettingError(
            f"train_distance.batch_size = {batch_size} is the global batch and must split evenly "
            f"over the {replicas} replicas; set it to a multiple of {replicas}.")
    tf.random.set_seed(seed)
    if arrays is None:
        arrays = rlds.load_episodes(dataset, "train", data_dir=data_dir, max_episodes=max_episodes)
    # The action size comes from the data (4 for the tabletop tasks), before it is recorded.
    settings = _run_settings(method, arrays.actions.shape[-1], reward_scheme, gamma,
                             negatives_key, learning_rate, cql_tau, predicted_states_dir,
                             predicted_state_fraction)
    run_config.check_or_write_config(write_dir, KIND, settings)
    rlds.write_data_stats(write_dir, arrays, dataset)  # (after the check: never in another run)

    step = tf.Variable(0, dtype=tf.int64, name="global_step")
    if method in AGENT_METHODS:
        run = _agent_run(settings, arrays, strategy, batch_size, seed, bn_recalibration_batches,
                         step, predicted_states_dir)
    else:
        run = _baseline_run(settings, arrays, strategy, batch_size, seed, learning_rate,
                            bn_recalibration_batches)
    loop = training.TrainingLoop(root_dir, run.trackables, step, total_steps,
                                 checkpoint_every=checkpoint_every, summary_every=summary_every,
                                 log_every=log_every, before_save=run.before_save,
                                 bounds=run.bounds)
    result = {"method": method, **loop.timed_run(run.train_step)}
    logging.info("Trained %s: %s", method, result)
    return result


def _agent_recalibration(actor, critic1, critic2, batches, num_batches: int,
                         step: tf.Variable):
    """``before_save()`` for the agent: recompute batch-norm statistics, log the Q gap.

    The gap is mean |Q_train − Q_inference| (min of the twin critics at the data actions) on one
    batch, before and after; it shows how far Keras' moving averages had drifted.
    """
    def min_q(batch, training):
        obs = {"image": batch["observation"], "goal_image": batch["goal"]}
        q1, _ = critic1((obs, batch["action"]), training=training)
        q2, _ = critic2((obs, batch["action"]), training=training)
        return tf.minimum(q1, q2)

    def forward(batch):
        min_q(batch, True)
        actor({"image": batch["observation"], "goal_image": batch["goal"]}, training=True)

    return batch_norm.recalibration_hook([actor, critic1, critic2], forward, min_q, batches,
                                         num_batches, step, "q_gap")

