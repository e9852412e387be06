"""The paper against ours: the paper-numbers file is checked, each entry is put beside our cell
and marked above, within or below; tasks the paper does not list get no paper cell."""
import copy
import json
import os
import subprocess
import sys

import pytest

import mbold_tf
from mbold_tf.eval import paper_comparison as pc
from mbold_tf.eval import results
from mbold_tf.eval import results_page

ROOT = mbold_tf.REPO_ROOT
PUSH1 = os.path.join(ROOT, "results", "push1_results_preset.json")
REACH = os.path.join(ROOT, "results", "reach_results_preset.json")


def _paper(tmp_path, entries, name="paper.json"):
    path = str(tmp_path / name)
    with open(path, "w") as f:
        json.dump({"source": "a test", "entries": entries}, f)
    return path


def _with_success(data, method, value):
    """A copy of a results dict whose ``method`` episodes all have success ``value`` (a
    callable of the episode's position among them)."""
    data = copy.deepcopy(data)
    eps = [e for e in data["episodes"] if e["method"] == method]
    for i, e in enumerate(eps):
        e["success"] = value(i)
    return data


def _files(mbold_value, q_value):
    """Two files on the same push1 goals (a join needs two): MBOLD and Q-only with the given
    successes, and the Q-only cell alone."""
    data = results.load_results(PUSH1)
    data = _with_success(_with_success(data, "mbold", mbold_value), "q_only", q_value)
    q_alone = copy.deepcopy(data)
    q_alone["episodes"] = [e for e in q_alone["episodes"] if e["method"] == "q_only"]
    return [("a.json", data), ("b.json", q_alone)]


def test_verdict_marks_above_within_and_below():
    assert pc.verdict(0.60, 0.80, 50.0, 5.0) == "above"
    assert pc.verdict(0.50, 0.80, 50.0, 5.0) == "within"  # reaches the paper's mean + std
    assert pc.verdict(0.20, 0.44, 50.0, 5.0) == "below"
    assert pc.verdict(0.20, 0.46, 50.0, 5.0) == "within"
    assert pc.verdict(0.51, 0.70, 50.0, None) == "above"  # no std: the mean alone
    assert pc.verdict(0.40, 0.49, 50.0, None) == "below"


def test_paper_section_marks_each_cell_from_the_results(tmp_path):
    paper = pc.load_paper_numbers(_paper(tmp_path, [
        {"task": "push1", "goals": "regular", "method": "mbold", "success": 50.0, "std": 5.0,
         "where": "Table 1"},
        {"task": "push1", "goals": "regular", "method": "q_only", "success": 10.0, "std": 2.0,
         "where": "Table 1"},
        {"task": "push1", "goals": "hard", "method": "mbold", "success": 40.0, "std": 7.0,
         "where": "Table 5"}]))
    reach = results.load_results(REACH)
    reach_q = copy.deepcopy(reach)
    reach_q["episodes"] = [e for e in reach_q["episodes"] if e["method"] == "q_only"]
    files = _files(lambda i: 1, lambda i: 0) + [("r.json", reach), ("rq.json", reach_q)]
    rows = {tuple(c.strip() for c in line.split("|")[1:4]): line
            for line in pc.paper_section(files, paper)[2:] if line.startswith("| ")}
    assert rows[("push1", "regular", "MBOLD")].endswith("| 100 [94, 100], 60 | above |")
    assert rows[("push1", "regular", "Q-function only")].endswith("| 0 [0, 6], 60 | below |")
    assert rows[("push1", "hard", "MBOLD")].endswith("| — | not evaluated |")
    assert "| 50 ± 5, Table 1 |" in rows[("push1", "regular", "MBOLD")]
    # reach is not in this paper file: our cells appear without a paper cell, not as an error
    assert rows[("reach", "regular", "MBOLD")].endswith("| no paper number |")
    assert "| — |" in rows[("reach", "regular", "MBOLD")]
    half = pc.paper_section(_files(lambda i: i % 2, lambda i: 0), paper)
    assert any(line.startswith("| push1 | regular | MBOLD |") and line.endswith("| within |")
               for line in half)


def test_an_entry_of_an_unknown_task_or_method_fails_naming_the_file_and_the_entry(tmp_path):
    path = _paper(tmp_path, [{"task": "push1", "goals": "regular", "method": "mbold",
                              "success": 55.2, "std": 4.3, "where": "Table 1"},
                             {"task": "drawer", "goals": "regular", "method": "mbold",
                              "success": 80, "std": None, "where": "Figure 4"}])
    with pytest.raises(pc.PaperNumbersError, match=r"paper.json: entry 1 .*drawer.*not one of"):
        pc.load_paper_numbers(path)
    path = _paper(tmp_path, [{"task": "push1", "goals": "regular", "method": "magic",
                              "success": 55.2, "std": 4.3, "where": "Table 1"}], "m.json")
    with pytest.raises(pc.PaperNumbersError, match=r"m.json: entry 0 .*'magic'"):
        pc.load_paper_numbers(path)
    run = subprocess.run([sys.executable, "-m", "launch.report", PUSH1, "--out",
                          str(tmp_path / "page.md"), "--paper", _paper(tmp_path, [
                              {"task": "push9", "goals": "regular", "method": "mbold",
                               "success": 1, "std": None, "where": "x"}], "bad.json")],
                         cwd=ROOT, capture_output=True, text=True, check=False)
    assert run.returncode != 0 and "bad.json: entry 0" in run.stderr
    assert "Traceback" not in run.stderr


def test_the_committed_paper_numbers_load_and_open_the_results_page():
    paper = pc.load_paper_numbers(pc.default_paper_path())
    assert {(e["task"], e["goals"], e["method"]) for e in paper["entries"]} >= {
        ("push1", "regular", "mbold"), ("push3", "regular", "mbold"),
        ("door_slide", "regular", "mbold"), ("push1", "hard", "mbold")}
    page = results_page.results_page([os.path.relpath(PUSH1, ROOT)], "x.md",
                                     paper_path=pc.default_paper_path())
    assert "## The paper against ours" in page
