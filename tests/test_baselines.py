"""Baseline distances (temporal regression, VAE, pixel ℓ2), GCBC and the quality measures."""
import dataclasses
import os

import gin
import numpy as np
import pytest
from PIL import Image

from mbold_tf.agents import checkpoints
from mbold_tf.data import neighbors
from mbold_tf.eval import distance_quality as dq
from mbold_tf.models import baselines
from mbold_tf.training import distance as td
from tests.test_distance import bar_image, chain_arrays

SMALL = baselines.baseline_settings(encoder_filters=(4, 8), temporal_fc_layers=1,
                                    temporal_units=16, vae_latent_dim=6, vae_units=16,
                                    gcbc_fc_layers=1, gcbc_units=16)


def _imgs(b=3, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (b, 64, 64, 3), dtype=np.uint8),
            rng.integers(0, 256, (b, 64, 64, 3), dtype=np.uint8))


def test_pixel_distance_exact():
    a, b = _imgs()
    d = baselines.pixel_distance(a, b).numpy()
    want = ((a / 255.0 - b / 255.0) ** 2).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(d, want, rtol=1e-5)
    np.testing.assert_allclose(baselines.pixel_distance(a, a), 0.0)
    np.testing.assert_allclose(baselines.PixelDistance().distance(a.astype(np.float32) / 255, b),
                               want, rtol=1e-5)
    with pytest.raises(ValueError, match=r"goal image must be \[B,64,64,3\]"):
        baselines.pixel_distance(a, b[:, :32])


def test_baseline_shapes_dtypes_and_ranges():
    a, b = _imgs()
    af, bf = a.astype(np.float32) / 255, b.astype(np.float32) / 255
    temporal = baselines.TemporalDistanceModel(SMALL)
    assert temporal.distance(a, b).shape == (3,)
    np.testing.assert_allclose(temporal.distance(a, b), temporal.distance(af, bf), rtol=1e-4,
                               atol=1e-5)
    vae = baselines.VAE(SMALL)
    assert vae.encode(a).shape == (3, 6)
    np.testing.assert_allclose(vae.distance(a, a), 0.0, atol=1e-5)
    np.testing.assert_allclose(vae.distance(a, b), np.linalg.norm(vae.encode(a) - vae.encode(b),
                                                                  axis=1), rtol=1e-4)
    recon, _, _ = vae(af)
    assert recon.shape == (3, 64, 64, 3)
    gcbc = baselines.GCBCPolicy(SMALL)
    act = gcbc.action(a, b).numpy()
    assert act.shape == (3, 4) and np.all(np.abs(act) <= 1)
    with pytest.raises(ValueError, match="image must be"):
        gcbc.action(a[0], b)


def test_temporal_regression_learns_chain_offsets(tmp_path):
    gin.clear_config()
    for k, v in dict(encoder_filters=(8, 16), temporal_fc_layers=2, temporal_units=32).items():
        gin.bind_parameter(f"baseline_settings.{k}", v)
    try:
        arrays = chain_arrays(num_episodes=40, length=8, walk=False)  # bar position = time
        root = str(tmp_path / "temporal")
        td.train_distance(root, method="temporal", arrays=arrays, total_steps=300,
                          batch_size=32, learning_rate=1e-3, checkpoint_every=300,
                          log_every=300)
        model = checkpoints.load_distance(root)
        assert isinstance(model, baselines.TemporalDistanceModel)
        near = model.distance(bar_image(3)[None], bar_image(4)[None]).numpy()[0]  # label 1
        far = model.distance(bar_image(0)[None], bar_image(7)[None]).numpy()[0]  # label 7
        assert far > near + 1.0, (near, far)
        with pytest.raises(ValueError, match="load_gcbc|not 'gcbc'"):
            checkpoints.load_gcbc(root)
    finally:
        gin.clear_config()


def test_roc_auc_exact():
    assert dq.roc_auc([2, 3], [1]) == 1.0
    assert dq.roc_auc([1], [2, 3]) == 0.0
    assert dq.roc_auc([1, 1], [1, 1]) == 0.5
    assert dq.roc_auc([0, 2], [1]) == 0.5


def test_evaluate_distance_on_chain_with_pixel_and_oracle():
    arrays = chain_arrays(num_episodes=30, length=8, walk=False)  # bar position = time
    table = neighbors.neighbor_table(arrays, k=2)

    class Oracle:  # |Δ position| read off the bar: exact offsets, blind to other episodes
        def distance(self, image, goal):
            pos = lambda x: np.argmax(np.asarray(x)[:, 0, :, 0], axis=1) // 8
            return np.abs(pos(image) - pos(goal)).astype(np.float32)

    res = dq.evaluate_distance(Oracle(), arrays, table, num_pairs=300)
    assert res["spearman"] == pytest.approx(1.0)
    # hard negatives share the bar position (the proprio key) → distance 0 < reached: AUC 0
    assert res["auc"] < 0.05
    np.testing.assert_allclose(res["mean_distance_by_offset"][:7], np.arange(1, 8))
    assert len(res["mean_distance_by_offset"]) == 10  # NaN where no pair has that offset
    text = dq.format_table([{"method": "oracle", **res}])
    assert "oracle" in text and "AUC" in text


def test_geometric_reference_and_oracle():
    arrays = chain_arrays(num_episodes=30, length=8, walk=False)  # bar position = time
    # privileged "end effector" at the bar position (1/8 m per step: exact in binary, so equal
    # offsets give equal displacements), and a second key that never moves
    pos = arrays.proprio[:, 0].astype(np.float64)
    ee = np.stack([pos / 8, 0 * pos, 0 * pos], 1)
    arrays = dataclasses.replace(arrays, privileged={"ee_pos": ee,
                                                     "block_pos": np.ones((len(pos), 1, 3))})
    np.testing.assert_allclose(dq.geometric_distance(arrays, np.array([0, 0]), np.array([3, 7])),
                               [3 / 8, 7 / 8])
    table = neighbors.neighbor_table(arrays, k=2)
    oracle = dq.evaluate_distance(dq.GeometricOracle(arrays), arrays, table, num_pairs=300)
    assert oracle["spearman"] == pytest.approx(1.0)  # displacement = offset on this chain
    assert oracle["spearman_geometric"] == pytest.approx(1.0)
    pixel = dq.evaluate_distance(baselines.PixelDistance(), arrays, table, num_pairs=300)
    # displacement ∝ offset here, so ρ against either is the same for any distance
    assert pixel["spearman_geometric"] == pytest.approx(pixel["spearman"])
    with pytest.raises(ValueError, match="no privileged state"):
        dq.geometric_distance(dataclasses.replace(arrays, privileged={}), np.array([0]), np.array([1]))


def test_heatmap_minimum_at_the_goal_for_pixel_distance(tmp_path):
    path = str(tmp_path / "heatmap_pixel.png")
    out = dq.distance_heatmap(baselines.PixelDistance(), path, goal_xy=(0.1, -0.1),
                              resolution=5, cell=4)
    assert out["distances"].shape == (5, 5)
    assert out["argmin_error_m"] < 1e-6  # the goal position is on the grid: identical image
    img = np.asarray(Image.open(path))
    assert img.shape[0] == 20 and img.shape[2] == 3
    assert os.path.getsize(path) > 100
    colors = dq.colormap(np.array([0.0, 1.0]))
    assert colors.dtype == np.uint8 and not np.array_equal(colors[0], colors[1])
