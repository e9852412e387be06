"""Bring your own environment: adapt any dm_env or Gymnasium env to mbold-tf's observation layout.

MBOLD needs, per step, an RGB image (resized to 64×64 uint8) and the arm's proprioception (joint
angles, used only to mine hard negatives), and it acts with a continuous action in [-1, 1]^d.
:class:`ImageArmAdapter` turns another environment into a ``dm_env.Environment`` with exactly
that interface, so the planner and the robot runner act on it unchanged, and a collection loop of
your own can record its episodes for an RLDS dataset (the project's collector and TFDS builder
load the tabletop tasks by name)::

    from dm_control import suite
    from dm_control.suite.wrappers import pixels
    from mbold_tf.envs.adapters import ImageArmAdapter

    env = pixels.Wrapper(suite.load("reacher", "easy"), pixels_only=False,
                         render_kwargs={"height": 64, "width": 64, "camera_id": 0})
    env = ImageArmAdapter(env, image_key="pixels", proprio_key="position")

    # A Gymnasium env whose observation is a dict with an image and the joint angles:
    env = ImageArmAdapter(gym_env, image_key="rgb", proprio_key="qpos")
    # ... or whose image comes from env.render() (render_mode="rgb_array"):
    env = ImageArmAdapter(gym_env, image_key=None, proprio_key="qpos")

Actions given to the adapter are in [-1, 1] and rescaled to the wrapped env's bounds.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import dm_env
from dm_env import specs
import numpy as np
from PIL import Image


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] not in (3, 4):
        raise ValueError(f"Expected an RGB(A) image [H, W, 3|4], got shape {image.shape}.")
    if image.dtype != np.uint8:
        image = np.clip(image * (255.0 if image.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    image = image[..., :3]
    if image.shape[:2] != (size, size):
        image = np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))
    return image


def _is_gymnasium(env) -> bool:
    return hasattr(env, "action_space") and hasattr(env, "observation_space") and not \
        isinstance(env, dm_env.Environment)


class ImageArmAdapter(dm_env.Environment):
    """Exposes ``{'image': uint8 [size,size,3], 'joint_pos': float32 [n]}`` observations.

    Args:
      env: a ``dm_env.Environment`` or a Gymnasium-API env (``reset() -> (obs, info)``,
        ``step(a) -> (obs, reward, terminated, truncated, info)``, a Box ``action_space``).
      image_key: observation key of the RGB image; None renders with ``env.render()``
        (Gymnasium, ``render_mode='rgb_array'``) or ``env.physics.render`` (dm_control).
      proprio_key: observation key of the arm's joint angles (or any actuated-state vector).
      image_size: output image side.
    """

    def __init__(self, env, image_key: Optional[str], proprio_key: str, image_size: int = 64):
        self._env = env
        self._gym = _is_gymnasium(env)
        self.image_key = image_key
        self.proprio_key = proprio_key
        self.image_size = int(image_size)
        if self._gym:
            space = env.action_space
            low, high = np.asarray(space.low, np.float64), np.asarray(space.high, np.float64)
        else:
            spec = env.action_spec()
            low = np.broadcast_to(getattr(spec, "minimum", -1.0), spec.shape).astype(np.float64)
            high = np.broadcast_to(getattr(spec, "maximum", 1.0), spec.shape).astype(np.float64)
        if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
            raise ValueError("ImageArmAdapter needs a bounded continuous action space; got "
                             f"low={low}, high={high}.")
        self._low, self._high = low, high
        self._proprio_dim: Optional[int] = None

    def _convert(self, obs: Any) -> Dict[str, np.ndarray]:
        if not isinstance(obs, dict) and not hasattr(obs, "keys"):
            raise ValueError(f"The wrapped env's observation is a {type(obs).__name__}; "
                             "ImageArmAdapter needs a dict observation with the proprio key "
                             f"{self.proprio_key!r}.")
        if self.proprio_key not in obs:
            raise KeyError(f"Observation has no key {self.proprio_key!r} (proprio_key); "
                           f"available keys: {sorted(obs.keys())}.")
        if self.image_key is None:
            image = self._env.render() if self._gym else self._env.physics.render(
                self.image_size, self.image_size)
        else:
            if self.image_key not in obs:
                raise KeyError(f"Observation has no key {self.image_key!r} (image_key); "
                               f"available keys: {sorted(obs.keys())}.")
            image = obs[self.image_key]
        proprio = np.asarray(obs[self.proprio_key], np.float32).reshape(-1)
        return {"image": _resize(image, self.image_size), "joint_pos": proprio}

    def reset(self) -> dm_env.TimeStep:
        if self._gym:
            obs, _ = self._env.reset()
            out = self._convert(obs)
        else:
            out = self._convert(self._env.reset().observation)
        self._proprio_dim = out["joint_pos"].shape[0]
        return dm_env.restart(out)

    def step(self, action) -> dm_env.TimeStep:
        a = np.asarray(action, np.float64)
        if a.shape != self._low.shape or not np.all(np.isfinite(a)):
            raise ValueError(f"Action {a.tolist()} must be finite with shape {self._low.shape}, "
                             "values in [-1, 1].")
        a = np.clip(a, -1.0, 1.0)
        scaled = self._low + (a + 1.0) * 0.5 * (self._high - self._low)
        if self._gym:
            obs, reward, terminated, truncated, _ = self._env.step(scaled)
            out = self._convert(obs)
            if terminated:
                return dm_env.termination(float(reward), out)
            if truncated:
                return dm_env.truncation(float(reward), out)
            return dm_env.transition(float(reward), out)
        ts = self._env.step(scaled)
        return ts._replace(observation=self._convert(ts.observation))

    def observation_spec(self):
        if self._proprio_dim is None:
            self.reset()
        return {"image": specs.BoundedArray((self.image_size, self.image_size, 3), np.uint8, 0,
                                            255, "image"),
                "joint_pos": specs.Array((self._proprio_dim,), np.float32, "joint_pos")}

    def action_spec(self):
        return specs.BoundedArray(self._low.shape, np.float32, -1.0, 1.0, "action")

    def close(self):
        close = getattr(self._env, "close", None)
        if close is not None:
            close()
