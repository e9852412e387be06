"""Build any of the compared goal-reaching policies by name, from trained models.

Methods (the paper's comparisons, §5 and App. B/C):

| name | policy |
|---|---|
| ``mbold`` | CEM-MPC over the video predictor, cost = learned distance (−Q) |
| ``vf`` | Visual Foresight: CEM-MPC over the predictor, cost = pixel ℓ2 |
| ``vae`` / ``temporal`` | CEM-MPC over the predictor, cost = VAE latent ℓ2 / temporal distance |
| ``q_only`` | random shooting over 100 actions with the learned Q (App. C.3) |
| ``gcbc`` | goal-conditioned behaviour cloning (App. B.3) |
| ``sorb`` | SoRB (App. B.4): shortest path over a graph of dataset states, GCBC to each waypoint |
| ``rig`` | RIG (App. B.1): SAC in a β-VAE's latent space (the only method that collected online) |
| ``dreamer`` | offline goal-conditioned Dreamer (App. B.2), reward −pixel MSE to the goal |
| ``dreamer_arm_l2`` | the same, reward −ℓ2 end-effector distance (PRIVILEGED in training) |
| ``random`` | uniform random actions |
| ``privileged`` | CEM-MPC, cost = the task's true distance (PRIVILEGED: simulator model only) |
| ``ideal_eq3`` | CEM-MPC, cost = Eq. 3 with the ideal critic (PRIVILEGED: simulator, reach only) |

The CEM planners (``PLANNERS``) plan with ``model='predictor'`` (the trained video predictor,
what a robot runs) or ``model='simulator'`` (PRIVILEGED, evaluation only: the true simulator
rolls every candidate out, :class:`mbold_tf.envs.simulator.SimulatorRollouts` in
``models['simulator']``), the control-centric upper bound of each cost.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import gin
import tensorflow as tf

from mbold_tf.agents import checkpoints
from mbold_tf.planning import cem
from mbold_tf.planning import costs
from mbold_tf.planning import dreamer_policy
from mbold_tf.planning import mpc_policy
from mbold_tf.planning import policies
from mbold_tf.planning import rig_policy
from mbold_tf.planning import sorb_policy

METHODS = ("mbold", "vf", "vae", "temporal", "q_only", "gcbc", "sorb", "rig", "dreamer",
           "dreamer_arm_l2", "random", "privileged", "ideal_eq3")
PLANNER_COST = {"mbold": "learned_distance", "vf": "pixel_l2", "vae": "vae",
                "temporal": "temporal", "privileged": "privileged", "ideal_eq3": "ideal_eq3"}
PLANNERS = tuple(PLANNER_COST)  # the methods that plan with a model
PLANNING_MODELS = ("predictor", "simulator")
# The models each method needs besides its planning model, by key in the ``models`` dict.
_SCORERS = {"mbold": ("distance",), "vf": (), "vae": ("vae",), "temporal": ("temporal",),
            "q_only": ("distance",), "gcbc": ("gcbc",), "sorb": ("sorb", "gcbc"),
            "rig": ("rig",), "dreamer": ("dreamer",), "dreamer_arm_l2": ("dreamer_arm_l2",),
            "random": (), "privileged": (), "ideal_eq3": ()}
# The planners whose cost reads the true simulated state: they plan with the simulator only.
SIMULATOR_ONLY = tuple(m for m, c in PLANNER_COST.items() if c in costs.SIMULATOR_ONLY_COSTS)
# The Dreamer run's reward each Dreamer method expects (mbold_tf.models.dreamer.REWARDS).
DREAMER_REWARD = checkpoints.DREAMER_REWARD


# Model-free methods whose policies act on a batch of episodes of their own seeds (lockstep
# evaluation); SoRB, RIG and Dreamer keep per-episode state of their own and run one at a time.
LOCKSTEP_MODEL_FREE = ("q_only", "random", "gcbc")


def lockstep_supported(method: str, model: str) -> bool:
    """Whether ``make_policy(..., episode_seeds=True)`` builds ``method`` with ``model``: the
    planners with the predictor (the simulator rolls one episode out at a time) and
    ``LOCKSTEP_MODEL_FREE``."""
    if method in PLANNERS:
        return model == "predictor"
    return method in LOCKSTEP_MODEL_FREE


def requires(method: str, model: str = "predictor") -> tuple:
    """The ``models`` keys that ``method`` needs when planning with ``model`` (tuple of str).

    Raises ValueError for an unknown method or model, for a model-free method asked to plan
    with the simulator, and for the privileged cost with the predictor.
    """
    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}; choose one of {METHODS}.")
    if model not in PLANNING_MODELS:
        raise ValueError(f"Unknown planning model {model!r}; choose one of {PLANNING_MODELS}.")
    if method not in PLANNERS:
        if model != "predictor":
            raise ValueError(f"Method {method!r} does not plan with a model, so it cannot use "
                             f"the {model!r} model; the planners are {PLANNERS}.")
        return _SCORERS[method]
    if method in SIMULATOR_ONLY and model != "simulator":
        raise ValueError(f"Method {method!r} scores the true simulator state; it needs the "
                         "simulator model (model='simulator').")
    return (model,) + _SCORERS[method]


@gin.configurable(denylist=["method", "time_step_spec", "action_spec", "init_std", "models",
                             "seed", "model", "episode_seeds"])
def make_policy(method: str, time_step_spec, action_spec, init_std,
                models: Dict[str, Any], seed: int = 0, model: str = "predictor",
                episode_seeds: bool = False,
                config: Optional[cem.CEMConfig] = None, replan_every: int = 6,
                episode_length: Optional[int] = 30, closed_loop_final_steps: int = 0,
                final_actor_steps: int = 0, q_only_actions: int = 100,
                ideal_step: Optional[float] = None):
    """Returns the TFPolicy for ``method``.

    Args:
      method: one of ``METHODS``.
      time_step_spec, action_spec: TF specs of the goal-conditioned environment.
      init_std: the task's data-collection std [A] (CEM's initial std).
      models: trained models by role: 'predictor' (VideoPredictor), 'distance'
        (LearnedDistance), 'vae', 'temporal' (baseline distances), 'gcbc' (GCBC model),
        'sorb' (SorbModel with its graph), 'rig' (RigModel), 'dreamer' / 'dreamer_arm_l2'
        (DreamerModel), 'simulator' (SimulatorRollouts, PRIVILEGED).
      seed: planner / shooting seed.
      model: what the CEM planners predict with: 'predictor' or 'simulator' (PRIVILEGED).
        Not a gin setting: the evaluation grid (``launch.evaluate --models``) owns it.
      episode_seeds: the lockstep policy (the evaluation owns it): batch elements are episodes
        advancing together, each seeded by the policy state's ``'seed'`` (int64 [B]) and
        scored in one batch (only where :func:`lockstep_supported`; ValueError otherwise).
      config: CEMConfig (defaults to the gin-configured one).
      replan_every: planned actions executed per replan (paper: 6).
      episode_length: predictions are cut at the episode's end before scoring.
      closed_loop_final_steps: CEM planners replan at every one of the episode's last this many
        steps (0: every ``replan_every`` steps throughout).
      final_actor_steps: CEM planners scored by the learned distance take its actor's action
        (``distance.action``) at each of the episode's last this many steps, and their plans
        end before them: Eq. 3 values a plan's last frame by the actor's action there. A setting
        of the learned-distance planners, as ``q_only_actions`` is of ``q_only``: the other
        methods have no such actor and act as without it, so one evaluation grid can hold both.
      q_only_actions: candidates per step of the Q-only policy (App. C.3: 100).
      ideal_step: for ``ideal_eq3``, the farthest one action moves the hand (m); unset: the
        task's own, its ``action_scale`` (each axis moves at most that much per step).
    """
    missing = [k for k in requires(method, model) if models.get(k) is None]
    if missing:
        raise ValueError(f"Method {method!r} needs trained model(s) {missing}; pass their run "
                         f"directories (e.g. --{missing[0]}_dir).")
    if episode_seeds and not lockstep_supported(method, model):
        raise ValueError(f"Method {method!r} with model {model!r} plans one episode at a time; "
                         f"lockstep policies: the planners with the predictor and "
                         f"{LOCKSTEP_MODEL_FREE}.")
    if method not in PLANNERS:
        return _model_free_policy(method, time_step_spec, action_spec, models, seed,
                                  q_only_actions, episode_seeds)
    return _planner(method, time_step_spec, action_spec, init_std, models, seed, model,
                    config or cem.CEMConfig(), replan_every, episode_length,
                    closed_loop_final_steps, final_actor_steps, ideal_step, episode_seeds)


def _model_free_policy(method: str, time_step_spec, action_spec, models: Dict[str, Any],
                       seed: int, q_only_actions: int, episode_seeds: bool = False):
    """The policy of a method that plans with no model (``method`` not in ``PLANNERS``)."""
    if method == "random":
        # Uniform over the action box, seeded by (seed, step): one random candidate, no scoring.
        return policies.QShootingPolicy(
            time_step_spec, action_spec, lambda image, goal, action: tf.zeros(tf.shape(action)[:1]),
            num_actions=1, seed=seed, episode_seeds=episode_seeds, name="random")
    if method == "q_only":
        distance = models["distance"]
        return policies.QShootingPolicy(time_step_spec, action_spec, distance.q_values,
                                        num_actions=q_only_actions, seed=seed,
                                        models=[distance], episode_seeds=episode_seeds)
    if method == "gcbc":
        gcbc = models["gcbc"]
        return policies.GCBCPolicy(time_step_spec, action_spec, gcbc.action, models=[gcbc])
    if method == "sorb":
        return sorb_policy.make_sorb_policy(time_step_spec, action_spec, models["sorb"],
                                            models["gcbc"], name="sorb")
    if method == "rig":
        return rig_policy.RigPolicy(time_step_spec, action_spec, models["rig"], name="rig")
    if method in DREAMER_REWARD:
        model = models[method]
        if model.reward_name != DREAMER_REWARD[method]:
            raise ValueError(f"Method {method!r} needs a Dreamer run trained with reward "
                             f"{DREAMER_REWARD[method]!r}, but {model.root_dir!r} was trained "
                             f"with {model.reward_name!r}; pass it as --"
                             f"{checkpoints.dreamer_role(model.reward_name)}_dir.")
        return dreamer_policy.DreamerPolicy(time_step_spec, action_spec, model, name=method)
    raise ValueError(f"Unknown method {method!r}; choose one of {METHODS}.")


def _planner(method: str, time_step_spec, action_spec, init_std, models: Dict[str, Any],
             seed: int, model: str, config: cem.CEMConfig, replan_every: int,
             episode_length: Optional[int], closed_loop_final_steps: int,
             final_actor_steps: int, ideal_step: Optional[float],
             episode_seeds: bool = False) -> mpc_policy.MPCPolicy:
    """CEM-MPC over ``model`` scored by ``method``'s cost (a method of ``PLANNERS``); the
    arguments are :func:`make_policy`'s."""
    cost_name = PLANNER_COST[method]
    scorer = {"learned_distance": models.get("distance"), "pixel_l2": None,
              "vae": models.get("vae"), "temporal": models.get("temporal"),
              "privileged": None, "ideal_eq3": None}[cost_name]
    if cost_name == "ideal_eq3":
        task = models["simulator"].task_spec
        if task.success_key != "ee":
            raise ValueError(f"Method 'ideal_eq3' counts the steps the hand needs, so it is "
                             f"defined for reach only; this is {task.name!r}.")
        if ideal_step is None:
            ideal_step = models["simulator"].action_scale
    elif ideal_step is not None:
        raise ValueError(f"make_policy.ideal_step is a setting of method 'ideal_eq3' only; "
                         f"{method!r} would ignore it. Remove the binding.")
    final_action_fn, final_steps = None, 0
    if final_actor_steps and cost_name == "learned_distance":
        final_action_fn = lambda obs: scorer.action(obs["image"], obs["goal_image"])  # noqa: E731
        final_steps = final_actor_steps
    if model == "simulator":
        model_fn = costs.simulator_model_fn(
            models["simulator"], privileged=cost_name in costs.SIMULATOR_ONLY_COSTS)
        tracked = [m for m in (scorer,) if isinstance(m, tf.Module)]
    else:
        predictor = models["predictor"]
        horizon = getattr(predictor, "horizon", config.horizon)
        if config.horizon > horizon:
            raise ValueError(f"The predictor was trained for horizon {horizon} but CEM plans "
                             f"horizon {config.horizon}; set CEMConfig.horizon <= {horizon} "
                             f"(a predictor predicts no further than it was trained to).")
        model_fn = costs.predictor_model_fn(predictor)
        tracked = [m for m in (predictor, scorer) if isinstance(m, tf.Module)]
    return mpc_policy.MPCPolicy(
        time_step_spec, action_spec, model_fn,
        costs.make_cost(cost_name, scorer, ideal_step=ideal_step), init_std=init_std,
        config=config,
        replan_every=replan_every, seed=seed, episode_length=episode_length,
        closed_loop_final_steps=closed_loop_final_steps, final_action_fn=final_action_fn,
        final_action_steps=final_steps, models=tracked, episode_seeds=episode_seeds,
        name=method)
