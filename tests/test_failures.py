"""Nothing silently wrong: results that cannot miscount, run records that match their
checkpoints, verified means verified, one message per failure (docs/design.md, "Failure
behaviour"). Each test injects one fault on a tiny configuration and checks the outcome."""
import json
import os
import subprocess
import sys

import pytest

import mbold_tf
from mbold_tf.eval import results


def _run(args, env=None, **kwargs):
    """Runs ``python -m <args>`` from the repository root as a user would (no test-session TF
    log level); returns the CompletedProcess."""
    environ = {k: v for k, v in os.environ.items()
               if k not in ("TF_CPP_MIN_LOG_LEVEL", "MBOLD_VERBOSE")}
    environ.update(env or {})
    return subprocess.run([sys.executable, "-m"] + list(args), cwd=mbold_tf.REPO_ROOT,
                          capture_output=True, text=True, check=False, env=environ, **kwargs)


def _one_message(run, *needles):
    """The run failed with one message (no traceback) containing every needle."""
    assert run.returncode != 0, run.stdout[-2000:]
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    for needle in needles:
        assert needle in run.stderr, run.stderr[-3000:]


def _results_file(path, successes):
    episodes = []
    for g, success in enumerate(successes):
        metrics = {"goal_index": g, "success": 0.0, "start_object_distance": 0.2,
                   "object_distance": 0.1, "start_arm_distance": 0.2, "arm_distance": 0.1,
                   "object_displacement": 0.1, "object_moved": 1.0}
        episodes.append(results.episode_record("mbold", "predictor", "learned_distance", 0,
                                               metrics, 1.0))
        episodes[-1]["success"] = success
    header = results.make_header("reach", False, 0, len(successes), range(len(successes)), [0],
                                 "cmd", [], {}, {})
    with open(path, "w") as f:
        json.dump({"format": results.FORMAT, "version": results.VERSION, "header": header,
                   "episodes": episodes}, f)
    return path


@pytest.mark.parametrize("bad", [2, "yes", "1", 0.5, None, -1])
def test_a_success_outside_0_and_1_fails_naming_file_episode_and_field(tmp_path, bad):
    path = _results_file(str(tmp_path / "r.json"), [1, 0, bad, 1])
    with pytest.raises(results.ResultsFormatError,
                       match=r"r\.json: episode 2 .*has success = .*must be 0 or 1"):
        results.load_results(path)
    # Booleans and 0/1 are the values a results file holds; they load and count once.
    ok = results.load_results(_results_file(str(tmp_path / "ok.json"), [1, 0, True, False]))
    assert sum(e["success"] for e in ok["episodes"]) == 2


def test_report_of_a_success_of_2_prints_one_message_and_counts_nothing(tmp_path):
    path = _results_file(str(tmp_path / "two.json"), [1, 0, 2, 0])
    run = _run(["launch.report", path])
    _one_message(run, "two.json: episode 2", "success = 2")
    assert "%" not in run.stdout


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    import tensorflow_datasets as tfds

    import tfds_builders  # noqa: F401  (registers mbold_tabletop)

    d = str(tmp_path_factory.mktemp("tfds"))
    tfds.builder("mbold_tabletop/push1_tiny", data_dir=d).download_and_prepare()
    return d


def _train(kind, root, data_dir, *bindings, env=None):
    return _run([f"launch.train_{kind}", f"--root_dir={root}",
                 f"--gin_file=gin/presets/tiny/{kind}.gin",
                 f"--gin_param=train_{kind}.data_dir='{data_dir}'"]
                + [f"--gin_param={b}" for b in bindings], env=env)


def _files(root):
    return {os.path.relpath(os.path.join(d, f), root): open(os.path.join(d, f), "rb").read()
            for d, _, names in os.walk(root) for f in names if f != ".lock"}


def test_a_refused_resume_leaves_the_run_record_of_its_checkpoints(tmp_path, data_dir):
    root = str(tmp_path / "run")
    first = _train("predictor", root, data_dir, "train_predictor.total_steps=2")
    assert first.returncode == 0, first.stderr[-3000:]
    before = _files(root)
    assert "VideoPredictor.width = 4" in before["operative_config.gin"].decode()
    refused = _train("predictor", root, data_dir, "train_predictor.total_steps=4",
                     "VideoPredictor.width=6")
    _one_message(refused, "width: 4 (checkpoint) vs 6 (requested)")
    assert _files(root) == before  # record, settings, data statistics and checkpoints untouched


@pytest.mark.parametrize("binding, needle", [
    ("train_predictor.dataset='{tmp}/no/such/dataset'", "no/such/dataset does not exist"),
    ("train_predictor.dataset='nosuchdir/mine'", "nosuchdir/mine exists either"),  # relative
    ("KeyMapping.proprio='observation/nosuch'", "no key 'observation/nosuch'"),
])
def test_a_failed_start_leaves_no_run_directory(tmp_path, data_dir, binding, needle):
    root = tmp_path / "run"
    run = _train("predictor", str(root), data_dir, binding.format(tmp=tmp_path))
    _one_message(run, needle.format(tmp=tmp_path))
    assert not root.exists()


def test_sigterm_saves_a_checkpoint_labelled_with_every_step_counter_in_it(tmp_path):
    """The signal arrives inside a step, after the step's own counter moved: the step finishes,
    so the checkpoint's label, the loop's step and the inner counter agree."""
    import signal

    import tensorflow as tf

    from mbold_tf.utils import training

    step, inner = tf.Variable(0, dtype=tf.int64), tf.Variable(0, dtype=tf.int64)
    loop = training.TrainingLoop(str(tmp_path / "run"), {"inner": inner}, step, 100,
                                 checkpoint_every=2, summary_every=100, log_every=100)

    def train_step():  # as an agent's train(): its own counter first, then more work
        inner.assign_add(1)
        if int(inner.numpy()) == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return {"loss": tf.reduce_sum(tf.ones([64, 64]) * tf.cast(inner, tf.float32))}

    try:
        loop.run(train_step)
        raised = None
    except BaseException as e:  # pylint: disable=broad-except
        raised = e
    latest = loop.manager.latest_checkpoint
    reader = tf.train.load_checkpoint(latest)
    label = int(latest.rsplit("-", 1)[1])
    assert (label, reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE"),
            reader.get_tensor("inner/.ATTRIBUTES/VARIABLE_VALUE")) == (3, 3, 3)
    assert isinstance(raised, training.TrainingInterrupted), repr(raised)
    assert "SIGTERM: stopped at step 3, saved as " in str(raised) and "ckpt-3; rerun" in str(raised)
    assert raised.exit_code == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers put back


def test_sigterm_of_a_training_launcher_prints_one_message_and_resumes(tmp_path, data_dir):
    import signal
    import time

    import tensorflow as tf

    root = str(tmp_path / "run")
    environ = {k: v for k, v in os.environ.items()
               if k not in ("TF_CPP_MIN_LOG_LEVEL", "MBOLD_VERBOSE")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "launch.train_distance", f"--root_dir={root}",
         "--gin_file=gin/presets/tiny/distance.gin",
         f"--gin_param=train_distance.data_dir='{data_dir}'",
         "--gin_param=train_distance.total_steps=100000",
         "--gin_param=train_distance.checkpoint_every=100000"],
        cwd=mbold_tf.REPO_ROOT, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    err = []
    for line in proc.stderr:  # wait until it trains, then stop it mid-run
        err.append(line)
        if "first step done" in line:
            time.sleep(1.0)
            proc.send_signal(signal.SIGTERM)
            break
    rest_out, rest_err = proc.communicate(timeout=300)
    stderr = "".join(err) + rest_err
    assert proc.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    assert "launch.train_distance: SIGTERM: stopped at step" in stderr
    latest = tf.train.latest_checkpoint(os.path.join(root, "ckpt"))
    label = int(latest.rsplit("-", 1)[1])
    reader = tf.train.load_checkpoint(latest)
    counters = {name: int(reader.get_tensor(name)) for name, shape in
                tf.train.list_variables(latest) if "step" in name.lower() and shape == []}
    assert counters and set(counters.values()) == {label}, (label, counters)
    assert os.path.exists(os.path.join(root, "operative_config.gin"))


_DISK_SCRIPT = """
import os, sys
from launch import common
import tensorflow as tf
from mbold_tf.utils import training
root, mode = sys.argv[1], sys.argv[2]
step, w = tf.Variable(0, dtype=tf.int64), tf.Variable(tf.zeros([40000]))  # 160 kB a checkpoint
loop = training.TrainingLoop(root, {"w": w}, step, 10, checkpoint_every=2, summary_every=100,
                             log_every=100, max_to_keep=5)
if mode == "train":
    with common.user_errors("launch.train_test"):
        loop.run(lambda: {"loss": tf.reduce_sum(w.assign_add(tf.ones([40000])))})
else:
    print("RESUMED", loop.restore(), int(step.numpy()), sorted(os.listdir(root + "/ckpt")))
"""


def _can_mount_tmpfs():
    try:
        return subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs tmpfs /mnt"],
                              capture_output=True, check=False).returncode == 0
    except OSError:
        return False


@pytest.mark.skipif(not _can_mount_tmpfs(), reason="needs unshare -rm (user namespaces) to "
                                                   "mount a small tmpfs")
def test_a_full_disk_during_a_save_names_the_last_good_checkpoint_which_resumes(tmp_path):
    """A real full disk: a 256 kB tmpfs holds the checkpoint of step 2, not that of step 4."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    script = tmp_path / "disk.py"
    script.write_text(_DISK_SCRIPT)
    environ = {k: v for k, v in os.environ.items() if k != "MBOLD_VERBOSE"}
    run = subprocess.run(
        ["unshare", "-rm", "sh", "-c",
         f"mount -t tmpfs -o size=256k tmpfs {mnt} && {sys.executable} {script} {mnt}/run train;"
         f" echo RC=$?; {sys.executable} {script} {mnt}/run resume"],
        cwd=mbold_tf.REPO_ROOT, capture_output=True, text=True, check=False, env=environ)
    assert "RC=1" in run.stdout, run.stdout + run.stderr[-3000:]
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    assert (f"launch.train_test: Could not save the checkpoint of step 4 in {mnt}/run/ckpt: No "
            f"space left on device. Last good checkpoint: {mnt}/run/ckpt/ckpt-2") in run.stderr
    assert f"The partial write was removed: ['{mnt}/run/ckpt/ckpt-4_temp']" in run.stderr
    assert (f"RESUMED {mnt}/run/ckpt/ckpt-2 2 ['checkpoint', 'ckpt-2.data-00000-of-00001', "
            f"'ckpt-2.index']") in run.stdout


def test_every_success_and_a_failure_of_each_policy_keep_a_gif(tmp_path):
    """Goal 1's goal is its start (a policy that stands still succeeds there); goals 0 and 2
    fail. Without any requested GIFs, the success and the first failure are kept."""
    import dataclasses

    import numpy as np
    from tf_agents.policies import scripted_py_policy

    from mbold_tf.envs import goal_env
    from mbold_tf.envs import goals
    from mbold_tf.eval import goal_eval

    goal_set = goals.generate_goal_set("reach", num_goals=3, seed=0)
    at_start = {}
    for name in ("states", "ee", "blocks", "door"):
        goal = np.array(getattr(goal_set, f"goal_{name}"))
        goal[1] = getattr(goal_set, f"start_{name}")[1]
        at_start[f"goal_{name}"] = goal
    goal_set = dataclasses.replace(goal_set, **at_start)
    env = goal_env.GoalConditionedPyEnvironment(goal_set)
    try:
        still = scripted_py_policy.ScriptedPyPolicy(
            env.time_step_spec(), env.action_spec(),
            [(1000, np.zeros(env.action_spec().shape, np.float32))])
        rows = goal_eval.evaluate_py_policy(env, still, [0, 1, 2], gif_dir=str(tmp_path),
                                            num_gifs=0, tag="still_")
    finally:
        env.close()
    assert [int(r["success"]) for r in rows] == [0, 1, 0]
    assert sorted(os.listdir(tmp_path)) == ["still_goal0.gif", "still_goal1.gif"]


@pytest.mark.parametrize("role", ["proprio", "action", "image"])
def test_a_wrong_key_suggests_only_keys_of_a_fitting_shape(data_dir, role):
    from mbold_tf.data import rlds

    with pytest.raises(rlds.MappingError) as raised:
        rlds.load_episodes("mbold_tabletop/push1_tiny", "train", data_dir=data_dir,
                           mapping=rlds.KeyMapping(**{role: "observation/nosuch"}))
    message = str(raised.value)
    assert "'reward'" in message.split("available step keys:")[1]  # listed...
    suggested = message.split(f"KeyMapping.{role}='")[1].split("'")[0]
    assert suggested != "reward"  # ...but a scalar is never suggested
    expect = {"image": "observation/image", "action": "action",
              "proprio": "observation/joint_pos"}[role]  # of the right shape, named best
    assert suggested == expect, message
    fitting = message.split("Keys holding ")[1]
    assert "'reward'" not in fitting and "'is_first'" not in fitting


def test_a_role_no_key_fits_gets_no_suggestion():
    import tensorflow as tf

    from mbold_tf.data import rlds

    spec = {"reward": tf.TensorSpec([], tf.float32), "image": tf.TensorSpec([64, 64, 3], tf.uint8)}
    with pytest.raises(rlds.MappingError, match=r"no key 'joints'.*None of them holds float "
                                                r"vectors \[P\], as the proprio must") as raised:
        rlds._get(spec, "joints", "proprio")  # pylint: disable=protected-access
    assert "--gin_param" not in str(raised.value)


def test_build_dataset_over_a_flipped_byte_fails_its_checksum(data_dir, tmp_path):
    """One flipped byte inside a record keeps every record header: counting headers passes, the
    records' CRC32C checksums do not."""
    import shutil

    bad = str(tmp_path / "bad")
    shutil.copytree(data_dir, bad)
    version_dir = os.path.join(bad, "mbold_tabletop", "push1_tiny", "1.0.0")
    shard = [f for f in os.listdir(version_dir) if "train.tfrecord" in f][0]
    path = os.path.join(version_dir, shard)
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0xFF]))
    run = _run(["launch.build_dataset", "--config=push1_tiny", f"--data_dir={bad}"])
    _one_message(run, f"{shard} fails its checksum at record", "Delete", "rebuild")
    assert "verified_episodes" not in run.stdout


def test_a_quickstart_rerun_keeps_the_first_runs_stage_times(tmp_path):
    from launch import quickstart

    out = str(tmp_path)
    first = {"timings_s": {"train_predictor": 326.0}, "seconds": 713.0, "task": "push1"}
    quickstart.write_summary(out, first)
    rerun = quickstart.write_summary(out, dict(first, timings_s={"train_predictor": 15.8},
                                               seconds=40.0))
    with open(os.path.join(out, "summary.json")) as f:
        written = json.load(f)
    assert written == rerun
    assert written["timings_s"] == {"train_predictor": 15.8}  # this run's
    assert [r["timings_s"]["train_predictor"] for r in written["runs"]] == [326.0, 15.8]
    assert [r["seconds"] for r in written["runs"]] == [713.0, 40.0]
    # A summary written before the runs were kept becomes the first run.
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(first, f)
    again = quickstart.write_summary(out, dict(first, timings_s={"train_predictor": 9.0}))
    assert [r["timings_s"]["train_predictor"] for r in again["runs"]] == [326.0, 9.0]


def test_quickstart_names_the_tasks_for_an_unknown_one(tmp_path):
    run = _run(["launch.quickstart", "--preset=smoke", "--task=nosuch", f"--out={tmp_path}"])
    _one_message(run, "--task=nosuch", "push1", "reach", "door_slide")
    assert "BuilderConfig" not in run.stderr


def _readme_commands():
    """The README's shell commands: (program, [--flag=value, ...]) with $Q substituted and
    continuation lines joined."""
    import re
    import shlex

    with open(os.path.join(mbold_tf.REPO_ROOT, "README.md")) as f:
        blocks = re.findall(r"```bash\n(.*?)```", f.read(), re.S)
    commands, variables = [], {}
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            for part in line.split("#")[0].split(";"):
                words = shlex.split(part.strip())
                if len(words) == 1 and "=" in words[0]:
                    name, value = words[0].split("=", 1)
                    variables[name] = value
                    continue
                words = [re.sub(r"\$(\w+)", lambda m: variables[m.group(1)], w) for w in words]
                if words[:2] == ["python", "-m"]:
                    commands.append((words[2], words[3:]))
                elif words[:1] == ["python"] and words[1].endswith(".py"):
                    commands.append((words[1], words[2:]))
    return commands


def test_readme_commands_run_on_what_command_1_writes():
    """Every run or export directory a README command reads is one the quickstart (command 1)
    writes, or one an earlier README command writes; every flag exists."""
    from launch import quickstart

    out = quickstart.default_out("cpu")
    written = {os.path.join(out, "runs", "predictor"), os.path.join(out, "runs", "distance")}
    commands = _readme_commands()
    assert any(program == "launch.evaluate" for program, _ in commands)
    helps = {}
    for program, args in commands:
        flags = dict(a.lstrip("-").split("=", 1) if "=" in a else (a.lstrip("-"), None)
                     for a in args if a.startswith("--"))
        if program not in helps:
            argv = [program, "--helpfull"] if program.startswith("launch.") else None
            helps[program] = (_run(argv).stdout if argv else subprocess.run(
                [sys.executable, program, "--help"], cwd=mbold_tf.REPO_ROOT,
                capture_output=True, text=True, check=False).stdout)
        for flag, value in flags.items():
            assert f"--{flag}" in helps[program], (program, flag)
            if flag.endswith("_dir") and flag not in ("root_dir", "data_dir"):
                assert value in written, f"{program} --{flag}={value}: nothing writes it"
        if program in ("launch.export", "launch.evaluate") and "task" in flags:
            assert flags["task"] == "push1"  # the quickstart's task
        if program == "launch.export":
            written.add(flags["out"])
