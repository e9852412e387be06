"""The paper's data-collection policy: temporally correlated Gaussian noise (App. A.3).

Nagabandi et al. (2020) filtering with β = 0.5: ``u_t = β·n_t + (1 − β)·u_{t−1}``,
``n_t ~ N(0, diag(std²))``, actions clipped to [-1, 1]. Per-task stds are in Table 4
(:data:`mbold_tf.envs.tasks.TASKS`). The same filter shapes the planner's CEM samples.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


class CorrelatedNoisePolicy:
    """Seeded correlated-noise policy; ``reset()`` at each episode start, then ``action()``.

    Args:
      std: per-dimension std of the white noise n_t (length = action dim).
      beta: filter coefficient β (the paper: 0.5).
      seed: int seed or a ``np.random.Generator``.
    """

    def __init__(self, std: Sequence[float], beta: float = 0.5, seed=None):
        if not 0.0 < beta <= 1.0:
            raise ValueError(f"beta={beta} must be in (0, 1].")
        self.std = np.asarray(std, dtype=np.float64)
        if self.std.ndim != 1 or np.any(self.std < 0):
            raise ValueError(f"std must be a 1-D vector of non-negative values, got {std!r}.")
        self.beta = float(beta)
        self.rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        self._u = np.zeros_like(self.std)

    def reset(self):
        """Starts a new episode (u_{-1} = 0)."""
        self._u = np.zeros_like(self.std)

    def action(self) -> np.ndarray:
        """float32 [action_dim] in [-1, 1]: the next filtered, clipped action."""
        n = self.rng.normal(size=self.std.shape) * self.std
        self._u = self.beta * n + (1.0 - self.beta) * self._u
        return np.clip(self._u, -1.0, 1.0).astype(np.float32)

    def sample_episode(self, steps: int) -> np.ndarray:
        """float32 [steps, action_dim]: a whole episode of actions (resets first)."""
        self.reset()
        return np.stack([self.action() for _ in range(steps)])
