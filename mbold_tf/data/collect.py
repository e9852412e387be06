"""Random-policy data collection: seeded RLDS-shaped episodes from the tabletop tasks.

Each episode is a pure function of ``(task, restricted, seed, episode_id)``: the environment's
reset RNG and the correlated-noise policy (App. A.3, β = 0.5, Table 4 stds) are both seeded from
``np.random.SeedSequence([seed, episode_id])``, so a dataset is deterministic per seed no matter
how episodes are spread over processes (or Beam workers).

An episode has T = 30 actions and T + 1 steps, in the RLDS convention: step t holds the
observation s_t and the action a_t taken from it; the last step holds s_T, ``is_last=True`` and a
zero action.
"""
from __future__ import annotations

import multiprocessing
import os
from typing import Dict, Iterator, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from mbold_tf.envs import random_policy
from mbold_tf.envs import tasks

Episode = Dict[str, object]
_WORKER_ENVS: Dict[Tuple[str, bool], object] = {}


# ``<task>_wide`` datasets: the same filter with every white-noise std scaled by this factor, so
# the hand travels farther in an episode (docs/measurements.md, "Data that reaches the goals").
WIDE_STD_SCALE = 2.5


class DataTask(NamedTuple):
    """What a dataset task name means: the env task, the restricted reset, the noise std scale."""
    task: str
    restricted: bool
    std_scale: float


def config_task(name: str) -> DataTask:
    """Maps a dataset task name to a :class:`DataTask`.

    'push1_restricted' -> ('push1', True, 1.0); 'reach_fine_wide' -> ('reach_fine', False, 2.5).
    """
    std_scale = 1.0
    if name.endswith("_wide"):
        name, std_scale = name[: -len("_wide")], WIDE_STD_SCALE
    if name.endswith("_restricted"):
        return DataTask(name[: -len("_restricted")], True, std_scale)
    return DataTask(name, False, std_scale)


def _env(task: str, restricted: bool):
    key = (task, restricted)
    if key not in _WORKER_ENVS:
        _WORKER_ENVS[key] = tasks.load(task, seed=0, restricted=restricted)
    return _WORKER_ENVS[key]


def generate_episode(task_name: str, seed: int, episode_id: int,
                     steps: int = tasks.EPISODE_STEPS, beta: float = 0.5) -> Episode:
    """Runs one random-policy episode.

    Args:
      task_name: 'reach', 'push1', 'push3', 'door_slide', 'reach_fine', 'push1_fine' or
        'push1_restricted', each
        optionally with the suffix '_wide' (noise stds × ``WIDE_STD_SCALE``).
      seed: dataset seed; episode_id: episode index. Together they seed everything.
      steps: actions per episode (30 in the paper).
      beta: correlated-noise coefficient.
    Returns:
      dict with ``steps`` (RLDS step dict of arrays, leading dim steps + 1: observation/image
      uint8 [64,64,3], observation/joint_pos float32 [7], observation/gripper float32 [2],
      action float32 [4], reward, discount, is_first, is_last, is_terminal, privileged/*) and
      ``episode_metadata`` (task, seed, episode_id).
    """
    task, restricted, std_scale = config_task(task_name)
    env = _env(task, restricted)
    ss = np.random.SeedSequence([int(seed), int(episode_id)])
    env_seed, policy_seed = ss.generate_state(2)
    env.task.reseed(int(env_seed))
    std = std_scale * np.asarray(tasks.TASKS[task].collection_std)
    policy = random_policy.CorrelatedNoisePolicy(std, beta=beta,
                                                 seed=int(policy_seed))
    actions = policy.sample_episode(steps)
    ts = env.reset()
    obs = [ts.observation]
    priv = [tasks.privileged_state(env.physics)]
    for a in actions:
        obs.append(env.step(a).observation)
        priv.append(tasks.privileged_state(env.physics))
    n = steps + 1
    is_last = np.zeros(n, bool)
    is_last[-1] = True
    is_first = np.zeros(n, bool)
    is_first[0] = True
    step_data = {
        "observation": {k: np.stack([o[k] for o in obs]) for k in ("image", "joint_pos",
                                                                  "gripper")},
        "action": np.concatenate([actions, np.zeros((1, actions.shape[1]), np.float32)]),
        "reward": np.zeros(n, np.float32),
        "discount": np.ones(n, np.float32),
        "is_first": is_first, "is_last": is_last, "is_terminal": np.zeros(n, bool),
        "privileged": {k: np.stack([p[k] for p in priv]).astype(np.float32)
                       for k in ("ee_pos", "block_pos", "door_pos")},
    }
    return {"steps": step_data,
            "episode_metadata": {"task": task_name, "seed": int(seed),
                                 "episode_id": int(episode_id)}}


def _worker(args):
    task_name, seed, episode_id = args
    return episode_id, generate_episode(task_name, seed, episode_id)


def generate_episodes(task_name: str, seed: int, episode_ids: Sequence[int],
                      num_workers: Optional[int] = None) -> Iterator[Tuple[int, Episode]]:
    """Yields ``(episode_id, episode)`` in ``episode_ids`` order, using ``num_workers`` processes.

    ``num_workers`` defaults to the CPU count (both cores here). Workers are forked from
    multiprocessing's fork server, a fresh process that has no GL context and, unlike 'spawn',
    does not re-import the launching ``__main__`` module: a worker imports this module only
    (MuJoCo and numpy), not TensorFlow and its start-up banners.
    """
    num_workers = num_workers or os.cpu_count() or 1
    jobs = [(task_name, seed, int(i)) for i in episode_ids]
    if num_workers <= 1 or len(jobs) < 4:
        for job in jobs:
            yield _worker(job)
        return
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([__name__])
    with ctx.Pool(num_workers) as pool:
        yield from pool.imap(_worker, jobs, chunksize=4)


def moved_share(block_or_door_start: np.ndarray, block_or_door_end: np.ndarray,
                threshold: float = 0.075) -> float:
    """Share of episodes whose largest object displacement exceeds ``threshold`` (m).

    Args: start/end: float32 [N, n_objects, d] positions at the first and last step.
    """
    disp = np.linalg.norm(block_or_door_end - block_or_door_start, axis=-1)
    if disp.ndim > 1:
        disp = disp.max(axis=-1)
    return float(np.mean(disp > threshold))
