"""Benchmarks: ``python -m launch.benchmark <part>``; the last line printed is one JSON object.

Each part lives in ``launch/benchmarks/<part>.py`` and exposes ``run(quick: bool) -> dict``.
"""
import importlib
import json
import os
import sys

from absl import app
from absl import flags

PARTS = ("envs", "data", "predictor", "distance", "planner", "evaluate", "robot", "device",
         "sorb", "rig", "dreamer")
flags.DEFINE_bool("quick", False, "Smaller sizes (for a smoke check, not for quoting).")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) != 2 or argv[1] not in PARTS:
        raise app.UsageError(f"usage: python -m launch.benchmark <part>, part one of {PARTS}; "
                             f"got {argv[1:]}")
    part = argv[1]
    module = importlib.import_module(f"launch.benchmarks.{part}")
    os.environ.setdefault("MUJOCO_GL", "egl")
    result = module.run(quick=FLAGS.quick)
    result = {"part": part, **result}
    sys.stdout.flush()
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    app.run(main)
