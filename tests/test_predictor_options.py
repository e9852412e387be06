"""Predictor options: the robot's state as input and output, the motion-weighted loss, bf16.

Tiny configs, CPU.
"""
import os

import gin
import numpy as np
import pytest
import tensorflow as tf

from mbold_tf.data import build as build_lib
from mbold_tf.data import rlds
from mbold_tf.models import video_predictor as vp
from mbold_tf.planning import costs
from mbold_tf.training import predictor as tp
from mbold_tf.utils import precision
from mbold_tf.utils import run_config

from tests.test_predictor import GIN_TINY, TINY


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("tfds"))
    build_lib.build("push1_tiny", d)
    return d


@pytest.fixture(scope="module")
def state_model():
    tf.keras.utils.set_random_seed(0)
    model = vp.VideoPredictor(**TINY, state_conditioned=True, state_dim=7).build_variables()
    # The state head starts at "no change"; give it weights so states move the prediction.
    for v in model._state_head.trainable_variables:  # pylint: disable=protected-access
        v.assign(tf.random.normal(v.shape, stddev=0.5, seed=1))
    return model


def _inputs(b, h=4, seed=0):
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (b, 1, 64, 64, 3), dtype=np.uint8)
    actions = rng.uniform(-1, 1, (b, h, 4)).astype(np.float32)
    states = rng.normal(size=(b, 1, 7)).astype(np.float32)
    return frames, actions, states


# ------------------------------------------------------------------ the state path
def test_state_changes_the_predicted_frames_and_states(state_model):
    frames, actions, states = _inputs(2)
    a, sa = state_model.predict_with_states(frames, actions, states)
    b, sb = state_model.predict_with_states(frames, actions, states + 1.0)
    assert a.shape == (2, 4, 64, 64, 3) and sa.shape == (2, 4, 7)
    assert np.abs(a.numpy() - b.numpy()).max() > 1e-4
    assert np.abs(sa.numpy() - sb.numpy()).max() > 1e-3
    # predict returns the frames of predict_with_states; the Keras call agrees.
    np.testing.assert_allclose(state_model.predict(frames, actions, states).numpy(), a.numpy(),
                               atol=1e-6)
    np.testing.assert_allclose(state_model((frames, actions, states)).numpy(), a.numpy(),
                               atol=1e-5)


def test_state_inputs_are_checked(state_model):
    frames, actions, states = _inputs(2)
    with pytest.raises(ValueError, match=r"state-conditioned.*states=float32 \[B, 1, 7\]"):
        state_model.predict(frames, actions)
    with pytest.raises(ValueError, match=r"\[2, 1, 5\].*float32 \[B, 1, 7\]"):
        state_model.predict(frames, actions, states[..., :5])
    image_only = vp.VideoPredictor(**TINY).build_variables()
    with pytest.raises(ValueError, match="image-only"):
        image_only.predict(frames, actions, states)
    with pytest.raises(ValueError, match="state_conditioned = True with state_dim = 0"):
        vp.VideoPredictor(**TINY, state_conditioned=True)


def test_planner_model_fn_feeds_the_observed_joint_state(state_model):
    frames, actions, states = _inputs(2)
    model_fn = costs.predictor_model_fn(state_model)
    obs = {"image": tf.constant(frames[:, 0]), "joint_pos": tf.constant(states[:, 0])}
    np.testing.assert_allclose(model_fn(obs, tf.constant(actions)).numpy(),
                               state_model.predict(frames, actions, states).numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="no 'joint_pos'"):
        model_fn({"image": tf.constant(frames[:, 0])}, tf.constant(actions))


def test_state_conditioned_training_takes_the_size_from_the_data_and_learns_states(
        data_dir, tmp_path):
    gin.clear_config()
    gin.parse_config_files_and_bindings([GIN_TINY], [
        f"train_predictor.data_dir = '{data_dir}'", "train_predictor.total_steps = 30",
        "train_predictor.learning_rate = 0.01", "VideoPredictor.state_conditioned = True"])
    try:
        root = str(tmp_path / "run")
        trainer = tp.PredictorTrainer(root, "mbold_tabletop/push1_tiny", data_dir, 30, 4, 1e-2,
                                      "l2", 0, 10, 5, 5)
        assert trainer.model.state_dim == 7 and trainer.model.state_conditioned
        first = None
        batch = next(iter(trainer._dataset(trainer.arrays("train"), 4, 0)))  # pylint: disable=protected-access
        assert batch["proprio"].shape == (4, 5, 7)
        step = tf.function(lambda b: trainer._replica_step(b, trainer.step))  # pylint: disable=protected-access
        for _ in range(30):
            out = step(batch)
            first = float(out["state_mse"]) if first is None else first
        assert float(out["state_mse"]) < 0.5 * first
        settings = trainer._record  # pylint: disable=protected-access  (written by train())
        assert settings["state_conditioned"] and settings["state_dim"] == 7
        assert settings[vp.TRAINING_KEY]["state_loss_weight"] == 1.0
    finally:
        gin.clear_config()


def test_a_state_checkpoint_loaded_as_image_only_fails_naming_the_setting(data_dir, tmp_path):
    gin.clear_config()
    gin.parse_config_files_and_bindings([GIN_TINY], [
        f"train_predictor.data_dir = '{data_dir}'", "train_predictor.total_steps = 2",
        "VideoPredictor.state_conditioned = True"])
    root = str(tmp_path / "run")
    try:
        tp.train_predictor(root)
    finally:
        gin.clear_config()
    model = vp.load_predictor(root)
    assert model.state_conditioned and model.state_dim == 7
    expect = vp.VideoPredictor(**dict(model.settings(), state_conditioned=False,
                                      state_dim=0)).settings()
    with pytest.raises(run_config.ConfigMismatchError, match="state_conditioned"):
        vp.load_predictor(root, expect=expect)


def test_a_dataset_without_the_mapped_proprio_fails_naming_the_key(data_dir):
    with pytest.raises(rlds.MappingError, match=r"'observation/nosuch'.*available"):
        rlds.proprio_dim("mbold_tabletop/push1_tiny", data_dir,
                         rlds.KeyMapping(proprio="observation/nosuch"))


# ------------------------------------------------------------------ the motion-weighted loss
def _square_sequence(moving: bool):
    """float32 [1, 3, 16, 16, 3] targets and the context frame: a white 3x3 square on black,
    moving one pixel right per frame (or standing still)."""
    frames = np.zeros([4, 16, 16, 3], np.float32)
    for t in range(4):
        x = 4 + (t if moving else 0)
        frames[t, 6:9, x:x + 3] = 1.0
    return tf.constant(frames[0][None]), tf.constant(frames[1:][None])


def test_weighted_loss_equals_l2_on_a_static_sequence():
    context, targets = _square_sequence(moving=False)
    preds = targets + tf.random.normal(targets.shape, stddev=0.1, seed=3)
    w = tp.motion_weights(context, targets, 10.0)
    np.testing.assert_allclose(w.numpy(), 1.0)
    for loss in ("l2", "l1"):
        np.testing.assert_allclose(float(tp.reconstruction_loss(targets, preds, loss, w)),
                                   float(tp.reconstruction_loss(targets, preds, loss)),
                                   rtol=1e-5)


def test_weighted_loss_counts_the_moving_squares_pixels_more():
    context, targets = _square_sequence(moving=True)
    w = tp.motion_weights(context, targets, 10.0).numpy()
    assert w[0, 0, 7, 4] == pytest.approx(11.0)  # left edge vacated at frame 1
    assert w[0, 0, 7, 7] == pytest.approx(11.0)  # right edge newly covered
    assert w[0, 0, 7, 5] == pytest.approx(1.0)  # still covered: no change
    assert w[0, 0, 0, 0] == pytest.approx(1.0)  # background
    # The same error costs more on a moving pixel than on a static one.
    on_motion = np.zeros(targets.shape, np.float32)
    on_motion[0, 0, 7, 7] = 0.5
    on_static = np.zeros(targets.shape, np.float32)
    on_static[0, 0, 0, 0] = 0.5
    wt = tf.constant(w)
    moving = float(tp.reconstruction_loss(targets, targets + on_motion, "l2", wt))
    static = float(tp.reconstruction_loss(targets, targets + on_static, "l2", wt))
    assert moving > 5 * static
    # Unweighted, the two errors cost the same.
    assert float(tp.reconstruction_loss(targets, targets + on_motion)) == pytest.approx(
        float(tp.reconstruction_loss(targets, targets + on_static)))


def test_motion_weight_is_recorded_and_trains(data_dir, tmp_path):
    gin.clear_config()
    gin.parse_config_files_and_bindings([GIN_TINY], [
        f"train_predictor.data_dir = '{data_dir}'", "train_predictor.total_steps = 3",
        "train_predictor.motion_weight = 20.0"])
    root = str(tmp_path / "run")
    try:
        out = tp.train_predictor(root)
    finally:
        gin.clear_config()
    assert out["step"] == 3 and np.isfinite(out["loss"])
    assert run_config.read_config(root, vp.KIND)[vp.TRAINING_KEY]["motion_weight"] == 20.0


def test_negative_motion_weight_is_refused(tmp_path):
    with pytest.raises(ValueError, match="train_predictor.motion_weight = -1.0"):
        tp.PredictorTrainer(str(tmp_path), "unused", None, 1, 2, 1e-3, "l2", 0, 10, 10, 10,
                            motion_weight=-1.0)


# ------------------------------------------------------------------ bfloat16
def test_bf16_is_refused_naming_the_flag_on_a_cpu_without_it():
    with pytest.raises(precision.PrecisionError, match="avx512_bf16 or amx_bf16"):
        precision.check_precision("mixed_bfloat16", "train_predictor.precision", on_gpu=False,
                                  flags=frozenset({"avx2", "fma"}))
    assert precision.check_precision("mixed_bfloat16", "x", on_gpu=False,
                                     flags=frozenset({"amx_bf16"})) == "mixed_bfloat16"
    with pytest.raises(precision.PrecisionError, match="'float16'.*choose one of"):
        precision.check_precision("float16", "train_predictor.precision")


@pytest.mark.skipif(bool(tf.config.list_logical_devices("GPU")), reason="CPU behaviour")
def test_bf16_training_is_used_or_refused_as_this_cpu_allows(data_dir, tmp_path):
    args = (str(tmp_path / "run"), "mbold_tabletop/push1_tiny", data_dir, 2, 4, 3e-3, "l2", 0,
            10, 5, 5, "mixed_bfloat16")
    gin.clear_config()
    gin.parse_config_file(GIN_TINY)
    try:
        if not precision.cpu_has_bf16():
            with pytest.raises(precision.PrecisionError, match="avx512_bf16"):
                tp.PredictorTrainer(*args)
            return
        trainer = tp.PredictorTrainer(*args)
    finally:
        gin.clear_config()
    assert trainer.model.compute_dtype == "bfloat16"
    assert all(v.dtype == tf.float32 for v in trainer.model.trainable_variables)
    assert tf.keras.mixed_precision.global_policy().name == "float32"  # restored
    batch = next(iter(trainer._dataset(trainer.arrays("train"), 4, 0)))  # pylint: disable=protected-access
    out = trainer._replica_step(batch, trainer.step)  # pylint: disable=protected-access
    assert out["loss"].dtype == tf.float32 and np.isfinite(float(out["loss"]))
    record = trainer._record[vp.TRAINING_KEY]  # pylint: disable=protected-access
    assert record["precision"] == "mixed_bfloat16"


def test_a_start_that_fails_the_data_checks_leaves_no_run_record(data_dir, tmp_path):
    gin.clear_config()
    gin.parse_config_files_and_bindings([GIN_TINY], ["VideoPredictor.action_dim = 3"])
    root = str(tmp_path / "run")
    try:
        trainer = tp.PredictorTrainer(root, "mbold_tabletop/push1_tiny", data_dir, 2, 4, 3e-3,
                                      "l2", 0, 10, 5, 5)
        with pytest.raises(ValueError, match="4-D actions but the predictor is built for 3"):
            trainer.train()
    finally:
        gin.clear_config()
    assert not os.path.exists(run_config.config_path(root))
    assert not os.path.exists(os.path.join(root, rlds.DATA_STATS_NAME))
