"""Seeded test-goal sets: start state + goal image + goal privileged state (App. A.3, DESIGN §2b).

Goals come from rejection-sampled random-policy rollouts, simulated without rendering (only the
accepted goal frame is rendered), so a 100-goal set takes seconds:

* reach, regular: the end effector moved ≥ 0.15 m in x-y. *Hard* (our extension; the paper
  defines hard goals for object tasks only): ≥ 0.25 m.
* push1 / push3, regular: the largest block displacement is > 0.075 m and exactly one block moved
  (> 0.01 m). *Hard*: additionally the moved block ends > 0.125 m (x-y) from the end effector,
  i.e. the arm pushed and withdrew.
* door_slide: centre c ~ U(0.10, 0.30) m; the door starts at c ± 0.15 and the goal is c ∓ 0.15.
  The goal's arm pose is the end of a random rollout from the start. *Hard*: additionally the
  end effector is > 0.125 m from the handle in the goal.

The same seed gives byte-identical goal images and states.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Dict, List, Optional

import numpy as np

from mbold_tf.envs import metrics
from mbold_tf.envs import random_policy
from mbold_tf.envs import scene
from mbold_tf.envs import tasks

REACH_MIN_MOTION = 0.15
REACH_HARD_MIN_MOTION = 0.25
PUSH_MIN_MOTION = 0.075
PUSH_MOVED = metrics.MOVED_THRESHOLD
HARD_ARM_CLEARANCE = 0.125
DOOR_CENTER_RANGE = (0.10, 0.30)
DOOR_HALF_TRAVEL = 0.15


@dataclasses.dataclass
class GoalSet:
    """A task's test goals, as stacked arrays.

    Attributes:
      task: task name; hard: whether these are hard goals; seed: generator seed.
      start_states: float64 [N, k] physics state vectors (``TabletopPhysics.get_state_vector``).
      goal_states: float64 [N, k] physics state vectors of the goals.
      goal_images: uint8 [N, 64, 64, 3].
      start_ee / goal_ee: float32 [N, 3]; start_blocks / goal_blocks: float32 [N, n_blocks, 3];
      start_door / goal_door: float32 [N, 1]; goal_joint_pos: float32 [N, 7].
      moved_object: int32 [N], index of the block the goal moves (0 when there are no blocks).
    """
    task: str
    hard: bool
    seed: int
    start_states: np.ndarray
    goal_states: np.ndarray
    goal_images: np.ndarray
    start_ee: np.ndarray
    goal_ee: np.ndarray
    start_blocks: np.ndarray
    goal_blocks: np.ndarray
    start_door: np.ndarray
    goal_door: np.ndarray
    goal_joint_pos: np.ndarray
    moved_object: np.ndarray

    def __len__(self) -> int:
        return int(self.goal_images.shape[0])

    def check_index(self, index: int) -> int:
        """Returns ``index`` as int or raises ValueError naming it and the allowed range."""
        if not isinstance(index, (int, np.integer)) or not 0 <= index < len(self):
            raise ValueError(f"Goal index {index!r} is out of range: this {self.task} goal set "
                             f"has {len(self)} goals, indices 0..{len(self) - 1}.")
        return int(index)

    def goal_privileged(self, index: int) -> Dict[str, np.ndarray]:
        """Privileged state of goal ``index`` (ee_pos [3], block_pos [n,3], door_pos [1])."""
        i = self.check_index(index)
        return {"ee_pos": self.goal_ee[i], "block_pos": self.goal_blocks[i],
                "door_pos": self.goal_door[i]}

    def save(self, path: str):
        """Writes the set to an ``.npz`` file."""
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        arrays = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        np.savez_compressed(path, **arrays)

    @classmethod
    def load(cls, path: str) -> "GoalSet":
        """Reads a set written by :meth:`save`."""
        if not os.path.exists(path):
            raise FileNotFoundError(f"No goal set at {path}; create it with "
                                    f"`python -m launch.make_goals --task=... --out={path}`.")
        with np.load(path) as z:
            kw = {k: z[k] for k in z.files}
        kw["task"], kw["hard"], kw["seed"] = str(kw["task"]), bool(kw["hard"]), int(kw["seed"])
        return cls(**kw)


def rollout(env, actions: np.ndarray) -> None:
    """Steps ``env``'s physics through ``actions`` [T, 4] without rendering (fast)."""
    physics, task = env.physics, env.task
    for a in actions:
        task.before_step(a, physics)
        physics.step(tasks.N_SUBSTEPS)


def _door_handle_xy(door_pos: float) -> np.ndarray:
    return np.array([scene.DOOR_X0 + door_pos, scene.DOOR_Y + 0.03 - 0.082])


def _accept(spec: tasks.TaskSpec, hard: bool, start: Dict, final: Dict) -> Optional[int]:
    """Returns the moved object's index (0 if none) when a rollout makes a valid goal."""
    if spec.success_key == "ee":
        motion = np.linalg.norm(final["ee_pos"][:2] - start["ee_pos"][:2])
        return 0 if motion >= (REACH_HARD_MIN_MOTION if hard else REACH_MIN_MOTION) else None
    if spec.success_key == "block":
        disp = np.linalg.norm(final["block_pos"][:, :2] - start["block_pos"][:, :2], axis=1)
        if disp.max() <= PUSH_MIN_MOTION or np.sum(disp > PUSH_MOVED) != 1:
            return None
        moved = int(np.argmax(disp))
        if hard and np.linalg.norm(final["ee_pos"][:2] - final["block_pos"][moved, :2]) <= \
                HARD_ARM_CLEARANCE:
            return None
        return moved
    if spec.success_key == "door":
        if hard and np.linalg.norm(final["ee_pos"][:2] - _door_handle_xy(
                float(final["door_pos"][0]))) <= HARD_ARM_CLEARANCE:
            return None
        return 0
    raise ValueError(spec.success_key)


def _hand_touches_door(physics) -> bool:
    names = {"door_panel", "door_handle"}
    hand = {"palm", "finger_l", "finger_r"}
    for c in physics.data.contact:
        g1 = physics.model.id2name(c.geom1, "geom")
        g2 = physics.model.id2name(c.geom2, "geom")
        if (g1 in names and g2 in hand) or (g2 in names and g1 in hand):
            return True
    return False


def generate_goal_set(task: str, num_goals: int = 100, hard: bool = False, seed: int = 0,
                      restricted: bool = False, max_tries: int = 200_000,
                      image_size: int = 64) -> GoalSet:
    """Generates ``num_goals`` test goals for ``task`` by rejection sampling random rollouts.

    Args:
      task: a name in ``tasks.TASKS``.
      num_goals: number of goals (the paper uses 100).
      hard: hard goals (see the module docstring).
      seed: the same seed gives byte-identical goal images and states.
      restricted: start states from the restricted block reset (App. E.3).
      max_tries: give up (RuntimeError) after this many rollouts.
      image_size: goal image side.
    Returns:
      a :class:`GoalSet`.
    """
    spec = tasks.task_spec(task, restricted)
    if num_goals < 1:
        raise ValueError(f"num_goals={num_goals} must be >= 1.")
    env = tasks.load(task, seed=0, restricted=restricted, image_size=image_size)
    physics = env.physics
    rng = np.random.default_rng(seed)
    out: Dict[str, List[np.ndarray]] = {k: [] for k in (
        "start_states", "goal_states", "goal_images", "start_ee", "goal_ee", "start_blocks",
        "goal_blocks", "start_door", "goal_door", "goal_joint_pos", "moved_object")}
    tries = 0
    try:
        while len(out["goal_images"]) < num_goals:
            tries += 1
            if tries > max_tries:
                raise RuntimeError(f"Only {len(out['goal_images'])}/{num_goals} {task} goals "
                                   f"(hard={hard}) after {max_tries} rollouts; raise max_tries.")
            try_seed = int(rng.integers(2 ** 31 - 1))
            env.task.reseed(try_seed)
            policy = random_policy.CorrelatedNoisePolicy(spec.collection_std, seed=try_seed)
            with physics.reset_context():
                env.task.initialize_episode(physics)
            door_goal = None
            if spec.door:
                c = env.task.random.uniform(*DOOR_CENTER_RANGE)
                sign = 1.0 if env.task.random.uniform() < 0.5 else -1.0
                physics.named.data.qpos["door_slide"] = c + sign * DOOR_HALF_TRAVEL
                physics.forward()
                door_goal = c - sign * DOOR_HALF_TRAVEL
            start_state = physics.get_state_vector()
            start = tasks.privileged_state(physics)
            rollout(env, policy.sample_episode(tasks.EPISODE_STEPS))
            if door_goal is not None:
                physics.named.data.qpos["door_slide"] = door_goal
                physics.named.data.qvel["door_slide"] = 0.0
                physics.forward()
                if _hand_touches_door(physics):
                    continue
            final = tasks.privileged_state(physics)
            moved = _accept(spec, hard, start, final)
            if moved is None:
                continue
            out["start_states"].append(start_state)
            out["goal_states"].append(physics.get_state_vector())
            out["goal_images"].append(physics.render_image(image_size))
            out["start_ee"].append(start["ee_pos"])
            out["goal_ee"].append(final["ee_pos"])
            out["start_blocks"].append(start["block_pos"])
            out["goal_blocks"].append(final["block_pos"])
            out["start_door"].append(start["door_pos"])
            out["goal_door"].append(final["door_pos"])
            out["goal_joint_pos"].append(physics.joint_pos())
            out["moved_object"].append(np.int32(moved))
    finally:
        tasks.close(env)
    arrays = {k: np.stack(v) for k, v in out.items()}
    return GoalSet(task=task, hard=hard, seed=seed, **arrays)


def acceptance_rate(task: str, hard: bool = False, rollouts: int = 200, seed: int = 0) -> float:
    """Share of random rollouts that make a valid goal (used to report dataset quality)."""
    spec = tasks.task_spec(task)
    env = tasks.load(task, seed=seed)
    policy = random_policy.CorrelatedNoisePolicy(spec.collection_std, seed=seed)
    hits = 0
    try:
        for _ in range(rollouts):
            with env.physics.reset_context():
                env.task.initialize_episode(env.physics)
            start = tasks.privileged_state(env.physics)
            rollout(env, policy.sample_episode(tasks.EPISODE_STEPS))
            hits += _accept(spec, hard, start, tasks.privileged_state(env.physics)) is not None
    finally:
        tasks.close(env)
    return hits / rollouts


