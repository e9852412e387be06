"""The README's main job at the smoke preset runs end to end and writes its table."""
import json
import os

from launch import quickstart


def test_smoke_quickstart(tmp_path):
    out = str(tmp_path / "qs")
    summary = quickstart.run("push1", "smoke", out, data_dir=str(tmp_path / "tfds"))
    assert summary["dataset"]["episodes"] == 8
    assert [r["method"] for r in summary["table"]] == ["mbold", "vf", "q_only", "random"]
    for name in ("results.json", "table.md", "summary.json", "goals_push1.npz",
                 "runs/predictor/config.json", "runs/distance/config.json",
                 "export/push1_mbold/saved_model.pb", "gifs/mbold_seed0_goal0.gif"):
        assert os.path.exists(os.path.join(out, name)), name
    with open(os.path.join(out, "results.json")) as f:
        episodes = json.load(f)["episodes"]
    rows = [e for e in episodes if e["method"] == "mbold"]
    assert len(rows) == 2 and all(0.0 <= r["object_distance"] < 1.0 for r in rows)
    # The table shows the start distance and whether the block moved beside the final distance.
    table = open(os.path.join(out, "table.md")).read()
    assert "| MBOLD | video predictor | 2 |" in table and "object moved %" in table
    assert "start → final" in table
    # Every binding of the preset's gin files was consumed by the job, except the baselines'
    # network settings (the main job trains no baseline): no setting is accepted and ignored.
    import re

    import gin

    def bound(text):
        return {m.group(1) for m in re.finditer(r"^([\w.]+)\s*=", text, re.M)}

    unconsumed = bound(gin.config_str()) - bound(gin.operative_config_str())
    assert unconsumed and all(b.startswith("baseline_settings.") for b in unconsumed), unconsumed
    action = summary["export"]["first_action"]
    assert len(action) == 4 and all(-1.0 <= a <= 1.0 for a in action)


def test_quickstart_outputs_are_per_preset_and_a_clash_names_the_flag(tmp_path):
    """Each preset has its own default --out; models of other settings there name the fix."""
    import subprocess
    import sys

    import mbold_tf

    out = tmp_path / "qs"
    (out / "runs" / "predictor").mkdir(parents=True)
    (out / "runs" / "predictor" / "config.json").write_text(
        json.dumps({"kind": "video_predictor", "settings": {"width": 999}}))
    run = subprocess.run(
        [sys.executable, "-m", "launch.quickstart", "--preset=smoke", f"--out={out}",
         f"--data_dir={tmp_path / 'tfds'}"], cwd=mbold_tf.REPO_ROOT, capture_output=True,
        text=True, check=False)
    assert run.returncode != 0
    assert "width: 999 (checkpoint)" in run.stderr
    assert f"pass another --out (e.g. --out={out}_2)" in run.stderr
    assert "Traceback" not in run.stderr
    assert quickstart.default_out("smoke") != quickstart.default_out("cpu")
