"""The shared training loop: checkpoints, the before-save hook, resume (tiny, CPU)."""
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import mbold_tf
from mbold_tf.utils import run_lock
from mbold_tf.utils import timing
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


def test_ruined_weights_are_never_saved_and_a_nan_names_its_step(tmp_path):
    """A finite loss over non-finite weights must not become the 'last good' checkpoint."""
    root = str(tmp_path / "run")
    step = tf.Variable(0, dtype=tf.int64)
    w = tf.Variable(1.0)
    loop = training.TrainingLoop(root, {"w": w}, step, 10, checkpoint_every=2,
                                 summary_every=100, log_every=100)

    def train_step():  # w overflows to inf at step 3; the loss stays finite until step 5
        w.assign(w * 1e15)
        return {"loss": tf.constant(1.0) if int(step.numpy()) < 4 else tf.constant(np.nan)}

    with pytest.raises(training.NonFiniteLossError, match="Non-finite weights .* at step 4.*"
                                                          "Last good checkpoint: .*ckpt-2"):
        loop.run(train_step)
    assert os.path.basename(loop.manager.latest_checkpoint) == "ckpt-2"

    step.assign(4)
    w.assign(1.0)
    loop2 = training.TrainingLoop(str(tmp_path / "run2"), {"w": w}, step, 10,
                                  checkpoint_every=100, summary_every=100, log_every=100)
    with pytest.raises(training.NonFiniteLossError, match="at step 5;"):
        loop2.run(train_step)  # the NaN at step 5 is named at once, not at a logged step


def test_a_second_writer_of_a_run_directory_is_refused(tmp_path):
    root = str(tmp_path / "run")
    with run_lock.hold(root):
        calls = []
        loop, _, _, train_step = _loop(root, 4, calls)
        with pytest.raises(run_lock.RunDirectoryLockedError,
                           match=f"PID {os.getpid()} on .*use another --root_dir"):
            loop.run(train_step)
        assert calls == [] and loop.manager.latest_checkpoint is None
    loop.run(train_step)  # released: the same run now trains
    assert calls == [4]
    # A lock left by a process that died is no lock: flock is released with its process.
    script = (f"import os; from mbold_tf.utils import run_lock; "
              f"h = run_lock.hold({root!r}); h.__enter__(); os._exit(9)")
    subprocess.run([sys.executable, "-c", script], cwd=mbold_tf.REPO_ROOT, check=False)
    with run_lock.hold(root):
        pass


@pytest.mark.parametrize("launcher, binding", [
    ("train_predictor", "train_predictor.batch_size=0"),
    ("train_distance", "train_distance.batch_size=-4"),
])
def test_launchers_name_a_bad_size_without_a_traceback(tmp_path, launcher, binding):
    preset = "predictor" if launcher == "train_predictor" else "distance"
    run = subprocess.run(
        [sys.executable, "-m", f"launch.{launcher}", f"--root_dir={tmp_path / 'run'}",
         f"--gin_file=gin/presets/tiny/{preset}.gin", f"--gin_param={binding}"],
        cwd=mbold_tf.REPO_ROOT, capture_output=True, text=True, check=False)
    name, value = binding.split("=")
    assert run.returncode != 0
    assert f"launch.{launcher}: {name} must be a positive integer; got {value}" in run.stderr
    assert "Traceback" not in run.stderr
    # A start that fails its checks writes no run record and leaves no run directory.
    assert not (tmp_path / "run").exists()


def test_a_scalar_outside_its_bounds_stops_the_run_as_diverged(tmp_path):
    step = tf.Variable(0, dtype=tf.int64)
    w = tf.Variable(0.0)
    loop = training.TrainingLoop(str(tmp_path / "run"), {"w": w}, step, 10, checkpoint_every=2,
                                 summary_every=100, log_every=100,
                                 bounds={"q_data": (-10.0, 11.0)})

    def train_step():  # q_data grows 4 per step: 12 > 11 at step 3
        w.assign_add(4.0)
        return {"loss": tf.constant(0.5), "q_data": tf.identity(w)}

    with pytest.raises(training.NonFiniteLossError,
                       match=r"diverged at step 3: q_data = 12 \(allowed \(-10.0, 11.0\)\).*"
                             r"Last good checkpoint: .*ckpt-2"):
        loop.run(train_step)


def test_leftovers_of_an_interrupted_save_are_removed_on_the_next_start(tmp_path):
    root = str(tmp_path / "run")
    calls = []
    loop, _, _, train_step = _loop(root, 4, calls)
    loop.run(train_step)
    ckpt = os.path.join(root, "ckpt")
    os.makedirs(os.path.join(ckpt, "ckpt-8_temp", "part-0"))
    open(os.path.join(ckpt, "checkpoint.tmp1234abcd"), "w").close()
    loop2, step2, _, train_step2 = _loop(root, 8, [])
    assert sorted(f for f in os.listdir(ckpt) if "tmp" in f or "temp" in f) == []
    loop2.run(train_step2)
    assert int(step2.numpy()) == 8 and os.path.basename(loop2.manager.latest_checkpoint) == \
        "ckpt-8"


def test_each_process_that_trains_a_run_adds_a_timed_segment(tmp_path):
    """timing.json: one segment per process, ending at its last save; a resumed run adds one,
    and a segment past the checkpoint a run resumes from is dropped with it."""
    root = str(tmp_path / "run")
    assert timing.training_time(root) is None
    loop, _, _, train_step = _loop(root, 8, [])
    loop.run(train_step)
    first = timing.training_time(root)
    assert first["timed_steps"] == 8 and first["first_step"] == 0
    assert first["wall_minutes"] > 0 and first["cpu_minutes"] > 0
    loop2, _, _, train_step2 = _loop(root, 10, [])
    loop2.run(train_step2)
    both = timing.training_time(root)
    assert both["timed_steps"] == 10 and both["first_step"] == 0
    assert both["cpu_minutes"] >= first["cpu_minutes"]
    # the newest checkpoint (step 10) is lost: the run resumes from 8 and forgets 8 -> 10
    for name in os.listdir(os.path.join(root, "ckpt")):
        if name.startswith("ckpt-10") or name == "checkpoint":
            os.remove(os.path.join(root, "ckpt", name))
    with open(os.path.join(root, "ckpt", "checkpoint"), "w") as f:
        f.write('model_checkpoint_path: "ckpt-8"\nall_model_checkpoint_paths: "ckpt-8"\n')
    loop3, step3, _, train_step3 = _loop(root, 12, [])
    loop3.run(train_step3)
    assert int(step3.numpy()) == 12
    assert timing.training_time(root)["timed_steps"] == 12  # 0->8, 8->12; not 8->10 too
