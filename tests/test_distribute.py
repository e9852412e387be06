"""Multi-worker training: two processes on 127.0.0.1 under MultiWorkerMirroredStrategy."""
import json
import os
import socket
import subprocess
import sys
import time

import pytest
import tensorflow_datasets as tfds

import mbold_tf
import tfds_builders  # noqa: F401
from mbold_tf.utils import distribute

TIMEOUT_S = 420


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("tfds"))
    tfds.builder("mbold_tabletop/push1_tiny", data_dir=d).download_and_prepare()
    return d


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _tf_config(ports, index):
    return json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                       "task": {"type": "worker", "index": index}})


def _start(module, args, tf_config=None):
    env = dict(os.environ, MUJOCO_GL="egl", CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_CONFIG", None)
    if tf_config:
        env["TF_CONFIG"] = tf_config
    return subprocess.Popen([sys.executable, "-m", module, *args], cwd=mbold_tf.REPO_ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait(procs, timeout_s=TIMEOUT_S):
    """(returncode, stdout, stderr) per process; kills them all (SIGKILL: TF's collectives can
    ignore SIGTERM) when the time is up."""
    deadline = time.time() + timeout_s
    out = []
    try:
        for p in procs:
            so, se = p.communicate(timeout=max(1.0, deadline - time.time()))
            out.append((p.returncode, so, se))
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        pytest.fail(f"multi-worker run did not finish in {timeout_s} s")
    return out


def _two_workers(module, args):
    ports = _free_ports(2)
    procs = [_start(module, args, _tf_config(ports, i)) for i in range(2)]
    results = _wait(procs)
    for i, (rc, _, se) in enumerate(results):
        assert rc == 0, f"worker {i} failed:\n{se[-3000:]}"
    return results


def test_task_info_parses_tf_config_and_names_bad_ones():
    assert distribute.task_info("") == distribute.TaskInfo(None, 0, 1, True)
    info = distribute.task_info(_tf_config([1, 2], 1))
    assert (info.task_type, info.task_id, info.num_workers, info.is_chief) == ("worker", 1, 2,
                                                                               False)
    assert distribute.task_info(_tf_config([1, 2], 0)).is_chief
    chief = json.dumps({"cluster": {"chief": ["a:1"], "worker": ["b:2"]},
                        "task": {"type": "worker", "index": 0}})
    assert not distribute.task_info(chief).is_chief
    with pytest.raises(ValueError, match="not one of its cluster's tasks"):
        distribute.task_info(_tf_config([1, 2], 5))
    with pytest.raises(ValueError, match="parameter servers"):
        distribute.task_info(json.dumps({"cluster": {"worker": ["a:1"], "ps": ["b:2"]},
                                         "task": {"type": "worker", "index": 0}}))
    with pytest.raises(ValueError, match="not valid JSON"):
        distribute.task_info("{worker")


@pytest.mark.parametrize("kind", ["predictor", "distance"])
def test_two_workers_train_one_checkpoint_that_one_process_loads(kind, data_dir, tmp_path):
    root = str(tmp_path / kind)
    common = [f"--root_dir={root}", f"--gin_file=gin/presets/tiny/{kind}.gin",
              f"--gin_param=train_{kind}.data_dir='{data_dir}'",
              f"--gin_param=train_{kind}.total_steps=4",
              f"--gin_param=train_{kind}.checkpoint_every=2"]
    results = _two_workers(f"launch.train_{kind}", common)
    chief_log = results[0][2]
    assert "2 replicas in sync" in chief_log and "(chief)" in chief_log
    assert "(not chief)" in results[1][2]
    # One run directory, written by the chief; the other worker's scratch files are gone.
    ckpts = sorted(f for f in os.listdir(os.path.join(root, "ckpt")) if f.endswith(".index"))
    assert ckpts == ["ckpt-2.index", "ckpt-4.index"]
    assert not os.path.exists(os.path.join(root, ".workers"))
    assert os.path.exists(os.path.join(root, "operative_config.gin"))
    # A single process loads it for inference...
    if kind == "predictor":
        from mbold_tf.models import video_predictor
        model = video_predictor.load_predictor(root)
        assert model.width == 4
    else:
        from mbold_tf.agents import checkpoints
        dist = checkpoints.load_distance(root)
        assert dist.method == "cql_td3"
    # ...and resumes its training from step 4.
    single = _wait([_start(f"launch.train_{kind}",
                           common[:3] + [f"--gin_param=train_{kind}.total_steps=6"])])[0]
    assert single[0] == 0, single[2][-3000:]
    assert "Resumed from" in single[2] and "at step 4" in single[2]
    assert json.loads(single[1].strip().splitlines()[-1])["step" if kind == "predictor"
                                                          else "steps"] == 6


def test_unreachable_worker_fails_naming_it(data_dir, tmp_path):
    ports = _free_ports(2)
    t0 = time.time()
    rc, _, err = _wait([_start("launch.train_predictor", [
        f"--root_dir={tmp_path / 'p'}", "--gin_file=gin/presets/tiny/predictor.gin",
        f"--gin_param=train_predictor.data_dir='{data_dir}'",
        "--gin_param=strategy_from_environment.join_timeout_s=5"], _tf_config(ports, 0))],
        timeout_s=120)[0]
    assert rc == -9, err[-2000:]  # killed by the watchdog
    assert f"worker:1 127.0.0.1:{ports[1]}" in err and "did not form within 5 s" in err
    assert time.time() - t0 < 90



_ALL_REDUCE_LOOP = """
import sys
from absl import logging
from launch import common
import tensorflow as tf
from mbold_tf.utils import distribute, training
logging.set_verbosity(logging.INFO)  # "Saved checkpoint" tells the test when to kill
strategy = distribute.strategy_from_environment()
with strategy.scope():
    w = tf.Variable(0.0)
step = tf.Variable(0, dtype=tf.int64)

@tf.function
def train_step():
    def replica():  # an all-reduce over the workers, as every training step makes
        total = tf.distribute.get_replica_context().all_reduce("sum", tf.constant(1.0))
        w.assign_add(total)
        return total
    return {"loss": strategy.reduce("sum", strategy.run(replica), axis=None)}

loop = training.TrainingLoop(sys.argv[1], {"w": w}, step, 10 ** 9, checkpoint_every=20,
                             log_every=10 ** 9, summary_every=10 ** 9)
with common.user_errors("launch.train_test"):
    loop.run(train_step)
"""


def test_a_lost_worker_is_named_in_one_message(tmp_path):
    """Worker 1 of a real two-worker cluster is killed mid-training; the chief stops with one
    message naming it and the checkpoint a restart resumes from (not TF's UnavailableError
    traceback)."""
    ports = _free_ports(2)
    root = str(tmp_path / "run")
    procs = [subprocess.Popen(
        [sys.executable, "-c", _ALL_REDUCE_LOOP, root], cwd=mbold_tf.REPO_ROOT,
        env=dict({k: v for k, v in os.environ.items() if k != "MBOLD_VERBOSE"},
                 TF_CONFIG=_tf_config(ports, i), CUDA_VISIBLE_DEVICES=""),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    try:
        err = []
        for line in procs[0].stderr:  # until the chief has saved a checkpoint
            err.append(line)
            if "Saved checkpoint" in line:
                break
        procs[1].kill()
        rc, _, rest = _wait(procs[:1], timeout_s=300)[0]
    finally:
        for p in procs:
            p.kill()
            p.communicate()
    err = "".join(err) + rest
    assert rc == 1, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert "launch.train_test: Lost worker:1 of the 2-worker cluster at step" in err, err[-3000:]
    assert f"Restart all workers with the same command: they resume from the chief's last " \
           f"checkpoint, {root}/ckpt/ckpt-" in err
