"""CEM optimizer."""
import numpy as np
import pytest
import tensorflow as tf

from mbold_tf.planning import cem


def test_cem_finds_quadratic_optimum():
    target = tf.constant(np.random.default_rng(0).uniform(-0.6, 0.6, (5, 2)), tf.float32)
    cost = lambda a: tf.reduce_sum((a - target) ** 2, axis=[1, 2])
    cfg = cem.CEMConfig(num_samples=400, num_elites=20, iterations=8, horizon=5)
    plan = tf.function(lambda s: cem.cem(cost, tf.zeros([5, 2]), tf.constant([0.8, 0.8]), s,
                                         cfg))
    best, best_cost = plan(tf.constant([1, 2]))
    np.testing.assert_allclose(best.numpy(), target.numpy(), atol=0.12)
    random_cost = cost(cem.correlated_samples(tf.zeros([5, 2]), tf.constant([0.8, 0.8]), 400,
                                              0.5, tf.constant([3, 4]))).numpy()
    assert best_cost < 0.05 * np.median(random_cost)
    again, _ = plan(tf.constant([1, 2]))
    np.testing.assert_array_equal(again.numpy(), best.numpy())  # same seed, same plan


def test_authors_refit_improves_cost_too():
    target = tf.constant([[0.5, -0.5]] * 4)
    cost = lambda a: tf.reduce_sum((a - target) ** 2, axis=[1, 2])
    cfg = cem.CEMConfig(num_samples=200, num_elites=10, iterations=3, horizon=4, refit="authors")
    _, c3 = cem.cem(cost, tf.zeros([4, 2]), tf.constant([0.6, 0.6]), tf.constant([0, 1]), cfg)
    _, c1 = cem.cem(cost, tf.zeros([4, 2]), tf.constant([0.6, 0.6]), tf.constant([0, 1]),
                    cem.CEMConfig(num_samples=200, num_elites=10, iterations=1, horizon=4))
    assert c3 <= c1


def test_correlated_samples_statistics_and_bounds():
    s = cem.correlated_samples(tf.zeros([30, 2]), tf.constant([0.6, 0.3]), 4000, 0.5,
                               tf.constant([0, 0])).numpy()
    assert s.min() >= -1 and s.max() <= 1
    np.testing.assert_allclose(s[:, 10:].std(axis=(0, 1)), np.array([0.6, 0.3]) / np.sqrt(3),
                               rtol=0.05)
    lag1 = np.corrcoef(s[:, 10:-1, 0].ravel(), s[:, 11:, 0].ravel())[0, 1]
    assert abs(lag1 - 0.5) < 0.05


def test_bad_refit_rule():
    with pytest.raises(ValueError, match="'median'"):
        cem.CEMConfig(refit="median")
