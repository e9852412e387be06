"""The device check (``launch.benchmark device``) runs end to end; here on the CPU, --quick.

No accelerator is lent to CI, so this is the only run the script gets before a GPU loan: it must
print one JSON object with every part measured or explicitly marked (skipped, GPU only, failed).
"""
import json
import os
import subprocess
import sys

import mbold_tf


def test_device_check_quick_on_cpu_prints_every_part():
    env = dict(os.environ, MUJOCO_GL="egl", CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-m", "launch.benchmark", "device", "--quick"],
                          cwd=mbold_tf.REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=480)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["part"] == "device" and out["device"]["kind"] == "CPU"
    assert out["replan"]["replan_s"] > 0 and out["replan"]["exported_replan_s"] > 0
    # --quick runs the tiny preset's planner, predictor and distance networks
    assert out["replan"]["config"] == "tiny"
    assert out["replan"]["predicted_frames_per_replan"] == 16 * 2 * 4
    assert out["replan"]["predictor_settings"]["width"] == 4
    f32 = out["predictor_train"]["float32"]
    assert f32["steps_per_s"] > 0 and 0 < f32["fraction_of_peak"] < 1
    assert out["predictor_train"]["mixed_precision"].startswith("GPU only")
    assert isinstance(out["predictor_train"]["xla"], (dict, str))
    assert out["distance_train"]["train_steps_per_s_batch64"] > 0
    assert out["distance_train"]["networks"] == "tiny"
    assert out["peak_memory_mib"] is None and out["skipped"] == []
    assert out["wall_s"] < out["budget_s"]
