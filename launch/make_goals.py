"""Generate a task's seeded test-goal set.

    python -m launch.make_goals --task=push1 --num_goals=100 --seed=0 [--hard] \
        --out=artifacts/goals/push1.npz [--frames=docs/push1_goals.png]
"""
import os
import time

from absl import app
from absl import flags
from absl import logging
import numpy as np
from PIL import Image

from mbold_tf.envs import goals
from mbold_tf.envs import tasks

flags.DEFINE_enum("task", "push1", sorted(tasks.TASKS), "Task.")
flags.DEFINE_integer("num_goals", 100, "Number of goals (the paper: 100).")
flags.DEFINE_integer("seed", 0, "Seed; the same seed gives byte-identical goal images.")
flags.DEFINE_bool("hard", False, "Hard goals (arm far from the moved object).")
flags.DEFINE_bool("restricted", False, "Restricted block resets (App. E.3).")
flags.DEFINE_string("out", None, "Output .npz path (default artifacts/goals/<task>[_hard].npz).")
flags.DEFINE_string("frames", None, "Optional PNG with the first 10 goal images side by side.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    out = FLAGS.out or os.path.join(
        "artifacts", "goals", f"{FLAGS.task}{'_hard' if FLAGS.hard else ''}.npz")
    t0 = time.time()
    gs = goals.generate_goal_set(FLAGS.task, FLAGS.num_goals, hard=FLAGS.hard, seed=FLAGS.seed,
                                 restricted=FLAGS.restricted)
    gs.save(out)
    logging.info("Wrote %d %s goals to %s in %.1f s", len(gs), FLAGS.task, out, time.time() - t0)
    if FLAGS.frames:
        strip = np.concatenate(list(gs.goal_images[:10]), axis=1)
        os.makedirs(os.path.dirname(os.path.abspath(FLAGS.frames)), exist_ok=True)
        Image.fromarray(strip).save(FLAGS.frames)
    print(out)


if __name__ == "__main__":
    app.run(main)
