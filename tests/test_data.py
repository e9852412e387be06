"""TFDS/RLDS builder, reader, pipelines and ScaNN hard negatives."""
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

import tfds_builders  # noqa: F401
from mbold_tf.data import build as build_lib
from mbold_tf.data import collect
from mbold_tf.data import neighbors
from mbold_tf.data import pipelines
from mbold_tf.data import rlds
from mbold_tf.envs import tasks


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("tfds"))
    tfds.builder("mbold_tabletop/push1_tiny", data_dir=d).download_and_prepare()
    return d


@pytest.fixture(scope="module")
def arrays(data_dir):
    return rlds.load_episodes("mbold_tabletop/push1_tiny", "train", data_dir=data_dir)


def test_tiny_dataset_rlds_structure_and_exact_values(data_dir):
    builder = tfds.builder("mbold_tabletop/push1_tiny", data_dir=data_dir)
    assert {k: v.num_examples for k, v in builder.info.splits.items()} == \
        {"train": 6, "validation": 1, "test": 1}
    ep = next(iter(builder.as_dataset(split="validation")))
    meta = {k: v.numpy() for k, v in ep["episode_metadata"].items()}
    assert meta["task"] == b"push1" and meta["seed"] == 0 and meta["episode_id"] == 6
    steps = list(ep["steps"].as_numpy_iterator())
    assert len(steps) == tasks.EPISODE_STEPS + 1
    assert steps[0]["is_first"] and not steps[1]["is_first"] and steps[-1]["is_last"]
    assert not any(s["is_last"] for s in steps[:-1]) and not any(s["is_terminal"] for s in steps)
    assert set(steps[0]["observation"]) == {"image", "joint_pos", "gripper"}
    assert set(steps[0]["privileged"]) == {"ee_pos", "block_pos"}
    # Exact values: regenerate episode 6 directly and compare byte for byte (PNG is lossless).
    ref = collect.generate_episode("push1", seed=0, episode_id=6)["steps"]
    np.testing.assert_array_equal(np.stack([s["observation"]["image"] for s in steps]),
                                  ref["observation"]["image"])
    np.testing.assert_array_equal(np.stack([s["action"] for s in steps]), ref["action"])
    np.testing.assert_array_equal(np.stack([s["observation"]["joint_pos"] for s in steps]),
                                  ref["observation"]["joint_pos"])
    np.testing.assert_array_equal(np.stack([s["privileged"]["block_pos"] for s in steps]),
                                  ref["privileged"]["block_pos"])


def test_episodes_deterministic_per_seed():
    a = collect.generate_episode("reach", seed=3, episode_id=1)["steps"]
    b = collect.generate_episode("reach", seed=3, episode_id=1)["steps"]
    c = collect.generate_episode("reach", seed=4, episode_id=1)["steps"]
    np.testing.assert_array_equal(a["observation"]["image"], b["observation"]["image"])
    assert not np.array_equal(a["action"], c["action"])
    # Two workers give the same episodes as one.
    one = dict(collect.generate_episodes("reach", 3, range(4), num_workers=1))
    two = dict(collect.generate_episodes("reach", 3, range(4), num_workers=2))
    for i in range(4):
        np.testing.assert_array_equal(one[i]["steps"]["observation"]["image"],
                                      two[i]["steps"]["observation"]["image"])


def test_wide_datasets_scale_the_noise_and_move_the_hand_farther():
    assert collect.config_task("reach_fine_wide") == ("reach_fine", False, collect.WIDE_STD_SCALE)
    assert collect.config_task("push1_restricted_wide") == ("push1", True, collect.WIDE_STD_SCALE)
    assert collect.config_task("reach_fine") == ("reach_fine", False, 1.0)

    def step_length(name):  # mean metres the end effector moves per step
        return np.mean([np.linalg.norm(np.diff(collect.generate_episode(name, 0, i)["steps"][
            "privileged"]["ee_pos"], axis=0), axis=1) for i in range(6)])

    plain, wide = step_length("reach_fine"), step_length("reach_fine_wide")
    # same seeds and resets; stds × 2.5 (actions clipped to the box): 1.1 against 2.2 cm a step
    assert wide > 1.7 * plain, (plain, wide)


def test_reader_layout(arrays):
    assert arrays.num_episodes == 6
    assert arrays.images.shape == (6 * 31, 64, 64, 3) and arrays.images.dtype == np.uint8
    assert arrays.actions.shape == (6 * 31, 4) and arrays.proprio.shape == (6 * 31, 7)
    np.testing.assert_array_equal(arrays.episode_length, 31)
    np.testing.assert_array_equal(arrays.step_time()[:32], list(range(31)) + [0])


def test_predictor_windows(arrays):
    ds = pipelines.predictor_dataset(arrays, batch_size=8, context=2, horizon=5, seed=1)
    batch = next(iter(ds))
    assert batch["images"].shape == (8, 7, 64, 64, 3) and batch["actions"].shape == (8, 5, 4)
    # Every window is a contiguous run of one episode with the matching actions.
    flat = arrays.images.reshape(arrays.num_steps, -1)
    for b in range(8):
        first = np.flatnonzero((flat == batch["images"][b, 0].numpy().reshape(-1)).all(1))[0]
        ep = arrays.step_episode()
        assert ep[first] == ep[first + 6]
        np.testing.assert_array_equal(batch["images"][b].numpy(), arrays.images[first:first + 7])
        np.testing.assert_array_equal(batch["actions"][b].numpy(),
                                      arrays.actions[first + 1:first + 6])
    again = next(iter(pipelines.predictor_dataset(arrays, batch_size=8, context=2, horizon=5,
                                                  seed=1)))
    np.testing.assert_array_equal(again["images"], batch["images"])


def test_weighted_windows_are_drawn_in_proportion_and_bad_weights_fail(arrays):
    starts = pipelines.predictor_window_starts(arrays, context=1, horizon=4)
    assert starts.size == 6 * (31 - 4)  # 27 windows of 5 frames in each 31-step episode
    # All weight on one window: the weighted half of every batch is that window.
    one = np.zeros(starts.size)
    one[100] = 3.0
    ds = pipelines.predictor_dataset(arrays, batch_size=8, context=1, horizon=4, seed=2,
                                     with_step_index=True, window_weights=one,
                                     weighted_share=0.5)
    uniform_rows = []
    for batch in ds.take(5):
        first = batch["step_index"][:, 0].numpy()
        np.testing.assert_array_equal(first[:4], starts[100])
        uniform_rows.extend(first[4:])
        np.testing.assert_array_equal(batch["images"][0].numpy(),
                                      arrays.images[starts[100]:starts[100] + 5])
    assert len(set(uniform_rows) - {starts[100]}) >= 15  # the rest stays uniform
    # Weight on one episode only: weighted draws never leave it.
    ep0 = (arrays.step_episode()[starts] == 0).astype(float)
    ds = pipelines.predictor_dataset(arrays, batch_size=10, context=1, horizon=4, seed=3,
                                     with_step_index=True, window_weights=ep0,
                                     weighted_share=0.7)
    batch = next(iter(ds))
    first = batch["step_index"][:, 0].numpy()
    assert set(arrays.step_episode()[first[:7]]) == {0}
    for weights, share, match in [
            (one[:-1], 0.5, r"shape \[161\]; expected \[162\]"),
            (-one, 0.5, "must be finite and >= 0"),
            (np.full(starts.size, np.nan), 0.5, "162 non-finite"),
            (one, 0.0, r"weighted_share = 0.0 must lie in \(0, 1\)"),
            (one, 1.0, r"weighted_share = 1.0 must lie in \(0, 1\)"),
            (None, 0.5, "without window_weights")]:
        with pytest.raises(ValueError, match=match):
            pipelines.predictor_dataset(arrays, batch_size=8, context=1, horizon=4,
                                        window_weights=weights, weighted_share=share)


def _locate(arrays, images):
    flat = arrays.images.reshape(arrays.num_steps, -1)
    return np.array([np.flatnonzero((flat == im.reshape(-1)).all(1)) for im in images],
                    dtype=object)


def test_hindsight_goals_are_geometric_future_frames(arrays):
    ds = pipelines.distance_dataset(arrays, negatives_key="none", batch_size=512, p=0.3, seed=0)
    batch = {k: v.numpy() for k, v in next(iter(ds)).items()}
    offsets = batch["offset"]
    assert offsets.min() >= 1 and not batch["is_negative"].any()
    # Uncapped offsets follow Geom(0.3): P(Δ=1) = 0.3, mean 1/0.3 (most are uncapped here).
    assert abs(np.mean(offsets == 1) - 0.3) < 0.06
    assert abs(np.mean(offsets == 2) - 0.21) < 0.06
    t = arrays.step_time()
    for b in range(0, 512, 37):
        obs_i = [i for i in _locate(arrays, batch["observation"][b:b + 1])[0]]
        goal_i = [i for i in _locate(arrays, batch["goal"][b:b + 1])[0]]
        assert any(g - o == offsets[b] or (g - o < offsets[b] and t[g] == 30)
                   for o in obs_i for g in goal_i)
    np.testing.assert_array_equal(batch["reward"], (offsets == 1).astype(np.float32))
    np.testing.assert_array_equal(batch["discount"], (offsets != 1).astype(np.float32))


def test_negatives_other_episodes_and_closer_arm(arrays):
    table = neighbors.neighbor_table(arrays, k=5)
    ep = arrays.step_episode()
    assert table.shape == (arrays.num_steps, 5)
    assert not np.any(ep[table] == ep[:, None])
    nn = np.linalg.norm(arrays.proprio[table] - arrays.proprio[:, None], axis=-1).mean()
    assert nn < 0.5 * neighbors.random_pair_distance(arrays)
    ds = pipelines.distance_dataset(arrays, neighbor_table=table, batch_size=64, seed=2,
                                    reward_scheme="ten_one")
    batch = {k: v.numpy() for k, v in next(iter(ds)).items()}
    assert batch["is_negative"].sum() == 32
    neg = batch["is_negative"]
    assert np.all(batch["reward"][neg] == 1.0) and np.all(batch["discount"][neg] == 1.0)
    pos_reached = (~neg) & (batch["offset"] == 1)
    np.testing.assert_array_equal(batch["reward"][~neg], np.where(pos_reached[~neg], 10.0, 1.0))
    for b in np.flatnonzero(neg)[:8]:
        o = _locate(arrays, batch["observation"][b:b + 1])[0]
        g = _locate(arrays, batch["goal"][b:b + 1])[0]
        assert all(ep[gi] != ep[oi] for gi in g for oi in o)


def test_reward_schemes_and_bad_scheme():
    r, d = pipelines.rewards_for(tf.constant([True, False]), "indicator")
    np.testing.assert_array_equal(r, [1.0, 0.0])
    np.testing.assert_array_equal(d, [0.0, 1.0])
    r, d = pipelines.rewards_for(tf.constant([True, False]), "ten_one")
    np.testing.assert_array_equal(r, [10.0, 1.0])
    with pytest.raises(ValueError, match="'binary'.*indicator.*ten_one"):
        pipelines.rewards_for(tf.constant([True]), "binary")


def test_pairs_dataset(arrays):
    batch = next(iter(pipelines.pairs_dataset(arrays, batch_size=64, seed=0)))
    off = batch["offset"].numpy()
    assert off.min() >= 1 and off.max() <= 30 and len(set(off)) > 5


def test_scann_recall_against_exact():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(20000, 7)).astype(np.float32)
    recall, stats = neighbors.recall_at_k(vectors, vectors[:500], k=10)
    assert recall > 0.9, (recall, stats)
    exact = neighbors.exact_knn(vectors, vectors[:5], 3)
    np.testing.assert_array_equal(exact[:, 0], np.arange(5))


def test_missing_dataset_names_build_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="launch.build_dataset --config=reach_tiny"):
        rlds.load_episodes("mbold_tabletop/reach_tiny", data_dir=str(tmp_path))


def test_truncated_shard_names_file(data_dir, tmp_path):
    bad = str(tmp_path / "bad")
    shutil.copytree(data_dir, bad)
    version_dir = os.path.join(bad, "mbold_tabletop", "push1_tiny", "1.0.0")
    shard = [f for f in os.listdir(version_dir) if "train.tfrecord" in f][0]
    path = os.path.join(version_dir, shard)
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
    with pytest.raises(IOError, match=shard):
        rlds.load_episodes(version_dir)


def _record_boundaries(path):
    """Byte offsets at which the TFRecord file's records start (8-byte length, 4-byte CRC,
    data, 4-byte CRC)."""
    import struct
    offsets, pos, size = [], 0, os.path.getsize(path)
    with open(path, "rb") as f:
        while pos < size:
            offsets.append(pos)
            f.seek(pos)
            (length,) = struct.unpack("<Q", f.read(8))
            pos += 8 + 4 + length + 4
    return offsets


@pytest.mark.parametrize("cut", ["record_boundary", "empty"])
def test_shard_cut_at_a_record_boundary_fails_naming_it(data_dir, tmp_path, cut):
    """A shard that lost whole records reads without a TFRecord error; the count check
    against dataset_info.json must catch it."""
    bad = str(tmp_path / "bad")
    shutil.copytree(data_dir, bad)
    version_dir = os.path.join(bad, "mbold_tabletop", "push1_tiny", "1.0.0")
    shard = [f for f in os.listdir(version_dir) if "train.tfrecord" in f][0]
    path = os.path.join(version_dir, shard)
    starts = _record_boundaries(path)
    assert len(starts) == 6  # push1_tiny: 6 train episodes in one shard
    with open(path, "r+b") as f:
        f.truncate(starts[3] if cut == "record_boundary" else 0)
    read = 3 if cut == "record_boundary" else 0
    with pytest.raises(IOError, match=f"{shard} holds {read} episodes but the dataset's "
                                      f"metadata .* says 6"):
        rlds.load_episodes(version_dir)


def test_build_dataset_verifies_an_existing_dataset(data_dir, tmp_path):
    """Rebuilding over an intact dataset reports every split's count; over a damaged shard the
    launcher fails naming the shard, without a traceback."""
    import subprocess
    import sys

    import mbold_tf

    assert build_lib.build("push1_tiny", data_dir)["verified_episodes"] == {
        "train": 6, "validation": 1, "test": 1}
    bad = str(tmp_path / "bad")
    shutil.copytree(data_dir, bad)
    version_dir = os.path.join(bad, "mbold_tabletop", "push1_tiny", "1.0.0")
    shard = [f for f in os.listdir(version_dir) if "train.tfrecord" in f][0]
    with open(os.path.join(version_dir, shard), "r+b") as f:
        f.truncate(_record_boundaries(os.path.join(version_dir, shard))[4])
    run = subprocess.run([sys.executable, "-m", "launch.build_dataset", "--config=push1_tiny",
                          f"--data_dir={bad}"], cwd=mbold_tf.REPO_ROOT, capture_output=True,
                         text=True, check=False)
    assert run.returncode != 0
    assert f"{shard} holds 4 episodes but the dataset's metadata" in run.stderr
    assert "Traceback" not in run.stderr


class ForeignRobot(tfds.core.GeneratorBasedBuilder):
    """A user's RLDS dataset with its own key names (and a wrong-size variant)."""
    VERSION = tfds.core.Version("0.1.0")
    BUILDER_CONFIGS = [tfds.core.BuilderConfig(name="px64"),
                       tfds.core.BuilderConfig(name="px32")]

    def _size(self):
        return 64 if self.builder_config.name == "px64" else 32

    def _info(self):
        s = self._size()
        return self.dataset_info_from_configs(features=tfds.features.FeaturesDict({
            "steps": tfds.features.Dataset({
                "obs": tfds.features.FeaturesDict({
                    "rgb": tfds.features.Image(shape=(s, s, 3)),
                    "qpos": tfds.features.Tensor(shape=(6,), dtype=np.float32)}),
                "act": tfds.features.Tensor(shape=(3,), dtype=np.float32),
                "is_first": tfds.features.Scalar(dtype=np.bool_),
                "is_last": tfds.features.Scalar(dtype=np.bool_)})}))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        rng = np.random.default_rng(0)
        s = self._size()
        for e, length in enumerate((12, 9, 15)):
            yield e, {"steps": [{"obs": {"rgb": rng.integers(0, 255, (s, s, 3), dtype=np.uint8),
                                         "qpos": np.full(6, e + t / 100, np.float32)},
                                 "act": np.full(3, t, np.float32), "is_first": t == 0,
                                 "is_last": t == length - 1} for t in range(length)]}


def test_foreign_rlds_dataset_through_mapping(tmp_path):
    d = str(tmp_path)
    ForeignRobot(config="px64", data_dir=d).download_and_prepare()
    ForeignRobot(config="px32", data_dir=d).download_and_prepare()
    mapping = rlds.KeyMapping(image="obs/rgb", action="act", proprio="obs/qpos")
    dir64 = os.path.join(d, "foreign_robot", "px64", "0.1.0")
    arrays = rlds.load_episodes(dir64, mapping=mapping)
    assert sorted(arrays.episode_length.tolist()) == [9, 12, 15]
    assert arrays.proprio.shape == (36, 6) and arrays.actions.shape == (36, 3)
    batch = next(iter(pipelines.predictor_dataset(arrays, batch_size=4, context=1, horizon=8)))
    assert batch["images"].shape == (4, 9, 64, 64, 3) and batch["actions"].shape == (4, 8, 3)
    with pytest.raises(KeyError, match="'obs/depth'.*obs/rgb"):
        rlds.load_episodes(dir64, mapping=rlds.KeyMapping(image="obs/depth", action="act",
                                                          proprio="obs/qpos"))
    # Square RGB images of another size are resized to 64×64 as they load (32 -> 64: each
    # pixel becomes a 2×2 block under area resampling).
    small = rlds.load_episodes(os.path.join(d, "foreign_robot", "px32", "0.1.0"), mapping=mapping)
    assert small.images.shape == (36, 64, 64, 3) and small.images.dtype == np.uint8
    np.testing.assert_array_equal(small.images[:, ::2, ::2], small.images[:, 1::2, 1::2])
    with pytest.raises(ValueError, match=r"'obs/qpos' has shape \(6,\).*square RGB uint8"):
        rlds.load_episodes(dir64, mapping=rlds.KeyMapping(image="obs/qpos", action="act",
                                                          proprio="obs/qpos"))


class UserRobot(tfds.core.GeneratorBasedBuilder):
    """A user's robot: its own keys, 96×96 images, 5-D actions, 6 joints, no gripper, and only
    a train split."""
    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return self.dataset_info_from_configs(features=tfds.features.FeaturesDict({
            "steps": tfds.features.Dataset({
                "observation": tfds.features.FeaturesDict({
                    "wrist_rgb": tfds.features.Image(shape=(96, 96, 3)),
                    "arm": tfds.features.Tensor(shape=(6,), dtype=np.float32)}),
                "action": tfds.features.Tensor(shape=(5,), dtype=np.float32),
                "is_first": tfds.features.Scalar(dtype=np.bool_),
                "is_last": tfds.features.Scalar(dtype=np.bool_)})}))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        rng = np.random.default_rng(1)
        for e, length in enumerate((14, 11, 16, 12)):
            yield e, {"steps": [
                {"observation": {"wrist_rgb": rng.integers(0, 255, (96, 96, 3), dtype=np.uint8),
                                 "arm": rng.normal(size=6).astype(np.float32)},
                 "action": rng.uniform(-1, 1, 5).astype(np.float32), "is_first": t == 0,
                 "is_last": t == length - 1} for t in range(length)]}


def test_your_robot_through_the_launchers_flags_only(tmp_path):
    """Other keys, 96×96 images, 5-D actions, 6 joints, no gripper, no validation split: train
    both models, export without a task name and act on the robot, with command-line flags only;
    a wrong key fails listing the dataset's keys, without a traceback."""
    import json
    import subprocess
    import sys

    import mbold_tf
    from mbold_tf.export import robot_side

    UserRobot(data_dir=str(tmp_path / "tfds")).download_and_prepare()
    data = str(tmp_path / "tfds" / "user_robot" / "1.0.0")
    tiny = os.path.join(mbold_tf.REPO_ROOT, "gin", "presets", "tiny")
    mapping = ["--gin_param=KeyMapping.image='observation/wrist_rgb'",
               "--gin_param=KeyMapping.action='action'",
               "--gin_param=KeyMapping.proprio='observation/arm'",
               "--gin_param=KeyMapping.privileged=None"]

    def launch(*args):
        return subprocess.run([sys.executable, "-m", *args], cwd=mbold_tf.REPO_ROOT,
                              capture_output=True, text=True, check=False)

    pred, dist, out = (str(tmp_path / n) for n in ("predictor", "distance", "export"))
    run = launch("launch.train_predictor", f"--root_dir={pred}",
                 f"--gin_file={tiny}/predictor.gin", *mapping,
                 f"--gin_param=train_predictor.dataset='{data}'",
                 "--gin_param=train_predictor.total_steps=2",
                 "--gin_param=train_predictor.strip_every=2")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "holding out its last 1 of 4 train episodes" in run.stderr
    assert "Resizing 'observation/wrist_rgb' images from (96, 96, 3) to (64, 64, 3)" in run.stderr
    run = launch("launch.train_distance", f"--root_dir={dist}", f"--gin_file={tiny}/distance.gin",
                 *mapping, f"--gin_param=train_distance.dataset='{data}'",
                 "--gin_param=train_distance.total_steps=3", "--gin_param=train_distance.batch_size=8",
                 "--gin_param=train_distance.bn_recalibration_batches=1")
    assert run.returncode == 0, run.stderr[-3000:]
    run = launch("launch.export", "--method=mbold", f"--out={out}", f"--predictor_dir={pred}",
                 f"--distance_dir={dist}", f"--gin_file={tiny}/planner.gin")
    assert run.returncode == 0, run.stderr[-3000:]
    meta = json.load(open(os.path.join(out, robot_side.METADATA_FILE)))
    assert meta["observation"]["joint_pos"]["shape"] == [6] and "gripper" not in meta["observation"]
    assert meta["action"]["shape"] == [5] and "action std of" in meta["info"]["init_std_source"]
    stats = json.load(open(os.path.join(dist, "data_stats.json")))
    assert meta["info"]["init_std"] == pytest.approx(stats["action_std"], abs=1e-6)
    obs = {k: np.zeros(v["shape"], v["dtype"]) for k, v in meta["observation"].items()}
    action = robot_side.RobotPolicy(out).act(obs)
    assert action.shape == (5,) and np.all(np.abs(action) <= 1.0)
    bad = launch("launch.train_distance", f"--root_dir={tmp_path / 'bad'}",
                 f"--gin_file={tiny}/distance.gin", *mapping[1:],
                 "--gin_param=KeyMapping.image='observation/rgb'",
                 f"--gin_param=train_distance.dataset='{data}'")
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert "no key 'observation/rgb'" in bad.stderr and "observation/wrist_rgb" in bad.stderr


def test_beam_build_equals_the_plain_build(data_dir, tmp_path):
    """The Beam path (DirectRunner, 2 worker processes) writes the same episodes as the plain
    build; an unknown runner fails before any work starts."""
    beam_dir = str(tmp_path / "beam")
    stats = build_lib.build("push1_tiny", beam_dir, beam_pipeline_options=(
        "runner=DirectRunner,direct_num_workers=2,direct_running_mode=multi_processing"))
    assert stats["beam_runner"] == "DirectRunner" and not stats["already_built"]
    for split in ("train", "validation", "test"):
        a = rlds.load_episodes("mbold_tabletop/push1_tiny", split, data_dir=data_dir)
        b = rlds.load_episodes("mbold_tabletop/push1_tiny", split, data_dir=beam_dir)
        order_a, order_b = np.argsort(a.episode_ids), np.argsort(b.episode_ids)
        np.testing.assert_array_equal(a.episode_ids[order_a], b.episode_ids[order_b])
        for ea, eb in zip(order_a, order_b):
            sa = slice(a.episode_start[ea], a.episode_start[ea] + a.episode_length[ea])
            sb = slice(b.episode_start[eb], b.episode_start[eb] + b.episode_length[eb])
            np.testing.assert_array_equal(a.images[sa], b.images[sb])
            np.testing.assert_array_equal(a.actions[sa], b.actions[sb])
            np.testing.assert_array_equal(a.proprio[sa], b.proprio[sb])
    from mbold_tf.utils import beam
    with pytest.raises(beam.BeamOptionsError, match="Unknown Beam runner 'NoSuchRunner'"):
        build_lib.build("push1_tiny", str(tmp_path / "never"),
                        beam_pipeline_options="runner=NoSuchRunner")
    assert not os.path.exists(tmp_path / "never")


def test_an_unknown_config_of_a_registered_dataset_lists_the_configs():
    with pytest.raises(FileNotFoundError, match=r"Unknown dataset 'mbold_tabletop/reach_huge'.*"
                                                r"Available: \[.*'reach_cpu'"):
        rlds.load_episodes("mbold_tabletop/reach_huge", "train")
