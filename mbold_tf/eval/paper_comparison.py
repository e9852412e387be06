"""The paper's reported success rates beside ours, generated (never typed into a table).

The paper's numbers live in one data file (``results/paper/mbold_iclr2021.json``): its
``source`` and a list of ``entries``, each ``{task, goals ('regular' | 'hard'), method,
success (%), std (% across training seeds, or null), where (table or figure),
compare_with (optional: our task names this entry is compared with; default [task])}``.
:func:`paper_section` puts each entry beside our cell for the same task, goal kind and method,
taken from the join the README's headline shows (:func:`mbold_tf.eval.report.headline_joins`),
and marks it:

* **above**: our 95% interval's lower end is above the paper's mean + std;
* **below**: our interval's upper end is below the paper's mean − std;
* **within**: otherwise (our interval reaches the paper's mean ± one std; the mean alone where
  the paper gives no std).

Our tasks and goal kinds that the paper does not list appear with an empty paper cell; a paper
entry naming a task or method this project does not know fails naming the file and the entry.
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import mbold_tf
from mbold_tf.envs import tasks as tasks_lib
from mbold_tf.eval import report

PAPER_NUMBERS = os.path.join("results", "paper", "mbold_iclr2021.json")
GOAL_KINDS = ("regular", "hard")
# The paper's method → our (method, planning model) cell: planners with the learned video
# predictor, model-free methods without a model.
CELLS = {"mbold": ("mbold", "predictor"), "vf": ("vf", "predictor"),
         "vae": ("vae", "predictor"), "temporal": ("temporal", "predictor"),
         "q_only": ("q_only", "none"), "gcbc": ("gcbc", "none"), "sorb": ("sorb", "none"),
         "rig": ("rig", "none"), "dreamer": ("dreamer", "none")}
# Our cells listed for a task even where the paper gives no number.
SHOWN = ("mbold", "q_only")
VERDICTS = ("above", "within", "below")


class PaperNumbersError(ValueError):
    """A malformed paper-numbers file (named in the message with the entry)."""


def load_paper_numbers(path: str) -> Dict[str, Any]:
    """The checked contents of a paper-numbers file: {'source': str, 'entries': [dict]}.

    Raises PaperNumbersError naming ``path`` and the entry for an unknown task, goal kind or
    method, a missing field or a success outside [0, 100]."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, dict) or not isinstance(data.get("entries"), list) \
            or not data.get("source"):
        raise PaperNumbersError(f"{path}: expected {{'source': ..., 'entries': [...]}}.")
    for i, entry in enumerate(data["entries"]):
        where = f"{path}: entry {i} {json.dumps(entry, sort_keys=True)}"
        missing = [k for k in ("task", "goals", "method", "success", "where") if k not in entry]
        if missing:
            raise PaperNumbersError(f"{where} lacks {missing}.")
        for task in [entry["task"]] + list(entry.get("compare_with", [])):
            if task not in tasks_lib.TASKS:
                raise PaperNumbersError(f"{where} names task {task!r}, which is not one of this "
                                        f"project's tasks {sorted(tasks_lib.TASKS)}.")
        if entry["goals"] not in GOAL_KINDS:
            raise PaperNumbersError(f"{where}: goals must be one of {GOAL_KINDS}.")
        if entry["method"] not in CELLS:
            raise PaperNumbersError(f"{where} names method {entry['method']!r}; known: "
                                    f"{sorted(CELLS)}.")
        std = entry.get("std")
        if not 0 <= float(entry["success"]) <= 100 or (std is not None and float(std) < 0):
            raise PaperNumbersError(f"{where}: success must be a percentage and std >= 0.")
    return data


def verdict(ci_low: float, ci_high: float, paper: float, std: Optional[float]) -> str:
    """'above', 'within' or 'below': our 95% interval [ci_low, ci_high] (fractions) against the
    paper's mean ± std (percent; std None: the mean alone)."""
    band = (std or 0.0) / 100.0
    if ci_low > paper / 100.0 + band:
        return "above"
    if ci_high < paper / 100.0 - band:
        return "below"
    return "within"


def _paper_cell(entry: Mapping[str, Any]) -> str:
    std = entry.get("std")
    number = f"{entry['success']:g}" + ("" if std is None else f" ± {std:g}")
    return f"{number}, {entry['where']}"


def paper_section(files: Sequence[Tuple[str, Mapping[str, Any]]], paper: Mapping[str, Any],
                  anchors: Sequence[str] = ()) -> List[str]:
    """Markdown lines: a table of task, goals, method, the paper's success ± std (source),
    ours (success % [95% CI], n) and the verdict, for every paper entry and for our MBOLD and
    Q-only cells of tasks the paper does not list; ``paper`` from :func:`load_paper_numbers`."""
    ours: Dict[Tuple[str, str], Dict] = {}  # (task, goal kind) -> rows by cell
    for label, join in report.headline_joins(files, anchors).items():
        ours[(join.key[0], "hard" if join.key[1] else "regular")] = report.join_rows(join)
    rows: List[Tuple] = []
    covered = set()
    for entry in paper["entries"]:
        cell = CELLS[entry["method"]]
        for task in entry.get("compare_with", [entry["task"]]):
            covered.add((task, entry["goals"], entry["method"]))
            row = ours.get((task, entry["goals"]), {}).get(cell)
            mark = "not evaluated" if row is None else verdict(
                row["ci_low"], row["ci_high"], entry["success"], entry.get("std"))
            rows.append((task, entry["goals"], entry["method"], _paper_cell(entry),
                         "—" if row is None else report.cell_text(row), mark))
    for (task, goals), cells in sorted(ours.items()):
        for method in SHOWN:
            row = cells.get(CELLS[method])
            if row is not None and (task, goals, method) not in covered:
                rows.append((task, goals, method, "—", report.cell_text(row), "no paper number"))
    lines = ["| task | goals | method | paper: success % ± std, where | ours: success % "
             "[95% CI], n | ours vs paper |", "|---|---|---|---|---|---|"]
    lines += [f"| {t} | {g} | {report.METHOD_NAMES.get(m, m)} | {p} | {o} | {v} |"
              for t, g, m, p, o, v in rows]
    return lines + ["", f"Paper: {paper['source']}"]


def default_paper_path() -> str:
    """The committed paper-numbers file, relative to the repository root."""
    return os.path.join(mbold_tf.REPO_ROOT, PAPER_NUMBERS)
