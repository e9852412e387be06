"""Every method's loader: trained models from their run directories, without the training code.

A run directory holds ``config.json`` (its kind and model settings,
:mod:`mbold_tf.utils.run_config`) and ``ckpt/``; each loader rebuilds the model from the stored
settings, restores the newest checkpoint and checks that its weights are finite.

| role | run (launcher) | loader |
|---|---|---|
| ``predictor`` | ``launch.train_predictor`` | :func:`mbold_tf.models.video_predictor.load_predictor` |
| ``distance`` / ``vae`` / ``temporal`` | ``launch.train_distance`` | :func:`load_distance` |
| ``gcbc`` | ``launch.train_distance``, method 'gcbc' | :func:`load_gcbc` |
| ``sorb`` | ``launch.train_sorb`` | :func:`load_sorb` |
| ``rig`` | ``launch.train_rig`` | :func:`load_rig` |
| ``dreamer`` / ``dreamer_arm_l2`` | ``launch.train_dreamer`` | :func:`load_dreamer` |

:data:`MODEL_DIRS` names these roles once (the launchers define their ``--<role>_dir`` flags from
it) and :func:`load_models` loads any of them by role. Planning, evaluation and export load models
here only, so none of them imports :mod:`mbold_tf.training`.
"""
from __future__ import annotations

import os
from typing import Any, Dict, Mapping, Optional

import gin
import tensorflow as tf

from mbold_tf.agents import distances
from mbold_tf.models import baselines
from mbold_tf.models import distance_networks as dn
from mbold_tf.models import dreamer as dreamer_model
from mbold_tf.models import rig as rig_model
from mbold_tf.models import sorb as sorb_model
from mbold_tf.models import video_predictor
from mbold_tf.utils import precision as precision_lib
from mbold_tf.utils import run_config
from mbold_tf.utils import training

KIND = "distance"
AGENT_METHODS = ("cql_td3", "td3")
# Run directories by model role, with the help of their ``--<role>_dir`` flag.
MODEL_DIRS = {
    "predictor": "Video predictor run (launch.train_predictor).",
    "distance": "Distance agent run (launch.train_distance); several runs of one configuration "
                "joined by commas plan with their mean Q.",
    "vae": "VAE baseline run (launch.train_distance, method 'vae').",
    "temporal": "Temporal-distance baseline run (launch.train_distance, method 'temporal').",
    "gcbc": "GCBC baseline run (also SoRB's waypoint policy).",
    "sorb": "SoRB run (launch.train_sorb; with --gcbc_dir).",
    "rig": "RIG run (launch.train_rig).",
    "dreamer": "Dreamer run with reward 'pixel_mse' (launch.train_dreamer).",
    "dreamer_arm_l2": "Dreamer run with reward 'arm_l2' (the privileged oracle).",
}
MODEL_ROLES = tuple(MODEL_DIRS)
# Roles whose models can plan in bfloat16 (load_models.precision): the video predictor and the
# learned distance's networks cast their inputs and outputs for it; the baselines do not.
MIXED_PRECISION_ROLES = ("predictor", "distance")
# The Dreamer run's reward each Dreamer role expects (mbold_tf.models.dreamer.REWARDS).
DREAMER_REWARD = {"dreamer": "pixel_mse", "dreamer_arm_l2": "arm_l2"}


def build_baseline(settings: Dict):
    """An (unbuilt) baseline model for ``settings['method']`` in 'temporal', 'vae', 'gcbc'."""
    method, s = settings["method"], settings["networks"]
    if method == "temporal":
        return baselines.TemporalDistanceModel(s)
    if method == "vae":
        return baselines.VAE(s)
    if method == "gcbc":
        return baselines.GCBCPolicy(s, action_dim=settings["action_dim"])
    raise ValueError(f"{method!r} is not a baseline; choose one of ('temporal', 'vae', 'gcbc').")


def build_baseline_variables(model, method: str) -> None:
    """Creates ``model``'s variables with one call on a zero uint8 [1, 64, 64, 3] input."""
    x = tf.zeros([1, 64, 64, 3], tf.uint8)
    if method == "vae":
        model(x, training=False)
    else:
        model(x, x, training=False)


def _latest(root_dir: str) -> str:
    latest = tf.train.latest_checkpoint(os.path.join(root_dir, "ckpt"))
    if not latest:
        raise FileNotFoundError(f"No checkpoint in {os.path.join(root_dir, 'ckpt')}; train with "
                                f"python -m launch.train_distance --root_dir={root_dir}.")
    return latest


def _settings(root_dir: str) -> Dict:
    return run_config.read_config(root_dir, KIND)


def load_distance(root_dir: str):
    """The trained distance in ``root_dir`` as an object with ``.distance(image, goal_image)``.

    'cql_td3'/'td3' → :class:`~mbold_tf.agents.distances.LearnedDistance` (also ``q_values``
    and ``action``); 'temporal' → TemporalDistanceModel; 'vae' → VAE (also ``encode``).
    GCBC runs hold a policy: use :func:`load_gcbc`. Several 'cql_td3'/'td3' runs of one
    configuration joined by commas (``'runs/a,runs/b'``) →
    :class:`~mbold_tf.agents.distances.DistanceEnsemble` of them.
    """
    dirs = run_config.split_runs(root_dir)
    if len(dirs) > 1:
        return _load_ensemble(dirs)
    settings = _settings(root_dir)
    method = settings["method"]
    latest = _latest(root_dir)
    if method in AGENT_METHODS:
        actor, critic1, critic2 = dn.build_networks(
            settings["networks"], act_spec=dn.action_spec(settings["action_dim"]))
        ckpt = tf.train.Checkpoint(actor_network=actor, critic_network_1=critic1,
                                   critic_network_2=critic2)
        ckpt.restore(latest).expect_partial().assert_existing_objects_matched()
        training.check_finite_weights({"actor": actor, "critic1": critic1, "critic2": critic2},
                                latest)
        obj = distances.LearnedDistance(actor, critic1, critic2, settings["reward_scheme"],
                                        settings["gamma"])
    elif method == "gcbc":
        raise ValueError(f"{root_dir!r} holds a GCBC policy, not a distance; use load_gcbc().")
    else:
        obj = build_baseline(settings)
        build_baseline_variables(obj, method)
        tf.train.Checkpoint(model=obj).restore(latest).expect_partial() \
            .assert_existing_objects_matched()
    obj.method = method
    obj.root_dir = root_dir
    return obj


def _load_ensemble(dirs):
    """DistanceEnsemble of the learned-distance runs ``dirs``; their stored settings must agree
    (they differ in the training seed only, which is not a model setting)."""
    settings = [_settings(d) for d in dirs]
    for d, s in zip(dirs, settings):
        if s["method"] not in AGENT_METHODS:
            raise run_config.ConfigMismatchError(
                f"{d!r} holds a {s['method']!r} model; an ensemble averages learned distances "
                f"(runs of method {AGENT_METHODS}).")
    for d, s in zip(dirs[1:], settings[1:]):
        diff = sorted(k for k in set(s) | set(settings[0]) if s.get(k) != settings[0].get(k))
        if diff:
            lines = "; ".join(f"{k}: {settings[0].get(k, '<missing>')!r} vs "
                              f"{s.get(k, '<missing>')!r}" for k in diff)
            raise run_config.ConfigMismatchError(
                f"The ensemble's runs {dirs[0]!r} and {d!r} differ in settings ({lines}); an "
                f"ensemble averages runs of one configuration trained with different seeds.")
    obj = distances.DistanceEnsemble([load_distance(d) for d in dirs])
    obj.method = settings[0]["method"]
    obj.root_dir = run_config.RUN_SEPARATOR.join(dirs)
    return obj


def load_gcbc(root_dir: str) -> baselines.GCBCPolicy:
    """The GCBC policy in ``root_dir`` (``.action(image, goal_image)`` → [B, 4] in [-1, 1])."""
    settings = _settings(root_dir)
    if settings["method"] != "gcbc":
        raise ValueError(f"{root_dir!r} holds a {settings['method']!r} model, not 'gcbc'.")
    model = build_baseline(settings)
    build_baseline_variables(model, "gcbc")
    tf.train.Checkpoint(model=model).restore(_latest(root_dir)).expect_partial() \
        .assert_existing_objects_matched()
    model.method = "gcbc"
    model.root_dir = root_dir
    return model


def load_sorb(root_dir: str) -> sorb_model.SorbModel:
    """The trained SoRB model in ``root_dir`` with its graph (``model.graph``, a SorbGraph).

    Restores the latest checkpoint. Raises FileNotFoundError when there is no run, checkpoint or
    graph; ConfigMismatchError (a ValueError) when ``root_dir`` holds another kind of model;
    ValueError when the graph does not belong to the latest checkpoint or settings.
    """
    settings = run_config.read_config(root_dir, sorb_model.KIND)
    latest = tf.train.latest_checkpoint(os.path.join(root_dir, "ckpt"))
    if not latest:
        raise FileNotFoundError(f"No checkpoint in {os.path.join(root_dir, 'ckpt')}; train with "
                                f"python -m launch.train_sorb --root_dir={root_dir}.")
    model = sorb_model.build_model(settings)
    step = tf.Variable(0, dtype=tf.int64, name="global_step")
    tf.train.Checkpoint(model=model, step=step).restore(latest).expect_partial() \
        .assert_existing_objects_matched()
    training.check_finite_weights({"model": model}, latest)
    graph = sorb_model.read_graph(root_dir)
    if graph is None:
        raise FileNotFoundError(f"No SoRB graph ({sorb_model.GRAPH_FILE}) in {root_dir!r}; rerun "
                                f"python -m launch.train_sorb --root_dir={root_dir} with the same "
                                f"gin files: a finished run only builds the graph.")
    n = settings["graph_size"]
    if graph.checkpoint_step != int(step.numpy()) or graph.images.shape[0] != n:
        raise ValueError(f"The SoRB graph in {root_dir!r} ({graph.images.shape[0]} nodes, "
                         f"checkpoint step {graph.checkpoint_step}) does not belong to the latest "
                         f"checkpoint (step {int(step.numpy())}, graph_size {n}); rerun "
                         f"python -m launch.train_sorb --root_dir={root_dir} to rebuild it.")
    model.graph = graph
    model.method = "sorb"
    model.root_dir = root_dir
    return model


def load_dreamer(root_dir: str) -> dreamer_model.DreamerModel:
    """The trained :class:`~mbold_tf.models.dreamer.DreamerModel` in ``root_dir``.

    The returned model also carries ``reward_name`` (the run's reward, 'pixel_mse' or
    'arm_l2'), ``run_settings`` (the
    run's config.json settings) and ``root_dir``. Raises FileNotFoundError for a directory
    without config or checkpoint, ConfigMismatchError for a run of another kind, ValueError
    for non-finite weights.
    """
    settings = run_config.read_config(root_dir, dreamer_model.KIND)
    latest = tf.train.latest_checkpoint(os.path.join(root_dir, "ckpt"))
    if not latest:
        raise FileNotFoundError(f"No checkpoint in {os.path.join(root_dir, 'ckpt')}; train with "
                                f"python -m launch.train_dreamer --root_dir={root_dir}.")
    model = dreamer_model.build_model(settings["model"], settings["action_dim"])
    tf.train.Checkpoint(model=model).restore(latest).expect_partial() \
        .assert_existing_objects_matched()
    training.check_finite_weights({"model": model}, latest)
    model.reward_name = settings["reward"]
    model.run_settings = settings
    model.root_dir = root_dir
    return model


def load_rig(root_dir: str, vae_only: bool = False) -> rig_model.RigModel:
    """The trained RIG model of ``root_dir`` (VAE and SAC actor restored).

    ``vae_only``: restore the VAE only (the actor keeps its initial weights), e.g. between
    the two stages. Raises FileNotFoundError naming a missing stage checkpoint,
    ConfigMismatchError for a run of another kind, and ValueError when the VAE was trained
    further after the SAC stage used it (the actor then reads other latents).
    """
    stored = rig_model.read_settings(root_dir)
    model = rig_model.RigModel(stored, stored["action_dim"])
    vae_path = rig_model.restore_vae(model.vae, root_dir)
    model.vae_checkpoint = vae_path
    model.root_dir = root_dir
    if vae_only:
        return model
    sac_dir = os.path.join(root_dir, rig_model.SAC_DIR)
    latest = rig_model.latest_checkpoint(os.path.join(sac_dir, "ckpt"))
    sac = run_config.read_config(sac_dir, rig_model.SAC_KIND)
    if sac["vae_step"] != rig_model.checkpoint_step(vae_path):
        raise ValueError(f"The SAC stage of {root_dir!r} was trained on the VAE of step "
                         f"{sac['vae_step']}, but the VAE's latest checkpoint is {vae_path}: "
                         f"the actor would read other latents. Retrain the SAC stage in a new "
                         f"run directory (copy {rig_model.VAE_DIR}/ and config.json into it).")
    tf.train.Checkpoint(actor_network=model.actor).restore(latest).expect_partial() \
        .assert_existing_objects_matched()
    training.check_finite_weights({"actor": model.actor}, latest)
    model.sac_checkpoint = latest
    return model


LOADERS = {"predictor": video_predictor.load_predictor, "distance": load_distance,
           "vae": load_distance, "temporal": load_distance, "gcbc": load_gcbc,
           "sorb": load_sorb, "rig": load_rig, "dreamer": load_dreamer,
           "dreamer_arm_l2": load_dreamer}


def dreamer_role(reward: str) -> str:
    """The Dreamer role ('dreamer' or 'dreamer_arm_l2') of a run trained with ``reward``."""
    return {v: k for k, v in DREAMER_REWARD.items()}.get(reward, "dreamer")


# The run directories come from the caller's flags, never from gin.
@gin.configurable(denylist=["model_dirs"])
def load_models(model_dirs: Mapping[str, Optional[str]], precision: str = "float32"
                ) -> Dict[str, Any]:
    """Loads the trained models whose run directories are given, keyed by role.

    ``model_dirs``: run directory (or None) by role of :data:`MODEL_ROLES`; roles without a
    directory are left out. A 'distance' of several runs joined by commas is their
    :class:`~mbold_tf.agents.distances.DistanceEnsemble` (Q averaged). ``precision``: the
    forward passes' numeric precision for planning, 'float32' or 'mixed_bfloat16' (weights stay
    float32; the predictor and the distance compute in bfloat16, outputs float32), refused on a
    CPU without bfloat16 instructions and for roles outside :data:`MIXED_PRECISION_ROLES`.
    Raises ValueError for an unknown role, PrecisionError for a precision this machine or role
    cannot run, and ConfigMismatchError for a Dreamer run of the other reward.
    """
    unknown = sorted(set(model_dirs) - set(MODEL_ROLES))
    if unknown:
        raise ValueError(f"Unknown model role(s) {unknown}; choose from {MODEL_ROLES}.")
    precision_lib.check_precision(precision, "load_models.precision")
    wanted = [role for role in MODEL_ROLES if model_dirs.get(role)]
    other = [role for role in wanted if role not in MIXED_PRECISION_ROLES]
    if precision != "float32" and other:
        raise precision_lib.PrecisionError(
            f"load_models.precision = {precision!r} applies to the {MIXED_PRECISION_ROLES} "
            f"models only, but {other} were asked for too; evaluate those methods in a separate "
            f"run with load_models.precision = 'float32'.")
    models: Dict[str, Any] = {}
    for role in wanted:
        path = model_dirs[role]
        with precision_lib.keras_policy(precision):
            models[role] = LOADERS[role](path)
        if role in DREAMER_REWARD and models[role].reward_name != DREAMER_REWARD[role]:
            raise run_config.ConfigMismatchError(
                f"--{role}_dir={path!r} was trained with reward "
                f"{models[role].reward_name!r}, but method {role!r} is Dreamer with reward "
                f"{DREAMER_REWARD[role]!r}; pass it as "
                f"--{dreamer_role(models[role].reward_name)}_dir.")
    return models
