"""Read any RLDS/TFDS robot dataset into flat in-memory arrays through one function.

``load_episodes(source, mapping)`` takes a registered TFDS name (``'mbold_tabletop/push1_small'``)
or a prepared dataset directory (the folder holding ``dataset_info.json``) and a
:class:`KeyMapping` saying which step keys are the image, the action and the proprioception, so a
user's own RLDS dataset trains the same models::

    from mbold_tf.data import rlds
    arrays = rlds.load_episodes(
        "~/tensorflow_datasets/my_robot/1.0.0",
        mapping=rlds.KeyMapping(image="observation/wrist_rgb", action="action",
                                proprio="observation/arm_joints"))

Episodes are concatenated step-wise (RLDS convention: step t holds s_t and the action a_t taken
from it); ``episode_start``/``episode_length`` delimit them, so episodes may differ in length.
Images must already be 64×64×3 uint8.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Dict, Optional

from absl import logging
import gin
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

IMAGE_SHAPE = (64, 64, 3)


@gin.configurable
@dataclasses.dataclass(frozen=True)
class KeyMapping:
    """Step keys ('/'-separated paths into each RLDS step) of image, action and proprioception.

    Gin-configurable, so a launcher reads another dataset's keys without code:
    ``--gin_param="KeyMapping.image='observation/wrist_rgb'"``. A wrong key fails listing the
    dataset's step keys.
    """
    image: str = "observation/image"
    action: str = "action"
    proprio: str = "observation/joint_pos"
    privileged: Optional[str] = "privileged"  # optional, evaluation only; None to skip


@dataclasses.dataclass
class EpisodeArrays:
    """Steps of many episodes, flattened.

    Attributes:
      images: uint8 [M, 64, 64, 3]; actions: float32 [M, A] (the action at each step; an
      episode's last step carries a placeholder); proprio: float32 [M, P];
      episode_start: int64 [N] index of each episode's first step; episode_length: int64 [N]
      number of observations (steps) per episode; episode_ids: int64 [N];
      privileged: dict of float32 [M, ...] arrays (evaluation only; may be empty).
    """
    images: np.ndarray
    actions: np.ndarray
    proprio: np.ndarray
    episode_start: np.ndarray
    episode_length: np.ndarray
    episode_ids: np.ndarray
    privileged: Dict[str, np.ndarray]

    @property
    def num_episodes(self) -> int:
        return int(self.episode_start.shape[0])

    def select(self, episodes: np.ndarray) -> "EpisodeArrays":
        """The episodes at indices ``episodes`` (int [K], ascending) as new EpisodeArrays."""
        episodes = np.asarray(episodes, np.int64)
        steps = np.concatenate([np.arange(self.episode_start[e],
                                          self.episode_start[e] + self.episode_length[e])
                                for e in episodes]) if len(episodes) else np.zeros([0], np.int64)
        lengths = self.episode_length[episodes]
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        return EpisodeArrays(images=self.images[steps], actions=self.actions[steps],
                             proprio=self.proprio[steps], episode_start=starts,
                             episode_length=lengths, episode_ids=self.episode_ids[episodes],
                             privileged={k: v[steps] for k, v in self.privileged.items()})

    @property
    def num_steps(self) -> int:
        return int(self.images.shape[0])

    def step_episode(self) -> np.ndarray:
        """int64 [M]: the episode index (0..N-1) of every step."""
        return np.repeat(np.arange(self.num_episodes), self.episode_length)

    def step_time(self) -> np.ndarray:
        """int64 [M]: each step's time index within its episode."""
        return np.arange(self.num_steps) - np.repeat(self.episode_start, self.episode_length)


def hold_out(arrays: EpisodeArrays, fraction: float):
    """(kept, held_out): the last ``fraction`` of the episodes (at least 1) held out.

    For datasets without a validation split; raises ValueError when fewer than 2 episodes
    would leave nothing on one side.
    """
    n = arrays.num_episodes
    k = max(1, int(round(n * float(fraction))))
    if not 0.0 < fraction < 1.0 or n - k < 1:
        raise ValueError(f"Cannot hold out {fraction:.0%} of {n} episodes for validation (both "
                         f"sides need at least one episode).")
    return arrays.select(np.arange(n - k)), arrays.select(np.arange(n - k, n))


class MappingError(KeyError):
    """A KeyMapping key that the dataset's steps do not have (the message lists those they do)."""

    def __str__(self):
        return str(self.args[0]) if self.args else ""


# What each mapped key must hold, per step (shape without the time axis), for the suggestion
# of a wrong key: a description, and a test of (shape, dtype).
_FITS = {
    "image": ("square RGB uint8 images [S, S, 3]",
              lambda shape, dtype: len(shape) == 3 and shape[-1] == 3 and shape[0] == shape[1]
              and dtype == tf.uint8),
    "action": ("float vectors [A]", lambda shape, dtype: len(shape) == 1 and dtype.is_floating),
    "proprio": ("float vectors [P]", lambda shape, dtype: len(shape) == 1 and dtype.is_floating),
}


def _get(tree, path: str, what: str, available_from=None, batched: bool = False):
    """The node of ``tree`` at the '/'-separated ``path``; raises MappingError listing the
    available keys and suggesting only keys whose shape fits ``what`` (none when none fits)."""
    node = tree
    for part in path.split("/"):
        if not isinstance(node, dict) or part not in node:
            source = available_from if available_from is not None else tree
            keys = _paths(source)
            message = (f"RLDS steps have no key {path!r} (mapped as {what}); available step "
                       f"keys: {keys}.")
            if what in _FITS:
                need, fits = _FITS[what]
                fitting = [k for k, leaf in _leaves(source).items()
                           if _fits(leaf, fits, batched)]
                fitting.sort(key=lambda k: what not in k)  # 'action' first for the action
                message += (f" Keys holding {need}: {fitting}. Fix the KeyMapping (e.g. "
                            f"--gin_param=\"KeyMapping.{what}='{fitting[0]}'\")."
                            if fitting else f" None of them holds {need}, as the {what} must; "
                            f"this dataset cannot be mapped as it is.")
            raise MappingError(message)
        node = node[part]
    return node


def _fits(leaf, fits, batched: bool) -> bool:
    shape, dtype = getattr(leaf, "shape", None), getattr(leaf, "dtype", None)
    if shape is None or dtype is None:
        return False
    shape = tuple(shape)[1:] if batched else tuple(shape)
    return bool(fits(shape, tf.as_dtype(dtype)))


def _leaves(tree, prefix="") -> dict:
    out = {}
    for k, v in tree.items():
        p = f"{prefix}{k}"
        out.update(_leaves(v, p + "/") if isinstance(v, dict) else {p: v})
    return out


def _paths(tree, prefix="") -> list:
    return list(_leaves(tree, prefix))


def _builder(source: str, data_dir: Optional[str]):
    path = os.path.expanduser(source)
    if os.path.isdir(path):
        if not os.path.exists(os.path.join(path, "dataset_info.json")):
            raise FileNotFoundError(f"{path} is not a prepared TFDS dataset directory (no "
                                    "dataset_info.json): point at the version folder, e.g. "
                                    ".../my_dataset/1.0.0.")
        return tfds.builder_from_directory(path)
    if os.path.isabs(path) or source.startswith((".", "~")) or (
            source.count("/") >= 2 and "=" not in source):
        # A path, not a TFDS name (name[/config][:version]): TFDS would only fail to parse it.
        existing = path
        while existing and not os.path.isdir(existing) and os.path.dirname(existing) != existing:
            existing = os.path.dirname(existing)
        raise FileNotFoundError(
            f"Dataset directory {path} does not exist (the nearest existing folder is "
            f"{existing or '.'}). Point the dataset setting at a prepared TFDS dataset directory "
            f"(the version folder holding dataset_info.json), or give a registered TFDS name "
            f"such as 'mbold_tabletop/push1_cpu'.")
    if source.startswith("mbold_tabletop"):
        import tfds_builders  # noqa: F401  (registers mbold_tabletop)  pylint: disable=g-import-not-at-top
    try:
        builder = tfds.builder(source, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as e:
        missing = (f" No directory {os.path.abspath(source)} exists either." if "/" in source
                   else "")
        raise FileNotFoundError(f"Unknown dataset {source!r}: give a registered TFDS name or a "
                                f"prepared dataset directory.{missing}") from e
    except ValueError as e:  # a registered dataset without this config: TFDS lists the configs
        if "BuilderConfig" in str(e):
            raise FileNotFoundError(f"Unknown dataset {source!r}: {e}") from e
        # A name TFDS cannot parse: its message is a grammar, not the problem.
        raise FileNotFoundError(f"Unknown dataset {source!r}: neither a dataset directory nor "
                                f"a TFDS name (name[/config][:version]).") from e
    if not builder.is_prepared():
        config = source.split("/")[1] if "/" in source else "push1_small"
        raise FileNotFoundError(
            f"Dataset {source!r} is not built under {builder.data_dir_root}. Build it with:\n"
            f"  python -m launch.build_dataset --config={config}"
            f"{f' --data_dir={data_dir}' if data_dir else ''}\n"
            f"or: tfds build tfds_builders/mbold_tabletop --config={config}"
            f"{f' --data_dir={data_dir}' if data_dir else ''}")
    return builder


def _check_image_spec(steps_spec, mapping: KeyMapping) -> bool:
    """Checks the mapped keys; returns whether the images must be resized to 64×64.

    Square uint8 RGB images of another size are resized at load time (area averaging, logged);
    anything else fails naming the key, the shape and dtype found and what is needed.
    """
    spec = _get(steps_spec, mapping.image, "image")
    shape = tuple(spec.shape)
    if spec.dtype != tf.uint8 or len(shape) != 3 or shape[2] != 3 or shape[0] != shape[1] or \
            shape[0] is None:
        raise ValueError(f"Image key {mapping.image!r} has shape {shape} and dtype "
                         f"{spec.dtype.name}; mbold-tf needs square RGB uint8 images (resized to "
                         f"{IMAGE_SHAPE}). Crop the dataset's images to a square, or map another "
                         f"image key.")
    _get(steps_spec, mapping.action, "action")
    _get(steps_spec, mapping.proprio, "proprio")
    return shape != IMAGE_SHAPE


def _resize(images: np.ndarray) -> np.ndarray:
    """uint8 [T, S, S, 3] -> uint8 [T, 64, 64, 3] by area averaging."""
    out = tf.image.resize(tf.cast(images, tf.float32), IMAGE_SHAPE[:2], method="area")
    return tf.cast(tf.clip_by_value(tf.round(out), 0, 255), tf.uint8).numpy()


def _episode_to_numpy(episode, mapping: KeyMapping):
    steps = episode["steps"]
    dense = steps.batch(1 << 20).get_single_element()
    out = {"image": _get(dense, mapping.image, "image", batched=True),
           "action": _get(dense, mapping.action, "action", batched=True),
           "proprio": _get(dense, mapping.proprio, "proprio", batched=True)}
    if mapping.privileged and mapping.privileged in dense:
        out["privileged"] = dense[mapping.privileged]
    return out


DATA_STATS_NAME = "data_stats.json"


def data_stats(arrays: EpisodeArrays, source: str) -> Dict:
    """What a run learned from: dataset, action_dim, per-dimension action mean and std (over
    steps that carry an action, i.e. all but each episode's last), proprio_dim, episodes."""
    last = arrays.episode_start + arrays.episode_length - 1
    acted = np.ones(arrays.num_steps, bool)
    acted[last] = False
    actions = arrays.actions[acted] if acted.any() else arrays.actions
    return {"dataset": str(source), "episodes": int(arrays.num_episodes),
            "action_dim": int(arrays.actions.shape[-1]),
            "action_mean": [round(float(x), 5) for x in actions.mean(axis=0)],
            "action_std": [round(float(x), 5) for x in actions.std(axis=0)],
            "proprio_dim": int(arrays.proprio.shape[-1])}


def write_data_stats(root_dir: str, arrays: EpisodeArrays, source: str) -> Dict:
    """Writes :func:`data_stats` to ``<root_dir>/data_stats.json`` (the export reads it)."""
    import json  # pylint: disable=g-import-not-at-top

    stats = data_stats(arrays, source)
    os.makedirs(root_dir, exist_ok=True)
    with open(os.path.join(root_dir, DATA_STATS_NAME), "w") as f:
        json.dump(stats, f, indent=1)
    return stats


def read_data_stats(root_dir: str) -> Optional[Dict]:
    """The run's data statistics, or None for a run trained before they were recorded."""
    import json  # pylint: disable=g-import-not-at-top

    path = os.path.join(root_dir, DATA_STATS_NAME)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def action_dim(source: str, data_dir: Optional[str] = None,
               mapping: Optional[KeyMapping] = None) -> int:
    """The size of the mapped action key of a dataset, read from its metadata (no episodes)."""
    mapping = mapping if mapping is not None else KeyMapping()
    steps_spec = _builder(source, data_dir).info.features["steps"].get_tensor_spec()
    steps_spec = getattr(steps_spec, "element_spec", steps_spec)
    return int(_get(steps_spec, mapping.action, "action").shape[-1])


def proprio_dim(source: str, data_dir: Optional[str] = None,
                mapping: Optional[KeyMapping] = None) -> int:
    """The size of the mapped proprioception key of a dataset, read from its metadata.

    Raises MappingError naming the key and the available step keys when the dataset has none.
    """
    mapping = mapping if mapping is not None else KeyMapping()
    steps_spec = _builder(source, data_dir).info.features["steps"].get_tensor_spec()
    steps_spec = getattr(steps_spec, "element_spec", steps_spec)
    return int(_get(steps_spec, mapping.proprio, "proprio").shape[-1])


def split_names(source: str, data_dir: Optional[str] = None) -> list:
    """The split names (list of str) of a TFDS name or prepared dataset directory."""
    return list(_builder(source, data_dir).info.splits)


def count_records(path: str) -> int:
    """Number of whole records in a TFRecord file, read from the record headers only.

    Raises IOError naming the file when it ends inside a record.
    """
    size, pos, count = os.path.getsize(path), 0, 0
    with open(path, "rb") as f:
        while pos < size:
            f.seek(pos)
            header = f.read(8)
            if len(header) < 8:
                raise IOError(f"Shard {path} ends inside a record header (byte {pos}).")
            pos += 8 + 4 + int(np.frombuffer(header, "<u8")[0]) + 4
            if pos > size:
                raise IOError(f"Shard {path} ends inside record {count} (truncated).")
            count += 1
    return count


def check_record_crcs(path: str) -> int:
    """Reads every record of a TFRecord file, checking its CRC32C checksums (length and data),
    without decoding; returns the number of records.

    Raises IOError naming the file when a checksum does not match (a flipped byte) or the file
    ends inside a record.
    """
    count = 0
    try:
        for _ in tf.data.TFRecordDataset(path, buffer_size=1 << 22):
            count += 1
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
        raise IOError(f"Shard {path} fails its checksum at record {count} "
                      f"({e.message.strip().splitlines()[0][:200]}): the file is "
                      f"corrupt.") from None
    return count


def verify_shards(source: str, data_dir: Optional[str] = None) -> Dict[str, int]:
    """Checks every split's shards against the dataset's metadata: each record's CRC32C
    checksums (every byte is read, nothing decoded) and the record counts.

    Returns {split: episodes}. Raises IOError naming the first missing, truncated, short or
    corrupt shard (record counts against dataset_info.json's shard lengths) and how to rebuild.
    """
    builder = _builder(source, data_dir)
    counts = {}
    for split, info in builder.info.splits.items():
        expected = list(getattr(info, "shard_lengths", None) or [])
        total = 0
        for i, name in enumerate(info.filenames):
            path = os.path.join(builder.data_dir, name)
            if not os.path.exists(path):
                raise IOError(f"Shard {path} is missing; delete {builder.data_dir} and rebuild "
                              f"the dataset.")
            try:
                n = count_records(path)  # headers first: a short file fails fast, by name
                check_record_crcs(path)
            except IOError as e:
                raise IOError(f"{e} Delete {builder.data_dir} and rebuild the dataset.") from None
            if i < len(expected) and n != expected[i]:
                raise IOError(f"Shard {path} holds {n} episodes but the dataset's metadata "
                              f"(dataset_info.json) says {expected[i]}: the file was truncated "
                              f"or replaced. Delete {builder.data_dir} and rebuild the dataset.")
            total += n
        counts[split] = total
    return counts


def load_episodes(source: str, split: str = "train", mapping: Optional[KeyMapping] = None,
                  data_dir: Optional[str] = None,
                  max_episodes: Optional[int] = None) -> EpisodeArrays:
    """Loads an RLDS dataset's split into :class:`EpisodeArrays`.

    Args:
      source: TFDS name (``'mbold_tabletop/push1_small'``) or a prepared dataset directory.
      split: 'train', 'validation', 'test' or any TFDS split name.
      mapping: which step keys hold image, action and proprioception (default: the
        gin-configured ``KeyMapping()``).
      data_dir: TFDS data dir for names (default ``~/tensorflow_datasets``).
      max_episodes: read at most this many episodes.
    Raises:
      FileNotFoundError naming the build command for a missing dataset; KeyError naming a missing
      mapped key; ValueError naming the image key and shape found; IOError naming a corrupt or
      truncated shard file.
    """
    mapping = mapping if mapping is not None else KeyMapping()
    builder = _builder(source, data_dir)
    steps_spec = builder.info.features["steps"].get_tensor_spec()
    steps_spec = getattr(steps_spec, "element_spec", steps_spec)  # Dataset feature -> its steps
    resize = _check_image_spec(steps_spec, mapping)
    if split not in builder.info.splits:
        raise ValueError(f"Split {split!r} not in {source!r}; it has {list(builder.info.splits)}.")
    info = builder.info.splits[split]
    files = [os.path.join(builder.data_dir, f) for f in info.filenames]
    # The episodes each shard must hold, from dataset_info.json (TFDS records them at build
    # time): a shard cut at a record boundary reads without an error, so count what it yields.
    expected = list(getattr(info, "shard_lengths", None) or [])
    logging.info("Loading %s episodes of %s[%s] from %d shard(s)...",
                 max_episodes or info.num_examples, source, split, len(files))
    if resize:
        logging.info("Resizing %r images from %s to %s (area averaging) as they load.",
                     mapping.image, tuple(_get(steps_spec, mapping.image, "image").shape),
                     IMAGE_SHAPE)
    parts = []
    for i, path in enumerate(files):
        if not os.path.exists(path):
            raise IOError(f"Shard {path} is missing; delete {builder.data_dir} and rebuild the "
                          f"dataset.")
        ds = tf.data.TFRecordDataset(path).map(builder.info.features.deserialize_example)
        read = 0
        try:
            for episode in ds:
                part = tf.nest.map_structure(lambda t: t.numpy(),
                                             _episode_to_numpy(episode, mapping))
                if resize:
                    part["image"] = _resize(part["image"])
                parts.append(part)
                read += 1
                if max_episodes and len(parts) >= max_episodes:
                    break
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
            raise IOError(f"Shard {path} is corrupt or truncated ({e.message.strip()[:200]}); "
                          f"delete {builder.data_dir} and rebuild the dataset.") from e
        if max_episodes and len(parts) >= max_episodes:
            break
        if i < len(expected) and read != expected[i]:
            raise IOError(f"Shard {path} holds {read} episodes but the dataset's metadata "
                          f"(dataset_info.json) says {expected[i]}: the file was truncated or "
                          f"replaced. Delete {builder.data_dir} and rebuild the dataset.")
    if not parts:
        raise ValueError(f"Split {split!r} of {source!r} has no episodes.")
    lengths = np.array([p["image"].shape[0] for p in parts], np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    privileged = {}
    if all("privileged" in p for p in parts):
        for k in parts[0]["privileged"]:
            privileged[k] = np.concatenate([p["privileged"][k] for p in parts])
    arrays = EpisodeArrays(
        images=np.concatenate([p["image"] for p in parts]),
        actions=np.concatenate([p["action"] for p in parts]).astype(np.float32),
        proprio=np.concatenate([p["proprio"] for p in parts]).astype(np.float32)
        .reshape(int(lengths.sum()), -1),
        episode_start=starts, episode_length=lengths,
        episode_ids=np.arange(len(parts), dtype=np.int64), privileged=privileged)
    logging.info("Loaded %d episodes (%d steps) from %s[%s]", arrays.num_episodes,
                 arrays.num_steps, source, split)
    return arrays
