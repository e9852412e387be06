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
    action = summary["export"]["first_action"]
    assert len(action) == 4 and all(-1.0 <= a <= 1.0 for a in action)
