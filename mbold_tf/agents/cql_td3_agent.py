"""TD3 with a conservative Q-learning (CQL-Lagrange) critic term: the distance agent (§4, App. A.1).

``CqlTd3Agent`` subclasses TF-Agents' ``Td3Agent`` (twin critics with the minimum for backups,
clipped target-policy noise, Polyak-averaged targets, delayed actor updates) and adds, to each
critic's loss, the CQL gap (Kumar et al. 2020) as in the authors' code:

    gap_i = mean_B[ logsumexp_j(Q_i(s, a_j, g) − log p(a_j)) ] − mean_B[ Q_i(s, a_data, g) ]

with N (10) actions a_j ~ U(action box) of density p = Π 1/(high − low) (optionally minus
log N: ``subtract_log_n``). Optionally (``num_policy_cql_actions`` M > 0, as in CQL(H)) the set
also holds M actions around the actor's, a = π(s, g) + ε, ε ~ N(0, σ²) clipped to the box, with
their Gaussian log density subtracted: the penalty then reaches the actions the actor picks,
where an unpenalised critic extrapolates (the actor drifting to the corners of the box).
Lagrange form: the critic minimises α·Σ_i (gap_i − τ) and α = exp(log α) (log α starts at 0,
clipped) maximises it, i.e. log α goes up while the mean gap exceeds the slack τ and down
otherwise. With Q in [0, 1] and 4-D actions in [−1, 1], log N + Σ log 2 ≈ 5.1 > τ = 3: α stays
active until random-action Q sits about 2 below data Q, the margin the slack sets.

Batch-norm: data and CQL actions go through each critic together, but the MLP's batch-norm
statistics come from the data rows alone (``DistanceCriticNetwork.data_and_extra_q``), so the
normalisation the critic is evaluated with (planner, actor loss, targets) is that of data
actions. The alternatives fail: statistics over all rows let the 10 random actions per state
dominate the moving averages; random rows on the moving averages (data rows on batch
statistics) let the critic exploit the mismatch and drive random-action Q far below the data's
(docs/measurements.md).

The agent trains from ``agent.train(experience)`` with a 2-step ``Trajectory`` built by
:func:`trajectory_from_batch` from the distance pipeline's batches (the goal image is part of
both observations; ``discount`` 0 ends the episode at the goal).
"""
from __future__ import annotations

import collections
import contextlib
import math
from typing import Dict, Optional, Tuple

import gin
import numpy as np
import tensorflow as tf
from tf_agents.agents import tf_agent
from tf_agents.agents.td3 import td3_agent
from tf_agents.trajectories import time_step as ts
from tf_agents.trajectories import trajectory as trajectory_lib
from tf_agents.utils import common

CqlTd3Info = collections.namedtuple(
    "CqlTd3Info", ("actor_loss", "critic_loss", "td_loss", "cql_loss", "cql_alpha", "cql_gap",
                   "alpha_loss", "q_data", "q_random", "td_target"))


# Passed by the builder (mbold_tf.training.distance.build_agent) from the run's record; a gin
# binding of them would be ignored, so it fails at parse time and names this list instead. The
# settings among them (γ, τ, the TD-target bounds) are bound as train_distance.gamma, .cql_tau
# and .reward_scheme.
BUILDER_ARGS = ("time_step_spec", "action_spec", "actor_network", "critic_network",
                "actor_optimizer", "critic_optimizer", "critic_network_2", "cql", "cql_tau",
                "gamma", "td_target_bounds", "train_step_counter")


@gin.configurable(denylist=list(BUILDER_ARGS))
class CqlTd3Agent(td3_agent.Td3Agent):
    """TD3 + CQL-Lagrange critic regulariser (``cql=False``: plain TD3 with the same settings).

    Args (beyond ``Td3Agent``'s):
      cql: add the CQL term.
      num_cql_actions: uniform random actions per state (10).
      cql_tau: Lagrange slack τ (no default: ``train_distance.cql_tau`` owns it; 3 for
        reach/push, 10 for door).
      gamma: discount γ (no default: ``train_distance.gamma`` owns it).
      alpha_learning_rate: Adam learning rate of log α (1e-3).
      initial_log_alpha: start value of log α (0).
      log_alpha_bounds: log α is clipped into this interval.
      lagrange: if False, a fixed weight α = exp(initial_log_alpha) (no multiplier update).
      subtract_log_n: subtract log(number of CQL actions) inside the gap (a mean instead of a
        soft maximum; makes the gap ≈ 2.3 smaller at the same τ).
      num_policy_cql_actions: M actions around the actor's action added to the CQL set (0: off).
      cql_policy_noise: σ of the Gaussian around the actor's action for those M actions.
      actor_bc_weight: β of a TD3+BC actor loss (Fujimoto & Gu 2021),
        −β·Q(s, π(s, g), g) / mean|Q| + ‖π(s, g) − a_data‖² averaged over the batch; 0 (default,
        the paper) is TD3's −Q. It keeps the actor, whose action the distance reads, inside the
        data's action support, where the critic is trained (docs/design.md, "Distance function").
      td_target_bounds: (low, high) the TD targets are clipped into: the range of the true Q for
        the reward scheme (``distances.q_bounds``; [0, 1] for 'indicator'). Without it the
        critics drift below that range (docs/measurements.md).
    Defaults of the TD3 part follow Table 2: target_update_tau 0.005 (Polyak 0.995), target
    policy noise 0.1 clipped at 0.2, squared TD error.
    """

    def __init__(self, time_step_spec, action_spec, actor_network, critic_network,
                 actor_optimizer, critic_optimizer, critic_network_2=None, *,
                 cql_tau: float, gamma: float, cql: bool = True, num_cql_actions: int = 10,
                 alpha_learning_rate: float = 1e-3, initial_log_alpha: float = 0.0,
                 log_alpha_bounds=(-10.0, 10.0), lagrange: bool = True,
                 subtract_log_n: bool = False, num_policy_cql_actions: int = 0,
                 cql_policy_noise: float = 0.3, actor_bc_weight: float = 0.0,
                 td_target_bounds: Optional[Tuple[float, float]] = None,
                 target_update_tau: float = 0.005,
                 target_update_period: int = 2, actor_update_period: int = 2,
                 target_policy_noise: float = 0.1, target_policy_noise_clip: float = 0.2,
                 td_errors_loss_fn=common.element_wise_squared_loss,
                 train_step_counter: Optional[tf.Variable] = None, name: str = "CqlTd3Agent",
                 **kwargs):
        super().__init__(time_step_spec, action_spec, actor_network, critic_network,
                         actor_optimizer, critic_optimizer, critic_network_2=critic_network_2,
                         gamma=gamma, target_update_tau=target_update_tau,
                         target_update_period=target_update_period,
                         actor_update_period=actor_update_period,
                         target_policy_noise=target_policy_noise,
                         target_policy_noise_clip=target_policy_noise_clip,
                         td_errors_loss_fn=td_errors_loss_fn,
                         train_step_counter=train_step_counter, name=name, **kwargs)
        self._cql = bool(cql)
        self._num_cql_actions = int(num_cql_actions)
        self._cql_tau = tf.Variable(float(cql_tau), dtype=tf.float32, trainable=False,
                                    name="cql_tau")  # a variable: can be changed without retracing
        self._lagrange = bool(lagrange)
        self._subtract_log_n = bool(subtract_log_n)
        self._num_policy_cql_actions = int(num_policy_cql_actions)
        self._cql_policy_noise = float(cql_policy_noise)
        self._actor_bc_weight = float(actor_bc_weight)
        if self._actor_bc_weight < 0.0:
            raise ValueError(f"actor_bc_weight must be >= 0, got {actor_bc_weight}.")
        if self._cql_policy_noise <= 0.0:
            raise ValueError(f"cql_policy_noise must be > 0, got {cql_policy_noise}.")
        self._td_target_bounds = (None if td_target_bounds is None else
                                  (float(td_target_bounds[0]), float(td_target_bounds[1])))
        self._log_alpha_bounds = (float(log_alpha_bounds[0]), float(log_alpha_bounds[1]))
        # Aggregations let the variables be assigned inside ``strategy.run`` (multi-worker and
        # multi-GPU training): log α is identical on every replica (its gradient is all-reduced).
        self._log_alpha = tf.Variable(float(initial_log_alpha), dtype=tf.float32,
                                      name="cql_log_alpha",
                                      aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        self._alpha_optimizer = tf.keras.optimizers.Adam(alpha_learning_rate)
        self._actor_update_now: Optional[bool] = None
        self._last_actor_loss = tf.Variable(0.0, dtype=tf.float32, name="last_actor_loss",
                                            trainable=False,
                                            aggregation=tf.VariableAggregation.MEAN)
        low = np.broadcast_to(action_spec.minimum, action_spec.shape).astype(np.float32)
        high = np.broadcast_to(action_spec.maximum, action_spec.shape).astype(np.float32)
        self._action_low, self._action_high = tf.constant(low), tf.constant(high)
        # log of the uniform density over the action box: −Σ log(high − low)
        self._log_density = float(-np.sum(np.log(high - low)))

    # -- public helpers --------------------------------------------------------------------------
    @property
    def cql_alpha(self) -> tf.Tensor:
        return tf.exp(self._clipped_log_alpha())

    @property
    def cql_tau(self) -> tf.Variable:
        return self._cql_tau

    @property
    def log_alpha(self) -> tf.Variable:
        return self._log_alpha

    @property
    def critic_network_1(self):
        return self._critic_network_1

    @property
    def critic_network_2(self):
        return self._critic_network_2

    @property
    def actor_network(self):
        return self._actor_network

    def _clipped_log_alpha(self):
        return tf.clip_by_value(self._log_alpha, *self._log_alpha_bounds)

    # -- losses ----------------------------------------------------------------------------------
    def critic_losses(self, time_steps, actions, next_time_steps, training: bool = False
                      ) -> Dict[str, tf.Tensor]:
        """TD loss of both critics and the CQL gaps, from one encoder pass per critic.

        Data actions [B, A] and CQL actions [B, N (+ M), A] share one pass; batch-norm
        statistics come from the data rows (see the module docstring).
        """
        obs, next_obs = time_steps.observation, next_time_steps.observation
        target_actions, _ = self._target_actor_network(next_obs, next_time_steps.step_type,
                                                       training=False)
        noise = tf.random.normal(tf.shape(target_actions), stddev=self._target_policy_noise)
        noise = tf.clip_by_value(noise, -self._target_policy_noise_clip,
                                 self._target_policy_noise_clip)
        target_actions = tf.clip_by_value(target_actions + noise, self._action_low,
                                          self._action_high)
        tq1, _ = self._target_critic_network_1((next_obs, target_actions),
                                               next_time_steps.step_type, training=False)
        tq2, _ = self._target_critic_network_2((next_obs, target_actions),
                                               next_time_steps.step_type, training=False)
        td_target = (self._reward_scale_factor * next_time_steps.reward
                     + self._gamma * next_time_steps.discount * tf.minimum(tq1, tq2))
        if self._td_target_bounds is not None:
            td_target = tf.clip_by_value(td_target, *self._td_target_bounds)
        td_target = tf.stop_gradient(td_target)

        out = {"td_loss": 0.0, "gaps": [], "q_data": 0.0, "q_random": 0.0,
               "td_target": tf.reduce_mean(td_target)}
        if not self._cql:
            for critic in (self._critic_network_1, self._critic_network_2):
                q_data, _ = critic((obs, actions), time_steps.step_type, training=training)
                out["td_loss"] += tf.reduce_mean(self._td_errors_loss_fn(td_target, q_data))
                out["q_data"] += 0.5 * tf.reduce_mean(q_data)
            return out

        extra, neg_log_density = self._cql_actions(obs, actions)
        n_total = self._num_cql_actions + self._num_policy_cql_actions
        n_rand = self._num_cql_actions
        for critic in (self._critic_network_1, self._critic_network_2):
            q_data, q_extra = critic.data_and_extra_q(obs, actions, extra, training=training)
            out["td_loss"] += tf.reduce_mean(self._td_errors_loss_fn(td_target, q_data))
            out["q_data"] += 0.5 * tf.reduce_mean(q_data)
            lse = tf.reduce_logsumexp(q_extra + neg_log_density, axis=1)
            if self._subtract_log_n:
                lse -= math.log(n_total)
            out["gaps"].append(tf.reduce_mean(lse) - tf.reduce_mean(q_data))
            out["q_random"] += 0.5 * tf.reduce_mean(q_extra[:, :n_rand])
        return out

    def actor_loss_bc(self, time_steps, data_actions, training: bool = False) -> tf.Tensor:
        """Scalar actor loss: TD3's −mean Q(s, π(s)), or TD3+BC's when ``actor_bc_weight`` > 0."""
        if self._actor_bc_weight <= 0.0:
            return self.actor_loss(time_steps, training=training)
        actions, _ = self._actor_network(time_steps.observation, time_steps.step_type,
                                         training=training)
        q, _ = self._critic_network_1((time_steps.observation, actions), time_steps.step_type,
                                      training=False)
        scale = self._actor_bc_weight / (tf.stop_gradient(tf.reduce_mean(tf.abs(q))) + 1e-6)
        bc = tf.reduce_mean(tf.reduce_sum(tf.square(actions - data_actions), axis=-1))
        return -scale * tf.reduce_mean(q) + bc

    def _cql_actions(self, obs, actions) -> Tuple[tf.Tensor, tf.Tensor]:
        """CQL's action set [B, N + M, A] and −log density of each action [B, N + M] (float32).

        N uniform over the box (density Π 1/(high − low)); M around the actor's action (Gaussian
        σ = ``cql_policy_noise``, clipped to the box; the clipping is ignored in the density).
        """
        batch = tf.shape(actions)[0]
        dim = tf.shape(actions)[-1]
        u = tf.random.uniform(tf.stack([batch, self._num_cql_actions, dim]), dtype=tf.float32)
        rand = self._action_low + u * (self._action_high - self._action_low)
        neg_logp = tf.fill(tf.stack([batch, self._num_cql_actions]), -self._log_density)
        m = self._num_policy_cql_actions
        if not m:
            return rand, neg_logp
        mu, _ = self._actor_network(obs, training=False)
        mu = tf.stop_gradient(mu)
        eps = tf.random.normal(tf.stack([batch, m, dim]), stddev=self._cql_policy_noise)
        pol = tf.clip_by_value(mu[:, None] + eps, self._action_low, self._action_high)
        sigma = self._cql_policy_noise
        d = float(np.prod(self._action_low.shape))
        gauss_logp = (-0.5 * tf.reduce_sum(tf.square(eps), -1) / sigma ** 2
                      - d * (math.log(sigma) + 0.5 * math.log(2.0 * math.pi)))
        return (tf.concat([rand, pol], axis=1),
                tf.concat([neg_logp, -gauss_logp], axis=1))

    @property
    def actor_update_period(self) -> int:
        return int(self._actor_update_period)

    @contextlib.contextmanager
    def actor_update_decided_in_python(self, update: bool):
        """Traces ``train`` with the actor update on (``update``) or off, without ``tf.cond``.

        Under a strategy with several replicas the optimizer's gradient all-reduce cannot sit
        inside a ``tf.cond`` branch, so the trainer compiles two steps (with and without the
        actor update) and picks one in Python every step: ``train_step_counter %
        actor_update_period == 0``, as the single-process ``tf.cond`` does.
        """
        previous, self._actor_update_now = self._actor_update_now, bool(update)
        try:
            yield
        finally:
            self._actor_update_now = previous

    def _apply_gradients(self, gradients, variables, optimizer):
        # Under a strategy with several replicas the optimizer sums the replicas' gradients; each
        # replica's loss is its own batch's mean, so its gradient counts 1/replicas: the update
        # equals one process's on the global batch.
        return super()._apply_gradients(_per_replica_share(gradients), variables, optimizer)

    def _train(self, experience, weights=None):
        if weights is not None:  # uniform sampling: importance weights would be ignored
            raise ValueError("CqlTd3Agent.train does not use importance weights; call it "
                             "without weights (the distance pipeline samples uniformly).")
        transition = self._as_transition(experience)
        time_steps, policy_steps, next_time_steps = transition
        actions = tf.cast(policy_steps.action, tf.float32)
        # Unique variables in a fixed order (a set's order differs between processes, and the
        # optimizer creates its slots in this order: multi-worker replicas must agree on it).
        critic_vars = _unique(self._critic_network_1.trainable_variables
                              + self._critic_network_2.trainable_variables)
        alpha = tf.stop_gradient(tf.exp(self._clipped_log_alpha()))
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(critic_vars)
            parts = self.critic_losses(time_steps, actions, next_time_steps, training=True)
            td_loss = parts["td_loss"]
            if self._cql:
                gaps = parts["gaps"]
                cql_gap = 0.5 * (gaps[0] + gaps[1])
                if self._lagrange:
                    cql_loss = alpha * ((gaps[0] - self._cql_tau) + (gaps[1] - self._cql_tau))
                else:
                    cql_loss = alpha * (gaps[0] + gaps[1])
            else:
                cql_gap = tf.constant(0.0)
                cql_loss = tf.constant(0.0)
            critic_loss = td_loss + cql_loss
            # As TF-Agents' TD3: a NaN or infinite loss fails inside the graph, before its
            # gradients touch the weights.
            critic_loss = tf.debugging.check_numerics(critic_loss, "CQL-TD3 critic loss")
        grads = tape.gradient(critic_loss, critic_vars)
        self._apply_gradients(grads, critic_vars, self._critic_optimizer)

        alpha_loss = tf.constant(0.0)
        if self._cql and self._lagrange:
            with tf.GradientTape() as atape:
                alpha_var = tf.exp(self._log_alpha)
                alpha_loss = -alpha_var * tf.stop_gradient(cql_gap - self._cql_tau)
            agrad = _per_replica_share(atape.gradient(alpha_loss, [self._log_alpha]))
            self._alpha_optimizer.apply_gradients(zip(agrad, [self._log_alpha]))
            self._log_alpha.assign(self._clipped_log_alpha())

        actor_vars = self._actor_network.trainable_variables

        def optimize_actor():
            with tf.GradientTape(watch_accessed_variables=False) as atape:
                atape.watch(actor_vars)
                loss = self.actor_loss_bc(time_steps, actions, training=True)
                loss = tf.debugging.check_numerics(loss, "CQL-TD3 actor loss")
            self._apply_gradients(atape.gradient(loss, actor_vars), actor_vars,
                                  self._actor_optimizer)
            self._last_actor_loss.assign(loss)
            return tf.constant(0)

        if self._actor_update_now is None:
            tf.cond(tf.equal(tf.math.mod(self.train_step_counter, self._actor_update_period),
                             0), optimize_actor, lambda: tf.constant(0))
        elif self._actor_update_now:  # decided in Python (see actor_update_decided_in_python)
            optimize_actor()
        self.train_step_counter.assign_add(1)
        self._update_target()
        actor_loss = tf.identity(self._last_actor_loss)
        info = CqlTd3Info(actor_loss=actor_loss, critic_loss=critic_loss, td_loss=td_loss,
                          cql_loss=cql_loss, cql_alpha=tf.exp(self._clipped_log_alpha()),
                          cql_gap=cql_gap, alpha_loss=alpha_loss, q_data=parts["q_data"],
                          q_random=tf.convert_to_tensor(parts["q_random"]),
                          td_target=parts["td_target"])
        return tf_agent.LossInfo(actor_loss + critic_loss, info)


def _unique(variables):
    """``variables`` without repeats (by identity), in their first order."""
    seen, out = set(), []
    for v in variables:
        if id(v) not in seen:
            seen.add(id(v))
            out.append(v)
    return out


def _per_replica_share(gradients):
    """Gradients divided by the strategy's replica count (unchanged with one replica)."""
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    if replicas == 1:
        return gradients
    return [None if g is None else g / replicas for g in gradients]


def trajectory_from_batch(batch: Dict[str, tf.Tensor]) -> trajectory_lib.Trajectory:
    """A 2-step ``Trajectory`` [B, 2] from a :func:`pipelines.distance_dataset` batch.

    Observation at t: ``{'image': observation, 'goal_image': goal}``, at t+1
    ``{'image': next_observation, 'goal_image': goal}``; reward/discount at index 0 belong to
    the transition (TF-Agents' convention), discount 0 where the goal is reached.
    """
    obs = tf.stack([batch["observation"], batch["next_observation"]], axis=1)
    goal = tf.stack([batch["goal"], batch["goal"]], axis=1)
    b = tf.shape(batch["reward"])[0]
    action = tf.stack([batch["action"], tf.zeros_like(batch["action"])], axis=1)
    reward = tf.stack([batch["reward"], tf.zeros_like(batch["reward"])], axis=1)
    discount = tf.stack([batch["discount"], tf.ones_like(batch["discount"])], axis=1)
    terminal = tf.cast(batch["discount"] == 0.0, tf.int32)
    mid, last = int(ts.StepType.MID), int(ts.StepType.LAST)
    end = mid + (last - mid) * terminal  # LAST where the goal is reached
    step_type = tf.stack([tf.fill([b], mid), end], axis=1)
    next_step_type = tf.stack([end, tf.fill([b], mid)], axis=1)
    return trajectory_lib.Trajectory(
        step_type=tf.cast(step_type, tf.int32),
        observation={"image": obs, "goal_image": goal}, action=action, policy_info=(),
        next_step_type=tf.cast(next_step_type, tf.int32), reward=reward, discount=discount)
