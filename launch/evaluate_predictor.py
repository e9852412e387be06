"""Evaluate a trained video predictor against copy-last-frame (per-step MSE, PSNR, SSIM), and
its control metrics: where its predicted frames put the hand and the block.

    python -m launch.evaluate_predictor --root_dir=/work/runs/predictor_push1_cpu \
        --dataset=mbold_tabletop/push1_cpu --split=validation \
        --strip_path=docs/predictor_strip_push1.png --probe_steps=3000

With ``--probe_steps`` > 0 a position probe (:mod:`mbold_tf.eval.position_probe`) is trained on
the dataset's train split (real frames → privileged positions), checked on the evaluated split's
real frames, then applied to the predicted frames: per predicted step, the error (m) of the hand's
and blocks' positions read from predicted frames, from the real frames (the probe's floor), and
of assuming nothing moves. Prints the tables, then one JSON line; writes
``root_dir/eval_predictor.json``.
"""
import json
import os

from absl import app
from absl import flags
import numpy as np

from mbold_tf.data import pipelines
from mbold_tf.data import rlds
from mbold_tf.eval import position_probe
from mbold_tf.eval import predictor_eval
from mbold_tf.models.video_predictor import load_predictor

flags.DEFINE_string("root_dir", None, "Run directory of a trained predictor.")
flags.DEFINE_string("dataset", "mbold_tabletop/push1_cpu", "TFDS name or prepared directory.")
flags.DEFINE_string("data_dir", None, "TFDS data dir (default ~/tensorflow_datasets).")
flags.DEFINE_string("split", "validation", "Split to evaluate on.")
flags.DEFINE_integer("num_batches", 8, "Batches of windows.")
flags.DEFINE_integer("batch_size", 64, "Windows per batch.")
flags.DEFINE_integer("seed", 0, "Window-sampling seed.")
flags.DEFINE_string("strip_path", None, "If set, write a PNG of real (top) vs predicted rows.")
flags.DEFINE_integer("strip_windows", 4, "Windows in the strip PNG.")
flags.DEFINE_integer("probe_steps", 0, "Train steps of the position probe (0: no control "
                     "metrics; the tabletop datasets need about 3,000).")
flags.DEFINE_integer("probe_max_episodes", 600, "Train episodes the probe learns from.")
flags.mark_flag_as_required("root_dir")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    predictor = load_predictor(FLAGS.root_dir)
    arrays = rlds.load_episodes(FLAGS.dataset, FLAGS.split, data_dir=FLAGS.data_dir)
    result = predictor_eval.evaluate_predictor(predictor, arrays, FLAGS.num_batches,
                                               FLAGS.batch_size, FLAGS.seed)
    result.update(dataset=FLAGS.dataset, split=FLAGS.split, root_dir=FLAGS.root_dir)
    if FLAGS.probe_steps:
        train = rlds.load_episodes(FLAGS.dataset, "train", data_dir=FLAGS.data_dir,
                                   max_episodes=FLAGS.probe_max_episodes)
        probe = position_probe.train_probe(train, steps=FLAGS.probe_steps, seed=FLAGS.seed)
        result["probe"] = {"steps": FLAGS.probe_steps, "train_episodes": train.num_episodes,
                           "on_real_frames": position_probe.probe_check(probe, arrays)}
        result["control"] = position_probe.control_metrics(
            predictor, probe, arrays, num_batches=FLAGS.num_batches,
            batch_size=FLAGS.batch_size, seed=FLAGS.seed)
    with open(os.path.join(FLAGS.root_dir, "eval_predictor.json"), "w") as f:
        json.dump(result, f, indent=1, sort_keys=True)
    if FLAGS.strip_path:
        c = predictor.context
        with_state = predictor.state_conditioned
        batch = next(iter(pipelines.predictor_dataset(
            arrays, batch_size=FLAGS.strip_windows, context=c, horizon=predictor.horizon,
            seed=FLAGS.seed + 1, with_proprio=with_state)))
        pred = predictor.predict(batch["images"][:, :c], batch["actions"], *(
            (batch["proprio"][:, :c],) if with_state else ())).numpy()
        real = batch["images"][:, c:].numpy()
        os.makedirs(os.path.dirname(os.path.abspath(FLAGS.strip_path)), exist_ok=True)
        predictor_eval.save_strip(FLAGS.strip_path, real, np.asarray(pred))
    print(predictor_eval.format_table(result))
    if "control" in result:
        print(position_probe.format_table(result))
    print(predictor_eval.dumps(result))


if __name__ == "__main__":
    app.run(main)
