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


@pytest.mark.parametrize("refit", ["gaussian", "authors"])
def test_refit_moves_the_next_samples_to_the_elites(refit):
    """The second iteration samples around the first iteration's elites (their mean, or their
    exp(-cost)-weighted mean for 'authors'); 'gaussian' also shrinks the spread to theirs,
    'authors' keeps the initial std."""
    target = np.array([[0.3, -0.3]] * 3, np.float32)
    seen = []

    def cost(actions):
        seen.append(actions.numpy())
        return tf.reduce_sum((actions - target) ** 2, axis=[1, 2])

    cfg = cem.CEMConfig(num_samples=4000, num_elites=200, iterations=2, horizon=3, refit=refit)
    cem.cem(cost, tf.zeros([3, 2]), tf.constant([0.2, 0.2]), tf.constant([5, 6]), cfg)
    first, second = seen
    costs = ((first - target) ** 2).sum(axis=(1, 2))
    idx = np.argsort(costs)[:200]
    if refit == "authors":
        w = np.exp(-(costs[idx] - costs[idx].min()))
        expected = np.einsum("k,kha->ha", w / w.sum(), first[idx])
    else:
        expected = first[idx].mean(axis=0)
    assert np.abs(expected).max() > 0.05  # the elites lie away from the initial mean 0
    np.testing.assert_allclose(second.mean(axis=0), expected, atol=0.015)
    ratio = second.std(axis=0).mean() / first.std(axis=0).mean()
    if refit == "authors":
        assert abs(ratio - 1.0) < 0.05, ratio
    else:
        assert ratio < 0.8, ratio


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


def test_the_default_config_is_the_gin_one_at_call_time():
    """Without a config, cem() and MPCPolicy build CEMConfig when called, so gin bindings parsed
    after import take effect (a default built at import would keep N = 200)."""
    import gin
    from mbold_tf.envs import goal_env
    from mbold_tf.planning import mpc_policy

    sizes = []

    def cost(actions):
        sizes.append(int(actions.shape[0]))
        return tf.reduce_sum(tf.square(actions), axis=[1, 2])

    gin.clear_config()
    try:
        gin.parse_config(["CEMConfig.num_samples = 12", "CEMConfig.num_elites = 3",
                          "CEMConfig.iterations = 1", "CEMConfig.horizon = 2"])
        cem.cem(cost, tf.zeros([2, 4]), tf.ones([4]), tf.constant([0, 1]))
        time_step_spec, action_spec = goal_env.tf_specs()
        policy = mpc_policy.MPCPolicy(time_step_spec, action_spec, lambda obs, a: a,
                                      lambda pred, obs, a: tf.zeros([tf.shape(a)[0]]),
                                      init_std=[0.5] * 4, replan_every=2)
    finally:
        gin.clear_config()
    assert sizes == [12]
    assert policy._config.num_samples == 12 and policy._config.horizon == 2
