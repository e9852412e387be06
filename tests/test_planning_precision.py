"""Planning in bfloat16 (``load_models.precision``): used where the CPU has bf16 instructions,
refused naming the CPU flag where it has not and for models that cannot run it, and recorded
in the evaluation's planner settings. Tiny configs, CPU."""
import gin
import numpy as np
import pytest
import tensorflow as tf

from mbold_tf.agents import checkpoints
from mbold_tf.data import build as build_lib
from mbold_tf.eval import policy_eval
from mbold_tf.training import distance as td
from mbold_tf.training import predictor as tp
from mbold_tf.utils import precision

from tests.test_distance import chain_arrays
from tests.test_predictor import GIN_TINY

ON_GPU = bool(tf.config.list_logical_devices("GPU"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny predictor (2 steps on push1_tiny) and a tiny CQL-TD3 distance (2 steps)."""
    data_dir = str(tmp_path_factory.mktemp("tfds"))
    build_lib.build("push1_tiny", data_dir)
    predictor_dir = str(tmp_path_factory.mktemp("predictor"))
    distance_dir = str(tmp_path_factory.mktemp("distance"))
    gin.clear_config()
    gin.parse_config_files_and_bindings([GIN_TINY], [
        f"train_predictor.data_dir = '{data_dir}'", "train_predictor.total_steps = 2"])
    try:
        tp.train_predictor(predictor_dir)
    finally:
        gin.clear_config()
    gin.bind_parameter("network_settings.encoder_filters", (8, 16))
    gin.bind_parameter("network_settings.critic_fc_layers", 2)
    gin.bind_parameter("network_settings.actor_fc_layers", 1)
    gin.bind_parameter("network_settings.fc_units", 32)
    try:
        td.train_distance(distance_dir, method="cql_td3",
                          arrays=chain_arrays(num_episodes=8, length=8, positions=5),
                          total_steps=2, batch_size=16, negatives_key="none", checkpoint_every=2,
                          summary_every=2, log_every=2, bn_recalibration_batches=0)
    finally:
        gin.clear_config()
    return {"predictor": predictor_dir, "distance": distance_dir}


def _inputs(seed=0, b=6):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (b, 1, 64, 64, 3), dtype=np.uint8),
            rng.uniform(-1, 1, (b, 4, 4)).astype(np.float32),
            rng.integers(0, 256, (b, 64, 64, 3), dtype=np.uint8))


@pytest.mark.skipif(ON_GPU, reason="CPU behaviour")
def test_bf16_planning_is_used_or_refused_as_this_cpu_allows(runs):
    if not precision.cpu_has_bf16():
        with pytest.raises(precision.PrecisionError, match="avx512_bf16"):
            checkpoints.load_models(runs, precision="mixed_bfloat16")
        return
    fp32 = checkpoints.load_models(runs)
    bf16 = checkpoints.load_models(runs, precision="mixed_bfloat16")
    assert tf.keras.mixed_precision.global_policy().name == "float32"  # restored
    assert bf16["predictor"].compute_dtype == "bfloat16"
    assert fp32["predictor"].compute_dtype == "float32"
    assert all(v.dtype == tf.float32 for v in bf16["predictor"].variables)
    frames, actions, goal = _inputs()
    p32 = fp32["predictor"].predict(frames, actions).numpy()
    p16 = bf16["predictor"].predict(frames, actions).numpy()
    assert p16.dtype == np.float32 and p16.shape == p32.shape
    # The same weights: bf16 rounds (8 bits of mantissa) but predicts the same frames.
    assert np.abs(p16 - p32).max() < 0.05 and np.abs(p16 - p32).max() > 0
    image = frames[:, 0]
    q32 = fp32["distance"].q_values(image, goal).numpy()
    q16 = bf16["distance"].q_values(image, goal).numpy()
    assert q16.dtype == np.float32
    np.testing.assert_allclose(q16, q32, atol=0.05 * max(1.0, np.abs(q32).max()))
    for net in (bf16["distance"].critic1, bf16["distance"].actor):
        assert net._encoder.compute_dtype == "bfloat16"  # pylint: disable=protected-access


def test_bf16_planning_is_refused_naming_the_flag_on_a_cpu_without_it(runs, monkeypatch):
    if ON_GPU:
        pytest.skip("CPU behaviour")
    monkeypatch.setattr(precision, "cpu_flags", lambda path="": frozenset({"avx2", "fma"}))
    with pytest.raises(precision.PrecisionError,
                       match="load_models.precision.*avx512_bf16 or amx_bf16"):
        checkpoints.load_models(runs, precision="mixed_bfloat16")


def test_bf16_planning_is_refused_for_the_baselines(monkeypatch):
    monkeypatch.setattr(precision, "cpu_flags", lambda path="": frozenset({"amx_bf16"}))
    with pytest.raises(precision.PrecisionError, match=r"\['gcbc'\] were asked for too"):
        checkpoints.load_models({"predictor": "unused", "gcbc": "unused"},
                                precision="mixed_bfloat16")
    with pytest.raises(precision.PrecisionError, match="'float16'.*choose one of"):
        checkpoints.load_models({}, precision="float16")


def test_the_precision_binding_is_recorded_with_the_planner_settings():
    gin.clear_config()
    try:
        assert not any(k.startswith("load_models.") for k in policy_eval.planner_config())
        gin.bind_parameter("load_models.precision", "mixed_bfloat16")
        assert policy_eval.planner_config()["load_models.precision"] == "mixed_bfloat16"
    finally:
        gin.clear_config()
