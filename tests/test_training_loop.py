"""The shared training loop: checkpoints, the before-save hook, resume (tiny, CPU)."""
import os

import tensorflow as tf

from mbold_tf.utils import training


def _loop(root, total, calls):
    """A loop over one variable w (+1 per step); before_save records the step into calls."""
    step = tf.Variable(0, dtype=tf.int64)
    w = tf.Variable(0.0)
    loop = training.TrainingLoop(root, {"w": w}, step, total, checkpoint_every=4,
                                 summary_every=2, log_every=100,
                                 before_save=lambda: calls.append(int(step.numpy())))

    def train_step():
        w.assign_add(1.0)
        return {"loss": tf.identity(w)}

    return loop, step, w, train_step


def test_before_save_runs_once_per_checkpoint_and_resume_continues(tmp_path):
    root = str(tmp_path / "run")
    calls = []
    loop, _, _, train_step = _loop(root, 8, calls)
    loop.run(train_step)
    assert calls == [4, 8]  # the last step is a checkpoint step: not saved twice
    assert os.path.basename(loop.manager.latest_checkpoint) == "ckpt-8"
    calls2 = []
    loop2, step2, w2, train_step2 = _loop(root, 10, calls2)
    loop2.run(train_step2)
    assert int(step2.numpy()) == 10 and float(w2.numpy()) == 10.0  # resumed from 8
    assert calls2 == [10]  # final save off the checkpoint period
    # a finished run started again trains nothing and writes nothing
    calls3 = []
    loop3, _, _, train_step3 = _loop(root, 10, calls3)
    loop3.run(train_step3)
    assert calls3 == []
