"""Load trained distance functions and baselines from their run directories.

A distance run directory (``launch.train_distance``) holds ``config.json`` (the method and network
settings, :mod:`mbold_tf.utils.run_config`) and ``ckpt/``. :func:`load_distance` and
:func:`load_gcbc` rebuild the networks from the settings and restore the newest checkpoint; the
planner factory and the evaluation launchers load models here, without the training code.
"""
from __future__ import annotations

import os
from typing import Dict

import tensorflow as tf

from mbold_tf.agents import distances
from mbold_tf.models import baselines
from mbold_tf.models import distance_networks as dn
from mbold_tf.utils import run_config
from mbold_tf.utils import training

KIND = "distance"
AGENT_METHODS = ("cql_td3", "td3")


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


def _build_baseline_variables(model, method: str):
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
        _build_baseline_variables(obj, method)
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
    _build_baseline_variables(model, "gcbc")
    tf.train.Checkpoint(model=model).restore(_latest(root_dir)).expect_partial() \
        .assert_existing_objects_matched()
    model.method = "gcbc"
    model.root_dir = root_dir
    return model
