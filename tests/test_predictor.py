"""Video predictor, its training and evaluation. Tiny configs, CPU."""
import json
import os
import shutil

import gin
import numpy as np
import pytest
import tensorflow as tf

from mbold_tf.data import build as build_lib
from mbold_tf.data import pipelines
from mbold_tf.data import rlds
from mbold_tf.eval import predictor_eval
from mbold_tf.models import video_predictor as vp
from mbold_tf.training import predictor as tp
from mbold_tf.utils import run_config

TINY = dict(context=1, horizon=4, width=4, norm="none", transform="cdna", num_transformed=1,
            full_resolution_heads=False, schedule_k=10.0)
GIN_TINY = os.path.join(os.path.dirname(__file__), "..", "gin", "presets", "tiny",
                        "predictor.gin")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("tfds"))
    build_lib.build("push1_tiny", d)
    return d


@pytest.fixture(scope="module")
def arrays(data_dir):
    return rlds.load_episodes("mbold_tabletop/push1_tiny", "train", data_dir=data_dir)


@pytest.fixture(scope="module")
def model():
    tf.keras.utils.set_random_seed(0)
    return vp.VideoPredictor(**TINY).build_variables()


def _inputs(b, h=4, seed=0):
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (b, 1, 64, 64, 3), dtype=np.uint8)
    actions = rng.uniform(-1, 1, (b, h, 4)).astype(np.float32)
    return frames, actions


def test_predict_shapes_range_and_one_trace_for_any_batch(model):
    for b in (1, 3, 5):
        frames, actions = _inputs(b)
        out = model.predict(frames, actions)
        assert out.dtype == tf.float32 and out.shape == (b, 4, 64, 64, 3)
        out = out.numpy()
        assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0
    assert model._predict_fn.experimental_get_tracing_count() == 1
    # Keras call and predict agree (both closed loop).
    frames, actions = _inputs(2)
    np.testing.assert_allclose(model((frames, actions)).numpy(),
                               model.predict(frames, actions).numpy(), atol=1e-5)


@pytest.mark.parametrize("frames_shape,frames_dtype,actions_shape,match", [
    ((2, 1, 32, 32, 3), np.uint8, (2, 4, 4), r"\[2, 1, 32, 32, 3\].*\[B, 1, 64, 64, 3\]"),
    ((2, 1, 64, 64, 3), np.float32, (2, 4, 4), r"float32.*expected uint8"),
    ((2, 2, 64, 64, 3), np.uint8, (2, 4, 4), r"\[2, 2, 64, 64, 3\].*\[B, 1, 64, 64, 3\]"),
    ((2, 1, 64, 64, 3), np.uint8, (2, 5, 4), r"\[2, 5, 4\].*\[B, h, 4\], 1 <= h <= 4"),
    ((2, 1, 64, 64, 3), np.uint8, (2, 0, 4), r"\[2, 0, 4\].*\[B, h, 4\], 1 <= h <= 4"),
    ((2, 1, 64, 64, 3), np.uint8, (2, 4, 3), r"\[2, 4, 3\].*\[B, h, 4\]"),
])
def test_bad_inputs_name_shapes(model, frames_shape, frames_dtype, actions_shape, match):
    frames = np.zeros(frames_shape, frames_dtype)
    actions = np.zeros(actions_shape, np.float32)
    with pytest.raises(ValueError, match=match):
        model.predict(frames, actions)


def test_fewer_frames_are_the_prefix_of_the_full_prediction(model):
    """A planner with a shorter horizon than the predictor's asks for fewer frames: they are the
    first frames of the full closed-loop prediction, and each length compiles once."""
    frames, actions = _inputs(3)
    full = model.predict(frames, actions).numpy()
    for h in (1, 2, 3):
        short = model.predict(frames, actions[:, :h])
        assert short.shape == (3, h, 64, 64, 3)
        np.testing.assert_allclose(short.numpy(), full[:, :h], atol=1e-5)
    model.predict(frames[:1], actions[:1, :2])
    assert model._predict_fn_for(2).experimental_get_tracing_count() == 1
    # Inside a graph (the planner's tf.function) too.
    fn = tf.function(lambda f, a: model.predict(f, a))
    np.testing.assert_allclose(fn(tf.constant(frames), tf.constant(actions[:, :2])).numpy(),
                               full[:, :2], atol=1e-5)


def test_nan_actions_raise(model):
    frames, actions = _inputs(2)
    actions[1, 2, 0] = np.nan
    with pytest.raises(ValueError, match=r"\[2, 4, 4\].*NaN"):
        model.predict(frames, actions)
    # Inside a graph the in-graph assert fires.
    fn = tf.function(lambda f, a: model.predict(f, a))
    with pytest.raises(tf.errors.InvalidArgumentError, match="NaN"):
        fn(tf.constant(frames), tf.constant(actions))


def test_untrained_predictions_depend_on_actions(model):
    frames, actions = _inputs(2)
    a = model.predict(frames, actions).numpy()
    b = model.predict(frames, -actions).numpy()
    assert np.abs(a - b).max() > 1e-4


def test_scheduled_sampling_schedule():
    p = [float(vp.ground_truth_probability(s, 900.0)) for s in (0, 3000, 6122, 20000)]
    assert p[0] == pytest.approx(900 / 901) and p[0] > p[1] > p[2] > p[3]
    assert p[2] == pytest.approx(0.5, abs=0.01) and p[3] < 1e-6
    assert float(vp.ground_truth_probability(10, 0.0)) == 0.0


def test_teacher_forcing_feeds_ground_truth(model):
    """With p = 1 the input of step t+1 is the true frame: predictions change with the targets."""
    rng = np.random.default_rng(1)
    frames = tf.constant(rng.uniform(size=(2, 1, 64, 64, 3)), tf.float32)
    actions = tf.zeros([2, 4, 4])
    t1 = tf.constant(rng.uniform(size=(2, 4, 64, 64, 3)), tf.float32)
    t2 = tf.constant(rng.uniform(size=(2, 4, 64, 64, 3)), tf.float32)
    a, _ = model.unroll(frames, actions, t1, 1.0)
    b, _ = model.unroll(frames, actions, t2, 1.0)
    closed_a, _ = model.unroll(frames, actions, t1, 0.0)
    closed_b, _ = model.unroll(frames, actions, t2, 0.0)
    np.testing.assert_allclose(a[:, 0], b[:, 0], atol=1e-6)  # first step: same input
    assert np.abs(a[:, 1:] - b[:, 1:]).max() > 1e-3
    np.testing.assert_allclose(closed_a, closed_b, atol=1e-6)


@pytest.mark.parametrize("transform,stochastic", [("dna", False), ("flow", False),
                                                  ("cdna", True)])
def test_other_transforms_and_stochastic_variant(transform, stochastic):
    m = vp.VideoPredictor(**dict(TINY, transform=transform, stochastic=stochastic,
                                 full_resolution_heads=transform != "cdna", latent_dim=2))
    m.build_variables()
    frames, actions = _inputs(2)
    out = m.predict(frames, actions).numpy()
    assert out.shape == (2, 4, 64, 64, 3) and 0.0 <= out.min() and out.max() <= 1.0
    if stochastic:
        targets = tf.random.uniform([2, 4, 64, 64, 3])
        _, kl = m.unroll(tf.cast(frames, tf.float32) / 255., actions, targets, 0.5,
                         training=True)
        assert float(kl) >= 0.0 and np.isfinite(float(kl))


def _fixed_batch(arrays, h=4):
    return next(iter(pipelines.predictor_dataset(arrays, batch_size=32, context=1, horizon=h,
                                                 seed=99)))


def _mse(predictor, batch):
    pred = predictor.predict(batch["images"][:, :1], batch["actions"])
    real = tf.cast(batch["images"][:, 1:], tf.float32) / 255.0
    return float(tf.reduce_mean(tf.square(pred - real)))


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, data_dir, arrays):
    """Trains the tiny preset 40 steps (checkpoint every 10), then resumes to 80."""
    root = str(tmp_path_factory.mktemp("run"))
    gin.clear_config()
    gin.parse_config_file(GIN_TINY)
    gin.bind_parameter("train_predictor.data_dir", data_dir)
    try:
        tf.keras.utils.set_random_seed(0)
        first = tp.PredictorTrainer(root, "mbold_tabletop/push1_tiny", data_dir, 40, 4, 3e-3,
                                    "l2", 0, 10, 5, 5, "float32")
        batch = _fixed_batch(arrays)
        mse_before = _mse(first.model, batch)
        result_first = first.train()
        mse_after = _mse(first.model, batch)
        saved = [v.numpy() for v in first.model.variables]
        # A second process: restore, compare, then train on to 80 steps.
        second = tp.PredictorTrainer(root, "mbold_tabletop/push1_tiny", data_dir, 80, 4, 3e-3,
                                     "l2", 0, 10, 5, 5, "float32")
        restored_from = second.loop.restore()
        restored = [v.numpy() for v in second.model.variables]
        restored_step = int(second.step.numpy())
        restored_iterations = int(second.optimizer.iterations.numpy())
        result_second = second.train()
    finally:
        gin.clear_config()
    return dict(root=root, mse_before=mse_before, mse_after=mse_after, saved=saved,
                restored=restored, restored_step=restored_step,
                restored_from=restored_from, restored_iterations=restored_iterations,
                first=result_first, second=result_second, batch=batch)


def test_loss_falls(trained_run):
    r = trained_run
    assert r["first"]["step"] == 40 and np.isfinite(r["first"]["loss"])
    assert r["mse_after"] < 0.6 * r["mse_before"], (r["mse_before"], r["mse_after"])


def test_resume_restores_step_and_exact_weights(trained_run):
    r = trained_run
    assert r["restored_from"].endswith("ckpt-40")
    assert r["restored_step"] == 40 and r["restored_iterations"] == 40
    assert len(r["saved"]) == len(r["restored"]) > 10
    for i, (saved, restored) in enumerate(zip(r["saved"], r["restored"])):
        np.testing.assert_array_equal(restored, saved, err_msg=f"variable {i}")
    assert r["second"]["step"] == 80
    assert tf.train.latest_checkpoint(os.path.join(r["root"], "ckpt")).endswith("ckpt-80")
    # The resumed run did 40 steps, not 80.
    ckpt = tf.train.load_checkpoint(os.path.join(r["root"], "ckpt"))
    assert ckpt.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE") == 80
    iteration_keys = [k for k in ckpt.get_variable_to_shape_map()
                      if k.startswith("optimizer/") and "iter" in k]
    assert iteration_keys and all(ckpt.get_tensor(k) == 80 for k in iteration_keys)


def test_load_predictor_and_evaluation(trained_run, arrays, tmp_path):
    r = trained_run
    predictor = vp.load_predictor(r["root"])
    stored = dict(run_config.read_config(r["root"], vp.KIND))
    assert stored.pop(vp.TRAINING_KEY) == {"loss": "l2", "learning_rate": 3e-3, "batch_size": 4}
    assert predictor.settings() == stored
    vp.load_predictor(r["root"], expect=predictor.settings())  # the model's settings match
    mse = _mse(predictor, r["batch"])
    assert mse < 0.6 * r["mse_before"]
    result = predictor_eval.evaluate_predictor(predictor, arrays, num_batches=2, batch_size=8,
                                               seed=0)
    json.dumps(result)
    assert result["windows"] == 16 and len(result["model"]["mse"]) == 4
    for name in ("model", "copy_last"):
        assert result[name]["mse_mean"] == pytest.approx(np.mean(result[name]["mse"]))
        assert all(0.0 < s <= 1.0 for s in result[name]["ssim"])
    # Copy-last error grows with the prediction step (things move).
    assert result["copy_last"]["mse"][-1] > result["copy_last"]["mse"][0]
    assert result["relative_mse_improvement"] == pytest.approx(
        1 - result["model"]["mse_mean"] / result["copy_last"]["mse_mean"])
    table = predictor_eval.format_table(result)
    assert "copy" in table and len(table.splitlines()) == 4 + 5
    path = str(tmp_path / "strip.png")
    real = r["batch"]["images"][:2, 1:].numpy()
    predictor_eval.save_strip(path, real, predictor.predict(r["batch"]["images"][:2, :1],
                                                            r["batch"]["actions"][:2]).numpy())
    from PIL import Image
    img = np.asarray(Image.open(path))
    assert img.shape == (2 * 2 * 64, 4 * 64, 3)
    np.testing.assert_array_equal(img[:64, :64], real[0, 0])


def test_trained_model_follows_actions(trained_run):
    """A zero-motion sequence keeps the scene more static than a large move."""
    predictor = vp.load_predictor(trained_run["root"])
    frames = trained_run["batch"]["images"][:16, :1]
    still = np.zeros([16, 4, 4], np.float32)
    move = np.tile(np.array([1.0, 1.0, 0.0, 0.0], np.float32), [16, 4, 1])
    start = tf.cast(frames, tf.float32) / 255.0
    change_still = float(tf.reduce_mean(tf.abs(predictor.predict(frames, still) - start)))
    change_move = float(tf.reduce_mean(tf.abs(predictor.predict(frames, move) - start)))
    assert change_move > 1.2 * change_still, (change_still, change_move)


def test_a_gin_binding_a_loaded_predictor_would_ignore_fails(trained_run):
    """A model is built from its record: a VideoPredictor binding in effect that differs from it
    is refused naming it; one that agrees is fine."""
    gin.clear_config()
    try:
        gin.bind_parameter("VideoPredictor.width", TINY["width"])
        vp.load_predictor(trained_run["root"])
        gin.bind_parameter("VideoPredictor.width", TINY["width"] + 2)
        with pytest.raises(run_config.ConfigMismatchError,
                           match=r"VideoPredictor.width = 6 \(trained with 4\)"):
            vp.load_predictor(trained_run["root"])
    finally:
        gin.clear_config()


def test_other_config_fails_naming_the_setting(trained_run, data_dir):
    root = trained_run["root"]
    other = vp.VideoPredictor(**dict(TINY, width=6)).settings()
    with pytest.raises(run_config.ConfigMismatchError, match=r"width: 4 \(checkpoint\) vs 6"):
        vp.load_predictor(root, expect=other)
    gin.clear_config()
    gin.parse_config_file(GIN_TINY)
    gin.bind_parameter("VideoPredictor.num_transformed", 2)
    try:
        with pytest.raises(run_config.ConfigMismatchError, match="num_transformed: 1"):
            tp.train_predictor(root, data_dir=data_dir)
        gin.clear_config()
        gin.parse_config_file(GIN_TINY)
        # Resuming with another loss would mix two trainings in one run: refused.
        with pytest.raises(run_config.ConfigMismatchError,
                           match=r"training: \{.*'loss': 'l2'.*\} \(checkpoint\) vs .*'l1'"):
            tp.PredictorTrainer(root, "mbold_tabletop/push1_tiny", data_dir, 90, 4, 3e-3, "l1",
                                0, 10, 5, 5, "float32")
    finally:
        gin.clear_config()


def test_hard_windows_are_scored_saved_and_settings_checked(data_dir, tmp_path):
    root = str(tmp_path / "hard")
    gin.clear_config()
    gin.parse_config_file(GIN_TINY)
    try:
        tf.keras.utils.set_random_seed(0)
        trainer = tp.PredictorTrainer(root, "mbold_tabletop/push1_tiny", data_dir, 7, 4, 3e-3,
                                      "l2", 0, 10, 5, 5, "float32", hard_window_share=0.5,
                                      rescore_every=3)
        assert trainer.train()["step"] == 7
        # Scored at steps 3 and 6, each time every training window.
        names = sorted(os.listdir(os.path.join(root, "hard_windows")))
        assert names == ["step_0000003.npz", "step_0000006.npz"]
        arrays = trainer.arrays("train")
        starts = pipelines.predictor_window_starts(arrays, 1, 4)
        saved = np.load(os.path.join(root, "hard_windows", names[-1]))
        np.testing.assert_array_equal(saved["starts"], starts)
        assert saved["mse"].shape == starts.shape and (saved["mse"] > 0).all()
        first = np.load(os.path.join(root, "hard_windows", names[0]))["mse"]
        assert not np.allclose(first, saved["mse"])  # rescored with the newer weights
        # The score of a window is its closed-loop MSE from its own frames and actions.
        losses = tp.window_losses(trainer.model, arrays, batch_size=50)
        for j in (0, 77, starts.size - 1):
            s = starts[j]
            pred = trainer.model.predict(arrays.images[None, s:s + 1],
                                         arrays.actions[None, s:s + 4]).numpy()
            real = arrays.images[s + 1:s + 5].astype(np.float32) / 255.0
            assert losses[j] == pytest.approx(np.mean(np.square(pred[0] - real)), rel=1e-4)
        assert losses.std() > 0.05 * losses.mean()
        # Either setting without the other would do nothing: refused, naming both.
        for share, every in [(0.5, 0), (0.0, 5), (1.0, 5)]:
            with pytest.raises(ValueError, match="train_predictor.hard_window_share"):
                tp.PredictorTrainer(str(tmp_path / "bad"), "mbold_tabletop/push1_tiny",
                                    data_dir, 7, 4, 3e-3, "l2", 0, 10, 5, 5, "float32",
                                    hard_window_share=share, rescore_every=every)
    finally:
        gin.clear_config()


def test_training_draws_the_scored_windows(data_dir, tmp_path, monkeypatch):
    """After a rescore, the batches trained on come from the weights: all weight on one window
    puts it in the weighted half of every batch."""
    heavy = 40
    monkeypatch.setattr(tp, "window_losses", lambda model, arrays: np.eye(
        pipelines.predictor_window_starts(arrays, 1, 4).size)[heavy].astype(np.float32))
    drawn = []
    real_dataset = pipelines.predictor_dataset

    def recording_dataset(*args, **kwargs):
        ds = real_dataset(*args, **dict(kwargs, with_step_index=True))

        def record(batch):
            def py(rows):
                drawn.append((kwargs.get("window_weights") is not None, rows.numpy()))
                return rows
            tf.py_function(py, [batch["step_index"][:, 0]], tf.int64)
            return {"images": batch["images"], "actions": batch["actions"]}
        return ds.map(record)

    monkeypatch.setattr(pipelines, "predictor_dataset", recording_dataset)
    gin.clear_config()
    gin.parse_config_file(GIN_TINY)
    try:
        trainer = tp.PredictorTrainer(str(tmp_path / "drawn"), "mbold_tabletop/push1_tiny",
                                      data_dir, 6, 4, 3e-3, "l2", 0, 10, 5, 5, "float32",
                                      hard_window_share=0.5, rescore_every=3)
        trainer.train()
    finally:
        gin.clear_config()
    row = pipelines.predictor_window_starts(trainer.arrays("train"), 1, 4)[heavy]
    weighted = [rows for from_weights, rows in drawn if from_weights]
    assert weighted and all((rows[:2] == row).all() for rows in weighted)
    assert not any((rows[:2] == row).all() for from_weights, rows in drawn if not from_weights)


@pytest.mark.skipif(bool(tf.config.list_logical_devices("GPU")), reason="CPU behaviour")
def test_mixed_float16_without_a_gpu_fails_naming_the_setting(tmp_path):
    with pytest.raises(ValueError, match=r"train_predictor.precision='float32'"):
        tp.PredictorTrainer(str(tmp_path), "unused", None, 1, 2, 1e-3, "l2", 0, 10, 10, 10,
                            "mixed_float16")


def test_unknown_loss_fails(tmp_path):
    with pytest.raises(ValueError, match="'l3'"):
        tp.reconstruction_loss(tf.zeros([1]), tf.zeros([1]), "l3")


def test_a_checkpoint_with_non_finite_weights_fails_to_load(trained_run, tmp_path):
    root = str(tmp_path / "ruined")
    shutil.copytree(trained_run["root"], root)
    model = vp.load_predictor(root)
    model.variables[0].assign(tf.fill(model.variables[0].shape, np.nan))
    tf.train.Checkpoint(model=model).save(os.path.join(root, "ckpt", "ruined"))  # the latest
    with pytest.raises(ValueError, match="ruined-1 holds non-finite weights"):
        vp.load_predictor(root)
