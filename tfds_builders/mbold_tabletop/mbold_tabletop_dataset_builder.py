"""``mbold_tabletop``: random correlated-noise episodes of the MBOLD tabletop tasks, in RLDS.

One BuilderConfig per task and size, named ``<task>_<size>``: tasks ``reach``, ``push1``,
``push3``, ``door_slide``, ``push1_restricted``, ``reach_fine`` (3 cm per unit action),
``reach_fine_wide`` (the same task, noise stds × 2.5 so the hand travels farther) and
``push1_fine`` (5 cm per unit action); sizes ``tiny``
(8 episodes, tests), ``small``
(200), ``cpu`` (2,000) and ``paper`` (10,000, §5). Splits train/validation/test = 0.9/0.05/0.05.

Build with the standard CLI (uses every core through a process pool)::

    tfds build tfds_builders/mbold_tabletop --config=push1_small --data_dir=~/tensorflow_datasets

or ``python -m launch.build_dataset --config=push1_small``. For large builds on Apache Beam
(Dataflow, Spark, Flink), set ``MBOLD_TFDS_BEAM=1``: ``_generate_examples`` then returns a Beam
``PTransform`` over episode ids (each episode is a pure function of seed and id), and the same
CLI takes ``--beam_pipeline_options=runner=DataflowRunner,...``.

Each step holds ``observation{image 64×64×3, joint_pos [7], gripper [2]}``, ``action [4]``,
``reward``, ``discount``, ``is_first``, ``is_last``, ``is_terminal`` and ``privileged`` — object
and end-effector positions for *evaluation only* (never a model input). Episode metadata holds
the task, seed and episode id.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np
import tensorflow_datasets as tfds

from mbold_tf.data import collect
from mbold_tf.envs import tasks

SIZES = {"tiny": 8, "small": 200, "cpu": 2000, "paper": 10000}
TASK_NAMES = ("reach", "push1", "push3", "door_slide", "push1_restricted", "reach_fine",
              "reach_fine_wide", "push1_fine")
SPLIT_FRACTIONS = (0.9, 0.05, 0.05)


@dataclasses.dataclass
class MboldConfig(tfds.core.BuilderConfig):
    """Config: ``task`` (dataset task name), ``num_episodes``, ``seed``."""
    task: str = "push1"
    num_episodes: int = 200
    seed: int = 0


def split_ids(num_episodes: int):
    """Episode id ranges (train, validation, test) for 0.9/0.05/0.05 (each split ≥ 1 episode)."""
    n_val = max(1, int(round(SPLIT_FRACTIONS[1] * num_episodes)))
    n_test = max(1, int(round(SPLIT_FRACTIONS[2] * num_episodes)))
    n_train = num_episodes - n_val - n_test
    if n_train < 1:
        raise ValueError(f"num_episodes={num_episodes} is too small for three splits.")
    return (range(0, n_train), range(n_train, n_train + n_val),
            range(n_train + n_val, num_episodes))


class Builder(tfds.core.GeneratorBasedBuilder):
    """RLDS builder for the MBOLD tabletop tasks."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = [
        MboldConfig(name=f"{t}_{s}", task=t, num_episodes=n,
                    description=f"{n} random-policy episodes of {t}.")
        for t in TASK_NAMES for s, n in SIZES.items()
    ]
    DEFAULT_CONFIG_NAME = "push1_small"

    def _info(self) -> tfds.core.DatasetInfo:
        task = collect.config_task(self.builder_config.task).task
        spec = tasks.TASKS[task]
        privileged = {"ee_pos": tfds.features.Tensor(shape=(3,), dtype=np.float32)}
        if spec.num_blocks:
            privileged["block_pos"] = tfds.features.Tensor(shape=(spec.num_blocks, 3),
                                                           dtype=np.float32)
        if spec.door:
            privileged["door_pos"] = tfds.features.Tensor(shape=(1,), dtype=np.float32)
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "steps": tfds.features.Dataset({
                    "observation": tfds.features.FeaturesDict({
                        "image": tfds.features.Image(shape=(64, 64, 3), encoding_format="png"),
                        "joint_pos": tfds.features.Tensor(shape=(7,), dtype=np.float32),
                        "gripper": tfds.features.Tensor(shape=(2,), dtype=np.float32),
                    }),
                    "action": tfds.features.Tensor(shape=(tasks.ACTION_DIM,),
                                                   dtype=np.float32),
                    "reward": tfds.features.Scalar(dtype=np.float32),
                    "discount": tfds.features.Scalar(dtype=np.float32),
                    "is_first": tfds.features.Scalar(dtype=np.bool_),
                    "is_last": tfds.features.Scalar(dtype=np.bool_),
                    "is_terminal": tfds.features.Scalar(dtype=np.bool_),
                    "privileged": tfds.features.FeaturesDict(privileged),
                }),
                "episode_metadata": tfds.features.FeaturesDict({
                    "task": tfds.features.Text(),
                    "seed": tfds.features.Scalar(dtype=np.int64),
                    "episode_id": tfds.features.Scalar(dtype=np.int64),
                }),
            }),
            supervised_keys=None,
            homepage="https://sites.google.com/berkeley.edu/mbold",
            citation="@inproceedings{tian2021mbold, title={Model-Based Visual Planning with "
                     "Self-Supervised Functional Distances}, booktitle={ICLR}, year={2021}}",
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        train, val, test = split_ids(self.builder_config.num_episodes)
        return {"train": self._generate_examples(train),
                "validation": self._generate_examples(val),
                "test": self._generate_examples(test)}

    def _keep(self, episode):
        """Drops privileged fields the config's features do not have (e.g. blocks in reach)."""
        keys = self.info.features["steps"]["privileged"].keys()
        episode["steps"]["privileged"] = {k: v for k, v in episode["steps"]["privileged"].items()
                                          if k in keys}
        return episode

    def _generate_examples(self, episode_ids):
        cfg = self.builder_config
        if os.environ.get("MBOLD_TFDS_BEAM") == "1":
            beam = tfds.core.lazy_imports.apache_beam
            keep = self._keep
            return (beam.Create(list(episode_ids))
                    | beam.Map(lambda i: (int(i), keep(collect.generate_episode(
                        cfg.task, cfg.seed, int(i))))))
        return self._generate_local(episode_ids)

    def _generate_local(self, episode_ids):
        cfg = self.builder_config
        workers = int(os.environ.get("MBOLD_DATA_WORKERS", "0")) or None
        for episode_id, episode in collect.generate_episodes(cfg.task, cfg.seed, episode_ids,
                                                             workers):
            yield episode_id, self._keep(episode)
