"""Statistics that can tell goal-reaching methods apart: Wilson intervals and paired comparisons.

* :func:`wilson_interval` — the 95% score interval of a success rate over n episodes (Wilson
  1927); unlike the normal approximation it stays inside [0, 1] and is not empty at 0/n or n/n.
* :func:`paired_comparison` — two methods run on the same (goal, seed) episodes: the mean
  success difference, a goal-clustered bootstrap 95% interval of it (goals are resampled with all
  their seeds, since the seeds of one goal are not independent), and the exact two-sided sign
  test over the episodes where exactly one method succeeded (McNemar's exact test).
"""
from __future__ import annotations

import math
from typing import Dict, Hashable, Mapping, Tuple

import numpy as np

Z95 = 1.959963984540054  # two-sided 95% normal quantile
BOOTSTRAP_SAMPLES = 10000
BOOTSTRAP_SEED = 0


def wilson_interval(successes: int, n: int, z: float = Z95) -> Tuple[float, float]:
    """(low, high) of the Wilson score interval for ``successes`` out of ``n`` (floats in [0, 1]).

    Raises ValueError when n < 1 or successes is not in [0, n].
    """
    if n < 1 or not 0 <= successes <= n:
        raise ValueError(f"Wilson interval needs 0 <= successes <= n and n >= 1; got "
                         f"successes={successes}, n={n}.")
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def sign_test_p(wins: int, losses: int) -> float:
    """Exact two-sided sign-test p-value for ``wins`` vs ``losses`` discordant pairs (float).

    1.0 when there are no discordant pairs.
    """
    n = wins + losses
    if n == 0:
        return 1.0
    k = min(wins, losses)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2.0 ** n
    return min(1.0, 2.0 * tail)


def paired_comparison(a: Mapping[Tuple[Hashable, Hashable], float],
                      b: Mapping[Tuple[Hashable, Hashable], float],
                      samples: int = BOOTSTRAP_SAMPLES, seed: int = BOOTSTRAP_SEED
                      ) -> Dict[str, float]:
    """Compares method A with method B on the episodes both ran.

    Args:
      a, b: success (0/1) per episode key ``(goal, seed)``; both must hold the same keys.
      samples: bootstrap resamples of the goals.
      seed: the bootstrap's random seed (the result is deterministic).
    Returns:
      dict: pairs (episodes), goals, difference (mean success of A − B, in [−1, 1]),
      ci_low / ci_high (goal-clustered bootstrap 95% percentile interval of the difference),
      wins (A succeeded, B failed), losses (B succeeded, A failed), p_sign (exact two-sided
      sign test over wins and losses).
    Raises:
      ValueError naming the unmatched episodes when the key sets differ.
    """
    if set(a) != set(b):
        only_a, only_b = sorted(set(a) - set(b), key=str), sorted(set(b) - set(a), key=str)
        raise ValueError(f"A paired comparison needs the same (goal, seed) episodes on both "
                         f"sides; only in A: {only_a[:5]}, only in B: {only_b[:5]}.")
    if not a:
        raise ValueError("A paired comparison needs at least one episode.")
    keys = sorted(a, key=str)
    diff = {k: float(a[k]) - float(b[k]) for k in keys}
    goals = sorted({k[0] for k in keys}, key=str)
    # Per goal: the sum of differences over its seeds and its episode count.
    sums = np.array([sum(d for k, d in diff.items() if k[0] == g) for g in goals])
    counts = np.array([sum(1 for k in keys if k[0] == g) for g in goals], np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(goals), size=(samples, len(goals)))
    boot = sums[idx].sum(axis=1) / counts[idx].sum(axis=1)
    wins = sum(1 for d in diff.values() if d > 0)
    losses = sum(1 for d in diff.values() if d < 0)
    return {"pairs": len(keys), "goals": len(goals),
            "difference": float(np.mean(list(diff.values()))),
            "ci_low": float(np.percentile(boot, 2.5)), "ci_high": float(np.percentile(boot, 97.5)),
            "wins": wins, "losses": losses, "p_sign": sign_test_p(wins, losses)}


def spearman(a, b) -> float:
    """Spearman rank correlation of two equal-length 1-D arrays (float in [−1, 1]).

    0.0 when either array is constant (it ranks nothing, so it correlates with nothing), which
    scipy would report as NaN with a ConstantInputWarning.
    """
    from scipy import stats as scipy_stats  # pylint: disable=g-import-not-at-top

    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"spearman needs arrays of one length; got {a.shape} and {b.shape}.")
    if a.size < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    rho = scipy_stats.spearmanr(a, b).correlation
    return float(rho) if np.isfinite(rho) else 0.0
