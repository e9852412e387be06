"""The paper's four tasks (and ``reach_fine`` / ``push1_fine``: reach at a 3 cm step, push1 at
5 cm) as dm_control environments.

``load(name)`` returns a ``dm_control.rl.control.Environment`` (a ``dm_env.Environment``) whose
observations are ``image`` (64×64×3 uint8 from a fixed camera), ``joint_pos`` (7 arm joint angles)
and ``gripper`` (2 finger openings, metres). Privileged state (end effector, block positions,
door slide) is available from :func:`privileged_state` for metrics and goal generation only; it is
never part of the observation.

Actions are 4-D in [-1, 1]: end-effector xyz displacement (scaled by the task's
``action_scale``: 0.1 m, 0.03 m in ``reach_fine``, 0.05 m in ``push1_fine``) and the gripper
opening (-1 closed, +1 open).
Finite actions outside the box are clipped; a NaN, infinite or wrong-shaped action raises
``ValueError`` before the physics is touched.
"""
from __future__ import annotations

import atexit
import dataclasses
import weakref
from typing import Dict, Optional, Tuple

from dm_control import mujoco as dm_mujoco
from dm_control.rl import control
from dm_control.suite import base
from dm_env import specs
import mujoco
import numpy as np

from mbold_tf.envs import scene

ACTION_DIM = 4
EPISODE_STEPS = 30
HAND_TO_EE = np.array([0.0, 0.0, -0.075])  # hand frame -> fingertip centre, hand pointing down
N_SUBSTEPS = 10          # 10 × 5 ms physics steps = 50 ms per control step
_RENDER_FLAGS_OFF = (mujoco.mjtRndFlag.mjRND_SHADOW, mujoco.mjtRndFlag.mjRND_REFLECTION,
                     mujoco.mjtRndFlag.mjRND_SKYBOX, mujoco.mjtRndFlag.mjRND_FOG)


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """Static description of a task (paper Table 4 and App. A.3).

    Attributes:
      name: task name.
      num_blocks: free blocks in the scene.
      door: whether the sliding door is present.
      collection_std: per-dimension std of the random data-collection policy (Table 4).
      success_key: privileged quantity compared for success: 'ee', 'block' or 'door'.
      success_threshold: metres (Table 4).
      reset_half_range: blocks reset uniformly in [-r, r]² around the workspace centre.
      start_ee: end-effector start position (above the block tops, so any block reset is valid).
      action_scale: metres the end effector moves per unit action per step, along each axis.
    """
    name: str
    num_blocks: int
    door: bool
    collection_std: Tuple[float, float, float, float]
    success_key: str
    success_threshold: float
    reset_half_range: float = 0.2
    start_ee: Tuple[float, float, float] = (0.0, 0.6, 0.075)
    action_scale: float = 0.1


TASKS: Dict[str, TaskSpec] = {
    "reach": TaskSpec("reach", 0, False, (0.6, 0.6, 0.3, 0.3), "ee", 0.05),
    # reach with a 3 cm step per unit action (0.1 m elsewhere): one action moves the hand less
    # than the 5 cm threshold, so Eq. 3 can tell the goal from a step short of it
    # (docs/measurements.md, "Eq. 3's ideal critic").
    "reach_fine": TaskSpec("reach_fine", 0, False, (0.6, 0.6, 0.3, 0.3), "ee", 0.05,
                           action_scale=0.03),
    "push1": TaskSpec("push1", 1, False, (0.6, 0.6, 0.3, 0.3), "block", 0.05),
    # push1 with a 5 cm step per unit action: the hand moves about one pixel per random step,
    # and one push moves the block about the 5 cm threshold (docs/measurements.md, "push1 at a
    # 5 cm step").
    "push1_fine": TaskSpec("push1_fine", 1, False, (0.6, 0.6, 0.3, 0.3), "block", 0.05,
                           action_scale=0.05),
    "push3": TaskSpec("push3", 3, False, (0.6, 0.6, 0.3, 0.3), "block", 0.05),
    "door_slide": TaskSpec("door_slide", 0, True, (0.3, 0.3, 0.3, 0.15), "door", 0.075,
                           start_ee=(0.0, 0.66, 0.075)),
}
RESTRICTED_HALF_RANGE = 0.05  # App. E.3


def task_spec(name: str, restricted: bool = False) -> TaskSpec:
    """Returns the TaskSpec of ``name`` (one of TASKS); ``restricted`` narrows block resets."""
    if name not in TASKS:
        raise ValueError(f"Unknown task {name!r}; choose one of {sorted(TASKS)}.")
    spec = TASKS[name]
    if restricted:
        if spec.num_blocks != 1:
            raise ValueError(f"restricted=True (App. E.3) resets one block within "
                             f"±{RESTRICTED_HALF_RANGE} m; {name!r} has {spec.num_blocks} blocks "
                             f"(three 6 cm blocks do not fit apart in that square).")
        spec = dataclasses.replace(spec, reset_half_range=RESTRICTED_HALF_RANGE)
    return spec


_LIVE_PHYSICS: "weakref.WeakSet[TabletopPhysics]" = weakref.WeakSet()
_ATEXIT_REGISTERED = False


def _close_all_renderers():
    """Closes GL contexts before interpreter teardown (else Mesa's EGL prints errors at exit).

    Registered after the first renderer exists, so it runs before MuJoCo's own EGL teardown.
    """
    for physics in list(_LIVE_PHYSICS):
        try:
            physics.close_renderer()
        except Exception:  # pylint: disable=broad-except  # the display is already gone
            physics._renderer = None


class TabletopPhysics(dm_mujoco.Physics):
    """dm_control Physics with accessors for the arm, blocks and door, and a cheap renderer."""

    _renderer = None
    _index = None

    @property
    def index(self) -> Dict[str, np.ndarray]:
        """Cached qpos addresses and ids (named indexing is too slow for the step loop)."""
        if self._index is None:
            m = self.model
            door_id = mujoco.mj_name2id(m.ptr, mujoco.mjtObj.mjOBJ_JOINT, "door_slide")
            jadr = lambda n: int(m.jnt_qposadr[m.name2id(n, "joint")])
            n_blocks = sum(1 for i in range(m.nbody)
                           if m.id2name(i, "body").startswith("block"))
            self._index = {
                "arm": np.array([jadr(j) for j in scene.ARM_JOINTS]),
                "fingers": np.array([jadr(j) for j in scene.FINGER_JOINTS]),
                "ee": m.name2id("ee", "site"),
                "hand": m.name2id("hand", "body"),
                "blocks": np.array([m.name2id(f"block{i}", "body") for i in range(n_blocks)],
                                   dtype=np.int64),
                "door": int(m.jnt_qposadr[door_id]) if door_id >= 0 else -1,
            }
        return self._index

    def joint_pos(self) -> np.ndarray:
        """float32 [7]: arm joint angles (radians)."""
        return self.data.qpos[self.index["arm"]].astype(np.float32)

    def gripper(self) -> np.ndarray:
        """float32 [2]: left/right finger openings (metres)."""
        return self.data.qpos[self.index["fingers"]].astype(np.float32)

    def ee_pos(self) -> np.ndarray:
        """float64 [3]: fingertip-centre position (world, metres)."""
        return self.data.site_xpos[self.index["ee"]].copy()

    def hand_pos(self) -> np.ndarray:
        """float64 [3]: hand (welded body) position (world, metres)."""
        return self.data.xpos[self.index["hand"]].copy()

    def block_pos(self) -> np.ndarray:
        """float64 [n_blocks, 3]: block centres (world, metres)."""
        return self.data.xpos[self.index["blocks"]].copy()

    def door_pos(self) -> float:
        """Door slide position (metres, within scene.DOOR_RANGE); 0.0 if there is no door."""
        adr = self.index["door"]
        return float(self.data.qpos[adr]) if adr >= 0 else 0.0

    def render_image(self, size: int = 64) -> np.ndarray:
        """uint8 [size, size, 3]: the fixed camera's frame (shadows/reflections off)."""
        r = self._renderer
        if r is None or r.height != size:
            self.close_renderer()
            r = mujoco.Renderer(self.model.ptr, size, size)
            for flag in _RENDER_FLAGS_OFF:
                r.scene.flags[flag] = 0
            self._renderer = r
            _LIVE_PHYSICS.add(self)
            global _ATEXIT_REGISTERED
            if not _ATEXIT_REGISTERED:
                atexit.register(_close_all_renderers)
                _ATEXIT_REGISTERED = True
        r.update_scene(self.data.ptr, camera="fixed")
        return r.render()

    def close_renderer(self):
        """Frees the GL context (avoids EGL errors at interpreter exit)."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def get_state_vector(self) -> np.ndarray:
        """float64 [k]: full integration state (qpos, qvel, act, ctrl, mocap, time...)."""
        spec = mujoco.mjtState.mjSTATE_INTEGRATION
        out = np.empty(mujoco.mj_stateSize(self.model.ptr, spec))
        mujoco.mj_getState(self.model.ptr, self.data.ptr, out, spec)
        return out

    def set_state_vector(self, state: np.ndarray):
        """Restores a vector from :meth:`get_state_vector` and recomputes derived quantities."""
        spec = mujoco.mjtState.mjSTATE_INTEGRATION
        expected = mujoco.mj_stateSize(self.model.ptr, spec)
        state = np.asarray(state, dtype=np.float64)
        if state.shape != (expected,):
            raise ValueError(f"State vector has shape {state.shape}; this scene expects "
                             f"({expected},). Was it saved from another task?")
        mujoco.mj_setState(self.model.ptr, self.data.ptr, state, spec)
        mujoco.mj_forward(self.model.ptr, self.data.ptr)


def privileged_state(physics: TabletopPhysics) -> Dict[str, np.ndarray]:
    """Privileged state for metrics and goal generation (never a model input).

    Returns dict: ``ee_pos`` float32 [3], ``block_pos`` float32 [n_blocks, 3], ``door_pos``
    float32 [1].
    """
    return {"ee_pos": physics.ee_pos().astype(np.float32),
            "block_pos": physics.block_pos().astype(np.float32),
            "door_pos": np.array([physics.door_pos()], np.float32)}


def validate_action(action, expected_dim: int = ACTION_DIM) -> np.ndarray:
    """Checks an action; returns float64 [4] clipped to [-1, 1].

    Raises ValueError naming the value and the allowed shape/range if the action is not a
    finite vector of the right shape.
    """
    arr = np.asarray(action, dtype=np.float64)
    if arr.shape != (expected_dim,):
        raise ValueError(f"Action has shape {arr.shape}; expected ({expected_dim},) with values "
                         f"in [-1, 1] (xyz end-effector displacement, gripper). Got {action!r}.")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"Action {arr.tolist()} contains NaN or infinite values; every entry "
                         f"must be finite, in [-1, 1].")
    return np.clip(arr, -1.0, 1.0)


class TabletopTask(base.Task):
    """Suite-style task: resets, action application and observations for every tabletop task."""

    def __init__(self, spec: TaskSpec, image_size: int = 64, random=None):
        """Args: spec: the task (it sets the action scale); image_size: frame side; random:
        seed or RandomState."""
        super().__init__(random=random)
        self.spec = spec
        self.action_scale = float(spec.action_scale)
        self.image_size = int(image_size)
        self.start_ee = np.asarray(spec.start_ee, dtype=np.float64)
        self._arm_start: Optional[np.ndarray] = None

    def reseed(self, seed: int) -> None:
        """Restarts the task's random stream (block and door resets) from ``seed`` (int)."""
        self._random = np.random.RandomState(int(seed))  # the RNG base.Task.random exposes

    # -- episode ---------------------------------------------------------------------------------
    def _settled_arm(self, physics: TabletopPhysics) -> np.ndarray:
        """Arm qpos with the hand welded at ``start_ee`` (solved once without contacts, cached)."""
        if self._arm_start is None:
            model = physics.model.ptr
            data = mujoco.MjData(model)
            saved_flags = model.opt.disableflags
            model.opt.disableflags |= int(mujoco.mjtDisableBit.mjDSBL_CONTACT)
            try:
                data.mocap_pos[0] = self.start_ee - HAND_TO_EE
                data.mocap_quat[0] = scene.HAND_QUAT
                for _ in range(400):
                    mujoco.mj_step(model, data)
            finally:
                model.opt.disableflags = saved_flags
            ee = data.site("ee").xpos
            if np.linalg.norm(ee - self.start_ee) > 2e-3:
                raise RuntimeError(f"The arm could not reach start_ee={self.start_ee.tolist()} "
                                   f"(got {ee.tolist()}); choose a start inside {scene.EE_LOW} "
                                   f"- {scene.EE_HIGH}.")
            self._arm_start = np.array([data.joint(j).qpos[0] for j in scene.ARM_JOINTS])
        return self._arm_start

    def _set_mocap_for_ee(self, physics, ee_target):
        hand_to_ee = physics.ee_pos() - physics.hand_pos()
        if not np.any(hand_to_ee):   # before the first forward pass: the nominal offset
            hand_to_ee = HAND_TO_EE
        physics.data.mocap_pos[0] = ee_target - hand_to_ee
        physics.data.mocap_quat[0] = scene.HAND_QUAT

    def initialize_episode(self, physics: TabletopPhysics):
        """Arm at its start pose, gripper open, blocks/door reset uniformly at random."""
        arm = self._settled_arm(physics)
        with physics.reset_context():
            physics.named.data.qpos[list(scene.ARM_JOINTS)] = arm
            physics.named.data.qpos[list(scene.FINGER_JOINTS)] = scene.FINGER_RANGE[1]
            physics.data.ctrl[:] = scene.FINGER_RANGE[1]
            physics.data.mocap_pos[0] = self.start_ee - HAND_TO_EE
            physics.data.mocap_quat[0] = scene.HAND_QUAT
            self._place_blocks(physics)
            if self.spec.door:
                physics.named.data.qpos["door_slide"] = self.random.uniform(*scene.DOOR_RANGE)
        super().initialize_episode(physics)

    def _place_blocks(self, physics):
        n, r = self.spec.num_blocks, self.spec.reset_half_range
        placed = []
        for i in range(n):
            for _ in range(1000):
                xy = scene.WORKSPACE_CENTER[:2] + self.random.uniform(-r, r, size=2)
                if all(np.linalg.norm(xy - p) > 3 * scene.BLOCK_HALF for p in placed):
                    break
            else:  # as dm_control's finger.py: never keep an overlapping placement
                raise RuntimeError(f"Could not place block {i} of {n} at least "
                                   f"{3 * scene.BLOCK_HALF:.2f} m from the others within "
                                   f"±{r} m in 1000 samples; widen reset_half_range.")
            placed.append(xy)
            qadr = physics.model.jnt_qposadr[physics.model.name2id(f"block{i}", "joint")]
            physics.data.qpos[qadr:qadr + 7] = [xy[0], xy[1], scene.BLOCK_HALF, 1, 0, 0, 0]

    # -- stepping --------------------------------------------------------------------------------
    def before_step(self, action, physics: TabletopPhysics):
        """Validates the action, moves the mocap target and sets the finger targets."""
        a = validate_action(action)
        ee = physics.data.site_xpos[physics.index["ee"]]
        target = np.clip(ee + self.action_scale * a[:3], scene.EE_LOW, scene.EE_HIGH)
        self._set_mocap_for_ee(physics, target)
        lo, hi = scene.FINGER_RANGE
        physics.data.ctrl[:2] = lo + (a[3] + 1.0) * 0.5 * (hi - lo)

    def action_spec(self, physics):
        return specs.BoundedArray((ACTION_DIM,), np.float32, -1.0, 1.0, name="action")

    def get_observation(self, physics: TabletopPhysics):
        return {"image": physics.render_image(self.image_size),
                "joint_pos": physics.joint_pos(),
                "gripper": physics.gripper()}

    def get_reward(self, physics):
        return 0.0   # goal-reaching rewards come from the goal-conditioned wrapper


def load(task: str = "push1", seed=None, restricted: bool = False,
         image_size: int = 64, episode_steps: int = EPISODE_STEPS) -> control.Environment:
    """Builds a task's dm_control environment.

    Args:
      task: a name in ``tasks.TASKS``.
      seed: int or None; the same seed gives identical resets, images and states.
      restricted: blocks reset in [-0.05, 0.05]² (App. E.3) instead of [-0.2, 0.2]².
      image_size: side of the square ``image`` observation.
      episode_steps: control steps per episode (the paper uses 30).
    Returns:
      a ``dm_control.rl.control.Environment``; ``env.physics`` is a :class:`TabletopPhysics`.
    """
    spec = task_spec(task, restricted)
    xml = scene.build_scene_xml(num_blocks=spec.num_blocks, door=spec.door,
                                image_size=image_size)
    physics = TabletopPhysics.from_xml_string(xml)
    task_obj = TabletopTask(spec, image_size=image_size, random=seed)
    dt = physics.timestep() * N_SUBSTEPS
    # dm_control counts steps as time_limit / control_timestep; half a step of slack makes the
    # float division land strictly between episode_steps - 1 and episode_steps.
    return control.Environment(physics, task_obj, n_sub_steps=N_SUBSTEPS,
                               time_limit=(episode_steps - 0.5) * dt)


def close(env: control.Environment):
    """Frees the environment's renderer."""
    env.physics.close_renderer()
