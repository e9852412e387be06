"""Run a policy over a task's goal set with TF-Agents drivers and collect the paper's metrics."""
from __future__ import annotations

import os
import time
from typing import Dict, List, Optional, Sequence

from absl import logging
import numpy as np
from tf_agents.drivers import py_driver

from mbold_tf.envs import goal_env


class _FinalMetrics:
    """Driver observer: reads the env's episode metrics at each episode's last step."""

    def __init__(self, env: goal_env.GoalConditionedPyEnvironment):
        self.env = env
        self.rows: List[Dict[str, float]] = []

    def __call__(self, trajectory):
        if trajectory.is_last():
            self.rows.append(self.env.episode_metrics())


class GifChoice:
    """Which evaluation episodes keep a GIF, decided in goal order within each ``key`` (e.g. a
    cell and seed): every success, the first failure, and the episodes at positions below
    ``num_gifs`` (only for ``first_seed`` when one is given). The sequential, lockstep and Beam
    evaluations all decide with it, so a success is never without its GIF."""

    def __init__(self, num_gifs: int, first_seed: Optional[int] = None):
        self.num_gifs, self.first_seed = num_gifs, first_seed
        self._failure_kept = set()

    def first_goals(self, position: int, seed: Optional[int] = None) -> bool:
        """Whether goal ``position`` (int) of ``seed`` is one of the always-kept first goals."""
        return position < self.num_gifs and (self.first_seed is None or seed == self.first_seed)

    def keep(self, key, position: int, success: bool, seed: Optional[int] = None) -> bool:
        """True if the episode at goal ``position`` of ``key`` keeps its GIF; a kept failure
        marks ``key``'s first failure as kept."""
        keep = self.first_goals(position, seed) or success or key not in self._failure_kept
        if keep and not success:
            self._failure_kept.add(key)
        return keep


class _FrameRecorder:
    """Driver observer: keeps the frames of the current episode (image beside goal image)."""

    def __init__(self):
        self.frames: List[np.ndarray] = []

    def __call__(self, trajectory):
        obs = trajectory.observation
        self.frames.append(np.concatenate([obs["image"], obs["goal_image"]], axis=1))


def save_gif(path: str, frames: Sequence[np.ndarray], scale: int = 3, fps: int = 5,
             title: str = "", success: Optional[bool] = None) -> None:
    """Writes uint8 frames [H, W, 3] (upscaled ``scale``×) as an animated GIF.

    Each frame gets a caption above it: ``title``, "rollout | goal" and the step counter; with
    ``success`` given, the last frame also says whether the episode succeeded.
    """
    from PIL import Image, ImageDraw, ImageFont  # pylint: disable=g-import-not-at-top

    font = ImageFont.load_default()
    images = []
    for t, f in enumerate(frames):
        frame = Image.fromarray(np.asarray(f, np.uint8)).resize(
            (f.shape[1] * scale, f.shape[0] * scale), Image.NEAREST)
        canvas = Image.new("RGB", (frame.width, frame.height + 30), (255, 255, 255))
        canvas.paste(frame, (0, 30))
        draw = ImageDraw.Draw(canvas)
        draw.text((4, 2), title, fill=(0, 0, 0), font=font)
        line = f"rollout | goal   step {t}/{len(frames) - 1}"
        if success is not None and t == len(frames) - 1:
            line += "   SUCCESS" if success else "   no success"
        draw.text((4, 16), line, fill=(0, 0, 0), font=font)
        images.append(canvas)
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps),
                   loop=0)


def evaluate_py_policy(env: goal_env.GoalConditionedPyEnvironment, policy,
                       goal_indices: Sequence[int], gif_dir: Optional[str] = None,
                       num_gifs: int = 0, tag: str = "", title: str = ""
                       ) -> List[Dict[str, float]]:
    """Runs ``policy`` (a TF-Agents PyPolicy) once on each goal in ``goal_indices``.

    Returns one dict per goal: the env's ``episode_metrics()`` at the final step (goal_index,
    success 0/1, start and final object and arm distances in m, object_displacement,
    object_moved) plus ``seconds`` (wall time of the episode). With ``gif_dir``, every successful
    episode, the first failed one and the first ``num_gifs`` episodes are saved as
    ``<gif_dir>/<tag>goal<index>.gif`` (the camera image left, the goal image right), captioned
    with ``title`` (e.g. the method), the step and the outcome: a success is never without its
    GIF, and each call shows how its policy fails.
    """
    final = _FinalMetrics(env)
    recorder = _FrameRecorder()
    observers = [final] + ([recorder] if gif_dir else [])
    choice = GifChoice(num_gifs)
    driver = py_driver.PyDriver(env, policy, observers=observers, max_episodes=1)
    rows = []
    for n, i in enumerate(goal_indices):
        env.set_goal(int(i))
        time_step = env.reset()
        recorder.frames = []
        start = time.time()
        driver.run(time_step, policy.get_initial_state(batch_size=None))
        row = dict(final.rows[-1], seconds=time.time() - start)
        rows.append(row)
        logging.info("%sepisode %d/%d (goal %d): success %s, object %.3f -> %.3f m, arm %.3f m, "
                     "%.1f s", tag, n + 1, len(goal_indices), int(i), bool(row["success"]),
                     row["start_object_distance"], row["object_distance"], row["arm_distance"],
                     row["seconds"])
        if gif_dir and recorder.frames and choice.keep(tag, n, bool(row["success"])):
            os.makedirs(gif_dir, exist_ok=True)
            save_gif(os.path.join(gif_dir, f"{tag}goal{int(i)}.gif"), recorder.frames,
                     title=f"{title or tag} goal {int(i)}", success=bool(row["success"]))
    return rows
