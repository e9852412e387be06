"""Markdown tables from per-episode results files (never typed by hand).

:func:`render` turns one or more results files (:mod:`mbold_tf.eval.results`) into the tables the
README and ``docs/results.md`` show:

1. a header naming the command, planner preset, each model's training steps and dataset, goals ×
   seeds, date and machine;
2. per (method, planning model): n, success % with its Wilson 95% interval, the object's start and
   final distance to the goal, the share of episodes in which the object moved at all, the final
   arm distance and seconds per episode;
3. paired comparisons on the same goals and seeds (:func:`mbold_tf.eval.stats.paired_comparison`);
4. with simulator runs, the control-centric decomposition: how much of each cost's gap to the
   best simulator planner is the predictor's and how much the cost's.

The output depends only on the files, so re-rendering a file reproduces its table byte for byte.
"""
from __future__ import annotations

import collections
import re
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from mbold_tf.eval import stats

METHOD_NAMES = {"mbold": "MBOLD", "vf": "Visual Foresight", "q_only": "Q-function only",
                "random": "random", "gcbc": "GCBC", "vae": "VAE latent ℓ2",
                "temporal": "temporal distance", "privileged": "true distance (privileged)",
                "sorb": "SoRB", "rig": "RIG (collected online)", "dreamer": "Dreamer",
                "dreamer_arm_l2": "Dreamer, ℓ2 arm reward (privileged)",
                "ideal_eq3": "Eq. 3, ideal critic (privileged)"}
MODEL_NAMES = {"predictor": "video predictor", "simulator": "simulator (privileged)",
               "none": "—"}
COST_NAMES = {"learned_distance": "learned distance", "pixel_l2": "pixel ℓ2",
              "vae": "VAE latent ℓ2", "temporal": "temporal distance",
              "privileged": "true distance (privileged)",
              "ideal_eq3": "ideal Eq. 3 steps (privileged)"}

Cell = Tuple[str, str]  # (method, model)


def _cells(episodes: Sequence[Mapping[str, Any]]) -> "collections.OrderedDict[Cell, List]":
    cells: "collections.OrderedDict[Cell, List]" = collections.OrderedDict()
    for e in episodes:
        cells.setdefault((e["method"], e["model"]), []).append(e)
    return cells


def cell_name(cell: Cell) -> str:
    """Human name of a (method, model) cell, e.g. 'MBOLD · simulator (privileged)'."""
    method, model = cell
    name = METHOD_NAMES.get(method, method)
    return name if model == "none" else f"{name} · {MODEL_NAMES.get(model, model)}"


def _success(episodes) -> Dict[Tuple[int, int], float]:
    return {(e["goal_index"], e["seed"]): float(e["success"]) for e in episodes}


def _repeats_every_goal(episodes) -> bool:
    """Whether every goal's episodes have one outcome (a deterministic policy in the
    deterministic environment: its seeds replay the same episode) and some goal has several."""
    by_goal: Dict[int, set] = collections.defaultdict(set)
    for e in episodes:
        by_goal[e["goal_index"]].add((float(e["success"]), round(e["arm_distance"], 6),
                                      round(e["object_distance"], 6)))
    return len(episodes) > len(by_goal) and all(len(v) == 1 for v in by_goal.values())


def summary_rows(episodes: Sequence[Mapping[str, Any]]) -> List[Dict[str, Any]]:
    """Per (method, model) cell, in first-seen order: dicts with method, model, cost, n,
    distinct (the number of different episodes: the goals when every seed replays the same
    episode, else n), successes, success, ci_low, ci_high (Wilson 95% over the distinct
    episodes, so repeated seeds do not narrow it), start_object_distance, object_distance,
    moved_share, arm_distance, seconds (means over the cell's episodes)."""
    rows = []
    for (method, model), eps in _cells(episodes).items():
        n, k = len(eps), int(sum(e["success"] for e in eps))
        distinct = len({e["goal_index"] for e in eps}) if _repeats_every_goal(eps) else n
        low, high = stats.wilson_interval(round(k * distinct / n), distinct)
        mean = lambda key, eps=eps: float(np.mean([e[key] for e in eps]))
        rows.append({"method": method, "model": model, "cost": eps[0]["cost"], "n": n,
                     "distinct": distinct, "successes": k, "success": k / n, "ci_low": low, "ci_high": high,
                     "start_object_distance": mean("start_object_distance"),
                     "object_distance": mean("object_distance"),
                     "moved_share": mean("object_moved"), "arm_distance": mean("arm_distance"),
                     "seconds": mean("seconds")})
    return rows


def _flat(settings: Mapping[str, Any], prefix: str = "") -> Dict[str, Any]:
    """Nested settings as {'agent.tau': 0.005, ...}; lists become tuples (hashable)."""
    flat: Dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, Mapping):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = tuple(value) if isinstance(value, list) else value
    return flat


def varying_settings(headers: Sequence[Mapping[str, Any]]) -> Dict[Tuple[str, str], List[str]]:
    """Per (task, model role), the settings (flattened names, sorted) whose values differ
    between the runs of that role that the headers of that task name, among the runs that
    recorded the setting (an older run's record may lack a newer setting)."""
    runs_of: Dict[Tuple[str, str], Dict[str, Dict[str, Any]]] = collections.defaultdict(dict)
    for header in headers:
        for role, run in header["models"].items():
            if run and run.get("settings") is not None:
                runs_of[(header["task"], role)][run["dir"]] = _flat(run["settings"])
    varying = {}
    for key, runs in runs_of.items():
        names = set().union(*runs.values())
        varying[key] = sorted(k for k in names
                              if len({repr(r[k]) for r in runs.values() if k in r}) > 1)
    return varying


def _settings_note(run: Mapping[str, Any], names: Sequence[str]) -> str:
    """'; settings: gamma = 0.935' for the named settings of a run that recorded them."""
    if not names or run.get("settings") is None:
        return ""
    flat = _flat(run["settings"])
    recorded = [k for k in names if k in flat]
    if not recorded:
        return ""
    return "; settings: " + ", ".join(f"{k} = {flat[k]}" for k in recorded)


def _header_lines(header: Mapping[str, Any], seeds: int, goals: int,
                  varying: Optional[Mapping[Tuple[str, str], Sequence[str]]] = None) -> List[str]:
    """Markdown bullets of a file's header; ``varying`` ((task, role) → setting names, see
    :func:`varying_settings`) names the settings to print for each model run."""
    m = header["machine"]
    gpus = ", ".join(m.get("gpus") or []) or "no GPU"
    cfg = header.get("planner_config") or {}
    planner = ", ".join(f"{k} = {v}" for k, v in cfg.items())
    lines = [f"- Command: `{header['command']}`",
             f"- Goals × seeds: {goals} × {seeds} ({'hard' if header['hard'] else 'regular'} "
             f"goals, goal seed {header['goal_seed']}); date {header['date']}",
             f"- Machine: {m['cpu']}, {m['cores']} logical cores, {gpus} ({m['platform']})",
             f"- Planner: {', '.join(header['planner_gin_files']) or 'code defaults'}"
             + (f" ({planner})" if planner else "")]
    for role, run in header["models"].items():
        if run:
            step = run["step"] if run["step"] is not None else "?"
            data = f" on `{run['dataset']}`" if run.get("dataset") else ""
            members = run.get("members")
            what = (f"the average of {len(members)} runs "
                    + ", ".join(f"`{m['dir']}`" for m in members)
                    + f", {step} training steps" + ("" if "/" in str(step) else " each")
                    if members
                    else f"`{run['dir']}`, {step} training steps")
            lines.append(f"- {role}: {what}{data}"
                         + _time_note(run)
                         + _settings_note(run, (varying or {}).get((header["task"], role), ())))
    return lines


def _time_note(run: Mapping[str, Any]) -> str:
    """', trained in W min wall / C CPU-min' from the run's timing record ('' without one); names
    the first timed step when the record does not cover the whole run."""
    t = run.get("training_time")
    if not t:
        return ""
    part = f" (steps {t['first_step']}–{run['step']} only)" if t["first_step"] else ""
    total = " in all" if run.get("members") else ""
    return (f"; trained in {t['wall_minutes']:.1f} min wall, {t['cpu_minutes']:.1f} CPU-min"
            f"{total}{part}")


def _cpu_minutes(header: Mapping[str, Any]) -> str:
    """Total CPU-minutes of the header's models when every trained model timed its whole run,
    else '—'."""
    runs = [run for run in header["models"].values() if run]
    times = [run.get("training_time") for run in runs]
    if not runs or any(not t or t["first_step"] for t in times):
        return "—"
    return f"{sum(t['cpu_minutes'] for t in times):.1f}"


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _n(row: Mapping[str, Any]) -> str:
    """n, and the distinct episodes when seeds repeat them (e.g. '60 (20 distinct)')."""
    distinct = row.get("distinct", row["n"])
    return str(row["n"]) if distinct == row["n"] else f"{row['n']} ({distinct} distinct)"


def summary_table(rows: Sequence[Mapping[str, Any]]) -> List[str]:
    """Markdown lines of the per-cell table."""
    lines = ["| method | planning model | n | success % [95% CI] | object dist start → final (m) "
             "| object moved % | final arm dist (m) | s / episode |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {METHOD_NAMES.get(r['method'], r['method'])} | "
            f"{MODEL_NAMES.get(r['model'], r['model'])} | {_n(r)} | {_pct(r['success'])} "
            f"[{_pct(r['ci_low'])}, {_pct(r['ci_high'])}] | {r['start_object_distance']:.3f} → "
            f"{r['object_distance']:.3f} | {_pct(r['moved_share'])} | {r['arm_distance']:.3f} | "
            f"{r['seconds']:.1f} |")
    return lines


def comparison_pairs(cells: Sequence[Cell]) -> List[Tuple[Cell, Cell]]:
    """Which (A, B) cells to compare: MBOLD with the predictor against every other cell, and
    for each planner run with both models, the simulator against the predictor."""
    pairs = []
    anchor = ("mbold", "predictor")
    if anchor in cells:
        pairs += [(anchor, c) for c in cells if c != anchor]
    for method, model in cells:
        if model == "simulator" and (method, "predictor") in cells:
            pair = ((method, "simulator"), (method, "predictor"))
            if pair not in pairs and (pair[1], pair[0]) not in pairs:
                pairs.append(pair)
    return pairs


def comparison_table(episodes: Sequence[Mapping[str, Any]],
                     pairs: Optional[Sequence[Tuple[Cell, Cell]]] = None) -> List[str]:
    """Markdown lines of the paired comparisons (empty when there is nothing to pair);
    ``pairs`` defaults to :func:`comparison_pairs` of the episodes' cells."""
    cells = _cells(episodes)
    pairs = comparison_pairs(list(cells)) if pairs is None else pairs
    if not pairs:
        return []
    lines = ["| A | B | pairs | A − B, points [95% CI] | A alone / B alone succeeded | "
             "sign test p |", "|---|---|---|---|---|---|"]
    for a, b in pairs:
        sa, sb = _success(cells[a]), _success(cells[b])
        shared = set(sa) & set(sb)
        c = stats.paired_comparison({k: sa[k] for k in shared}, {k: sb[k] for k in shared})
        lines.append(f"| {cell_name(a)} | {cell_name(b)} | {c['pairs']} | "
                     f"{100 * c['difference']:+.1f} [{100 * c['ci_low']:+.1f}, "
                     f"{100 * c['ci_high']:+.1f}] | {c['wins']} / {c['losses']} | "
                     f"{c['p_sign']:.3g} |")
    return lines


def decomposition(rows: Sequence[Mapping[str, Any]]) -> List[Dict[str, Any]]:
    """Per cost planned with both models: where its gap to the best simulator planner lies.

    Returns dicts: method, cost, predictor (success with the predictor), simulator (with the
    simulator), best_method / best (the best success of any cost with the simulator), gap
    (best − predictor), predictor_share (simulator − predictor: what a perfect predictor would
    add) and cost_share (best − simulator: what the best cost adds on perfect frames), in
    success-rate units, and predictor_over_simulator (the planner's success with the predictor
    as a share of its success with the simulator; None when the latter is 0).
    """
    by_cell = {(r["method"], r["model"]): r for r in rows}
    sims = [r for r in rows if r["model"] == "simulator"]
    if not sims:
        return []
    best = max(sims, key=lambda r: r["success"])
    out = []
    for r in rows:
        if r["model"] != "predictor" or (r["method"], "simulator") not in by_cell:
            continue
        sim = by_cell[(r["method"], "simulator")]
        out.append({"method": r["method"], "cost": r["cost"], "predictor": r["success"],
                    "simulator": sim["success"], "best_method": best["method"],
                    "best": best["success"], "gap": best["success"] - r["success"],
                    "predictor_share": sim["success"] - r["success"],
                    "cost_share": best["success"] - sim["success"],
                    "predictor_over_simulator": (r["success"] / sim["success"]
                                                 if sim["success"] > 0 else None)})
    return out


def decomposition_table(rows: Sequence[Mapping[str, Any]]) -> List[str]:
    """Markdown lines of :func:`decomposition` (empty without simulator runs)."""
    parts = decomposition(rows)
    if not parts:
        return []

    def share(x, gap):
        return f"{_pct(x)}" + (f" ({100 * x / gap:.0f}% of the gap)" if gap > 0 else "")

    lines = ["| cost | success with predictor % | with simulator % | predictor / simulator | "
             "best with simulator % | gap (points) | predictor's part | cost's part |",
             "|---|---|---|---|---|---|---|---|"]
    for p in parts:
        ratio = p["predictor_over_simulator"]
        lines.append(
            f"| {COST_NAMES.get(p['cost'], p['cost'])} ({METHOD_NAMES.get(p['method'])}) | "
            f"{_pct(p['predictor'])} | {_pct(p['simulator'])} | "
            f"{'—' if ratio is None else f'{100 * ratio:.0f}%'} | {_pct(p['best'])} "
            f"({METHOD_NAMES.get(p['best_method'], p['best_method'])}) | {_pct(p['gap'])} | "
            f"{share(p['predictor_share'], p['gap'])} | {share(p['cost_share'], p['gap'])} |")
    return lines


def render_one(data: Mapping[str, Any], title: Optional[str] = None,
               varying: Optional[Mapping[Tuple[str, str], Sequence[str]]] = None) -> str:
    """Markdown for one results file (see the module docstring); ``varying`` names the model
    settings to print (:func:`varying_settings` over the files rendered together; None: none)."""
    header, episodes = data["header"], data["episodes"]
    finished = sorted({e["seed"] for e in episodes})
    seeds = len(finished)
    goals = len(header["goal_indices"])
    title = title or (f"{header['task']}, {goals} goals × {seeds} "
                      f"seed{'s' if seeds != 1 else ''}")
    rows = summary_rows(episodes)
    lines = [f"### {title}", ""] + _header_lines(header, seeds, goals, varying)
    if finished != sorted(header["seeds"]):
        lines.append(f"- Seeds requested {sorted(header['seeds'])}, episodes present for "
                     f"{finished} (an unfinished run: each cell's n says how many it has)")
    lines.append("")
    lines += summary_table(rows)
    comparisons = comparison_table(episodes)
    if comparisons:
        lines += ["", "Paired on the same goals and seeds (goal-clustered bootstrap interval; "
                  "exact sign test over the episodes where one side alone succeeded):", ""]
        lines += comparisons
    parts = decomposition_table(rows)
    if parts:
        lines += ["", "Where each cost's gap to the best planner with the simulator lies "
                  "(predictor's part: simulator − predictor with the same cost; cost's part: "
                  "best simulator cost − this cost with the simulator):", ""]
        lines += parts
    return "\n".join(lines) + "\n"


def _model_steps(header: Mapping[str, Any]) -> Tuple[Tuple[str, Any], ...]:
    return tuple((role, run["step"]) for role, run in sorted(header["models"].items()) if run)


def _step_value(step) -> int:
    """A run's steps as a number for sorting: -1 for unknown, the total of an ensemble's
    members' steps when they differ ('30000/20016')."""
    if step is None:
        return -1
    if isinstance(step, str):
        return sum(int(x) for x in step.split("/") if x.isdigit())
    return int(step)


def _setting_key(header: Mapping[str, Any]):
    """What must agree for files to form a curve: task, goals, seeds, planner, the models' runs'
    datasets and how many runs each role averages (everything but the training steps)."""
    cfg = tuple(sorted((header.get("planner_config") or {}).items()))
    datasets = tuple((r, (run or {}).get("dataset"), len((run or {}).get("members") or ()))
                     for r, run in sorted(header["models"].items()))
    return (header["task"], header["hard"], header["goal_seed"], tuple(header["goal_indices"]),
            tuple(header["seeds"]), cfg, datasets)


def curve_tables(files: Sequence[Tuple[str, Mapping[str, Any]]]) -> List[str]:
    """Markdown: success % [95% CI] of every cell against the models' training steps, one table
    per group of ≥ 2 files over the same goals, seeds, planner and datasets whose models differ
    in training steps (a training-length curve); [] when there is none."""
    groups: Dict[Any, List[Tuple[str, Mapping[str, Any]]]] = collections.OrderedDict()
    for path, data in files:
        groups.setdefault(_setting_key(data["header"]), []).append((path, data))
    lines: List[str] = []
    for key, members in groups.items():
        if len(members) < 2 or len({_model_steps(d["header"]) for _, d in members}) < 2:
            continue
        members = sorted(members, key=lambda m: [_step_value(s)
                                                for _, s in _model_steps(m[1]["header"])])
        cells = list(collections.OrderedDict.fromkeys(
            c for _, d in members for c in _cells(d["episodes"])))
        roles = [r for r, _ in _model_steps(members[0][1]["header"])]
        # settings other than the length that differ between the rows (e.g. a second discount)
        varying = varying_settings([d["header"] for _, d in members])
        differ = [(r, k) for r in roles for k in varying.get((key[0], r), ())]
        lines += [f"### Training-length curve: {key[0]}, {len(key[3])} goals × {len(key[4])} "
                  f"seed{'s' if len(key[4]) != 1 else ''}", "",
                  "Success % [95% CI] (n) against each model's training steps and their "
                  "training CPU-minutes (summed over the models; — when a run did not time all "
                  "its steps), from the files below on the same goals, seeds and planner:", "",
                  "| " + " | ".join(f"{r} steps" for r in roles) + " | training CPU-min | " +
                  ("other settings | " if differ else "") +
                  " | ".join(cell_name(c) for c in cells) + " | file |",
                  "|" + "---|" * (len(roles) + len(cells) + 2 + bool(differ))]
        for path, data in members:
            by_cell = {(r["method"], r["model"]): r for r in summary_rows(data["episodes"])}
            steps = dict(_model_steps(data["header"]))
            row = [str(steps.get(r, "—")) for r in roles] + [_cpu_minutes(data["header"])]
            if differ:
                models = data["header"]["models"]
                row.append(", ".join(
                    f"{r} {k} = {_flat(models[r].get('settings') or {}).get(k, '—')}"
                    for r, k in differ))
            for c in cells:
                r = by_cell.get(c)
                row.append("—" if r is None else f"{_pct(r['success'])} [{_pct(r['ci_low'])}, "
                           f"{_pct(r['ci_high'])}] ({_n(r)})")
            lines.append("| " + " | ".join(row) + f" | `{path}` |")
        lines.append("")
    return lines


def _goals_key(header: Mapping[str, Any]):
    return (header["task"], header["hard"], header["goal_seed"], tuple(header["goal_indices"]))


def _outcomes(episodes, keys=None) -> List[Tuple]:
    """Sorted (goal, seed, success, arm and object distance) of the episodes (of ``keys``)."""
    return sorted((e["goal_index"], e["seed"], float(e["success"]), round(e["arm_distance"], 4),
                   round(e["object_distance"], 4)) for e in episodes
                  if keys is None or (e["goal_index"], e["seed"]) in keys)


def _agree(a, b) -> bool:
    """Whether two runs of one cell agree on the (goal, seed) episodes both have."""
    shared = {(e["goal_index"], e["seed"]) for e in a} & {(e["goal_index"], e["seed"]) for e in b}
    return _outcomes(a, shared) == _outcomes(b, shared)


# Cells that use no trained model: the same planner settings give them the same episodes
# whichever models a file's other cells used.
UNTRAINED_CELLS = (("vf", "simulator"), ("privileged", "simulator"), ("random", "none"))


def _trained_runs(header: Mapping[str, Any]) -> Dict[str, Tuple[str, Any]]:
    """role -> (run directory, checkpoint step) of the file's trained models."""
    return {role: (run["dir"], run["step"]) for role, run in header["models"].items() if run}


def _join(members: Sequence[Tuple[str, Mapping[str, Any]]]):
    """Joins files in the given order: a file joins when its planner settings equal the first
    file's, each (method, model) cell it shares with those already in agrees with them on their
    common episodes, and each trained model role it shares with them (e.g. 'predictor') names
    the same run and step, so that one table never sets methods planned with different
    predictors or planners side by side; the cell then counts once, from the file with more of
    its episodes (the first on a tie). A file that does not join still lends its
    :data:`UNTRAINED_CELLS` that no joined file has, when its planner settings equal the first
    file's. Returns (cell -> owning path, cell -> episodes, files joined)."""
    owner: Dict[Cell, str] = {}
    kept: Dict[Cell, List] = collections.OrderedDict()
    models: Dict[str, Tuple[str, Any]] = {}
    joined = 0
    left_out = []
    planner = members[0][1]["header"].get("planner_config") if members else None
    for path, data in members:
        cells = _cells(data["episodes"])
        runs = _trained_runs(data["header"])
        if (data["header"].get("planner_config") != planner
                or any(c in kept and not _agree(kept[c], eps) for c, eps in cells.items())
                or any(models.get(role, run) != run for role, run in runs.items())):
            left_out.append((path, data))
            continue
        joined += 1
        models.update(runs)
        for c, eps in cells.items():
            if c not in kept or len(eps) > len(kept[c]):
                owner[c], kept[c] = path, eps
    for path, data in left_out:
        if data["header"].get("planner_config") != planner:
            continue
        for c, eps in _cells(data["episodes"]).items():
            if c in UNTRAINED_CELLS and c not in kept:
                owner[c], kept[c] = path, eps
    return owner, kept, joined


def method_tables(files: Sequence[Tuple[str, Mapping[str, Any]]]) -> List[str]:
    """Markdown: tables of every method over results files on the same goals (e.g. the
    baselines evaluated apart from MBOLD), with paired comparisons of MBOLD (predictor) against
    each and of every other cell without the simulator against random, over the (goal, seed)
    episodes both sides have (the "pairs" column); [] when no two files combine.

    One table per MBOLD run: each file with an MBOLD · video predictor cell and the most seeds
    among such files (e.g. the `cpu` and the `results` preset's evaluations, not a 1-seed curve
    point) anchors a table. The other files join after it in order of more seeds first, then
    path, when they were planned with the anchor's planner settings and each (method, model)
    cell they share with the files already in agrees with them on their common episodes (a
    deterministic policy such as the seeded random one); the cell then counts once, from the
    file with more of its episodes. A file whose shared cell differs (e.g. MBOLD with other
    models) stays out of that table, but for its cells that use no trained model
    (:data:`UNTRAINED_CELLS`, same planner settings). Without an MBOLD file, one table joins
    those planned like the first file. A title names the planner settings in which its anchor
    differs from another anchor on the same goals.
    """
    lines: List[str] = []
    for j in anchored_joins(files):
        lines += _method_table(j.key, j.owner, j.kept, j.anchor if j.several else None,
                               j.planner)
    return lines


class Join(NamedTuple):
    """One all-methods join (:func:`anchored_joins`)."""
    key: Tuple  # the goals (:func:`_goals_key`)
    anchor: Optional[str]  # the anchoring MBOLD file, None without one
    owner: Mapping[Cell, str]  # cell -> the file it comes from
    kept: Mapping[Cell, List]  # cell -> its episodes
    several: bool  # whether these goals have several anchors
    date: str  # the anchor's evaluation date ('' without one)
    planner: str  # 'horizon = 7, replan_every = 3': the planner settings in which this join
    # differs from another join on these goals ('' when they all plan alike)


def anchored_joins(files: Sequence[Tuple[str, Mapping[str, Any]]]) -> List[Join]:
    """The joins behind :func:`method_tables`, one per anchor whose join holds at least two
    files."""
    groups: Dict[Any, List[Tuple[str, Mapping[str, Any]]]] = collections.OrderedDict()
    for path, data in sorted(files, key=lambda f: (-len(f[1]["header"]["seeds"]), f[0])):
        groups.setdefault(_goals_key(data["header"]), []).append((path, data))
    joins = []
    for key, members in groups.items():
        with_mbold = [m for m in members if ("mbold", "predictor") in _cells(m[1]["episodes"])]
        most = max((len(d["header"]["seeds"]) for _, d in with_mbold), default=0)
        anchors = [m for m in with_mbold if len(m[1]["header"]["seeds"]) == most] or [None]
        configs = [(a or members[0])[1]["header"].get("planner_config") or {} for a in anchors]
        differ = sorted(k for k in set().union(*configs)
                        if len({repr(c.get(k)) for c in configs}) > 1)
        for anchor, config in zip(anchors, configs):
            order = ([anchor] if anchor else []) + [m for m in members if m is not anchor]
            owner, kept, joined = _join(order)
            if joined >= 2:
                joins.append(Join(key, anchor[0] if anchor else None, owner, kept,
                                  len(anchors) > 1, anchor[1]["header"]["date"] if anchor else "",
                                  ", ".join(f"{k} = {config.get(k, '—')}" for k in differ)))
    return joins


HEADLINE_ORDER = ("mbold", "vf", "q_only", "privileged", "ideal_eq3", "gcbc", "sorb", "rig",
                  "dreamer", "dreamer_arm_l2", "vae", "temporal", "random")


def headline_joins(files: Sequence[Tuple[str, Mapping[str, Any]]],
                   anchors: Sequence[str] = ()) -> "collections.OrderedDict[str, Join]":
    """The all-methods join (:func:`anchored_joins`) the headline shows for each task, keyed by
    the task's label ('push1', or 'push1 (hard)' for hard goals).

    A task's join is the one anchored by a file named in ``anchors`` (paths as in ``files``;
    e.g. the `results` preset's evaluations, so that a later experiment does not replace them),
    else its fullest (most cells, then the newest anchor by date). With ``anchors``, only their
    tasks appear. ValueError names an anchor that anchors no join, or two anchors of one task."""
    joins = anchored_joins(files)
    anchored = {j.anchor for j in joins}
    unknown = [a for a in anchors if a not in anchored]
    if unknown:
        raise ValueError(f"Headline anchors {unknown} anchor no all-methods table: name results "
                         f"files that have an MBOLD · video predictor cell and the most seeds "
                         f"among their task's such files ({sorted(a for a in anchored if a)}).")
    chosen: Dict[str, Join] = collections.OrderedDict()
    named: Dict[str, str] = {}
    rank = lambda j: (j.anchor in anchors, len(j.kept), j.date, j.anchor or "")
    for join in joins:
        task = join.key[0] + (" (hard)" if join.key[1] else "")
        if join.anchor in anchors:
            if task in named:
                raise ValueError(f"Headline anchors {named[task]!r} and {join.anchor!r} are both "
                                 f"{task}: name one file per task.")
            named[task] = join.anchor
        if task not in chosen or rank(join) > rank(chosen[task]):
            chosen[task] = join
    if anchors:  # named anchors name the tasks too: an experiment's task does not join them
        chosen = collections.OrderedDict((t, j) for t, j in chosen.items() if t in named)
    return chosen


def join_rows(join: Join) -> Dict[Cell, Dict[str, Any]]:
    """:func:`summary_rows` of a join's episodes, by (method, model) cell."""
    return {(r["method"], r["model"]): r
            for r in summary_rows([e for eps in join.kept.values() for e in eps])}


def cell_text(row: Mapping[str, Any]) -> str:
    """'success % [95% CI], n' of a summary row, rounded (n: distinct episodes)."""
    return (f"{100 * row['success']:.0f} [{100 * row['ci_low']:.0f}, "
            f"{100 * row['ci_high']:.0f}], {row.get('distinct', row['n'])}")


def headline_table(files: Sequence[Tuple[str, Mapping[str, Any]]],
                   anchors: Sequence[str] = ()) -> List[str]:
    """Markdown for the README: 'success % [95% CI], n' (n: distinct episodes) of every (method,
    model) per task, rounded, from one all-methods join per task (:func:`headline_joins`, which
    says how ``anchors`` choose it and what it raises), with the files it draws on; [] when no
    files combine."""
    chosen = headline_joins(files, anchors)
    if not chosen:
        return []
    tasks = list(chosen)
    stats_by_task = {t: join_rows(chosen[t]) for t in tasks}
    cells = sorted({c for t in tasks for c in stats_by_task[t]},
                   key=lambda c: (HEADLINE_ORDER.index(c[0]) if c[0] in HEADLINE_ORDER
                                  else len(HEADLINE_ORDER), c))
    lines = ["| method | " + " | ".join(tasks) + " |",
             "|---|" + "---|" * len(tasks)]
    for c in cells:
        row = []
        for t in tasks:
            r = stats_by_task[t].get(c)
            row.append("—" if r is None else cell_text(r))
        lines.append(f"| {cell_name(c)} | " + " | ".join(row) + " |")
    lines.append("")
    by_path = dict(files)
    for t in tasks:
        join = chosen[t]
        seeds = sorted({e["seed"] for eps in join.kept.values() for e in eps})
        models = ", ".join(f"{role} {run['step']}" for role, run in
                           sorted(by_path[join.anchor]["header"]["models"].items())
                           if run) if join.anchor else ""
        lines.append(f"- {t}: {len(join.key[3])} goals, seeds {', '.join(map(str, seeds))}; "
                     + (f"MBOLD trained {models} steps; " if models else "")
                     + (f"planner {join.planner}; " if join.planner else "")
                     + ", ".join(f"`{p}`" for p in dict.fromkeys(join.owner[c]
                                                                 for c in join.kept)))
    return lines


README_BEGIN = "<!-- generated by launch.report --readme -->"
README_END = "<!-- /results -->"
# An optional line right after README_BEGIN naming the headline's anchors (headline_table).
README_ANCHORS = re.compile(r"<!-- headline anchors: ([^>]*) -->\n")


def readme_anchors(readme: str) -> List[str]:
    """The results files the README's headline names as its anchors ([] without the line)."""
    if README_BEGIN not in readme:
        return []
    line = README_ANCHORS.match(readme.split(README_BEGIN, 1)[1].lstrip("\n"))
    return line.group(1).split() if line else []


def readme_with_headline(readme: str, files: Sequence[Tuple[str, Mapping[str, Any]]]) -> str:
    """``readme`` (text) with the block between :data:`README_BEGIN` and :data:`README_END`
    replaced by :func:`headline_table`; ValueError naming the markers when they are missing.
    A first line of the block ``<!-- headline anchors: a.json b.json -->`` is kept and names
    the headline's anchors (one results file per task)."""
    if README_BEGIN not in readme or README_END not in readme:
        raise ValueError(f"The README has no results block: add the lines {README_BEGIN!r} and "
                         f"{README_END!r} where the table goes.")
    head, rest = readme.split(README_BEGIN, 1)
    _, tail = rest.split(README_END, 1)
    line = README_ANCHORS.match(rest.lstrip("\n"))
    anchors = readme_anchors(readme)
    return (head + README_BEGIN + "\n" + (line.group(0) if line else "")
            + "\n".join(headline_table(files, anchors)) + "\n" + README_END + tail)


def _method_table(key, owner: Mapping[Cell, str], kept: Mapping[Cell, List],
                  anchor: Optional[str], planner: str = "") -> List[str]:
    """One all-methods table and its paired comparisons (see :func:`method_tables`)."""
    episodes = [e for eps in kept.values() for e in eps]
    rows = summary_rows(episodes)
    cells = list(_cells(episodes))
    pairs = [(("mbold", "predictor"), c) for c in cells
             if ("mbold", "predictor") in cells and c != ("mbold", "predictor")]
    pairs += [(c, ("random", "none")) for c in cells
              if ("random", "none") in cells and c != ("random", "none")
              and (c, ("random", "none")) not in pairs
              and (("random", "none"), c) not in pairs and c[0] != "mbold"
              and c[1] != "simulator"]
    table = summary_table(rows)
    table = [table[0].rstrip(" |") + " | seeds | file |", table[1] + "---|---|"] + [
        line + f" {_seeds(kept[(r['method'], r['model'])])} | "
               f"`{owner[(r['method'], r['model'])]}` |" for line, r in zip(table[2:], rows)]
    title = f"### All methods: {key[0]}, {len(key[3])} goals"
    lines = [title + (f", MBOLD from `{anchor}`" if anchor else "")
             + (f"; planner: {planner}" if planner else ""), "",
             "Every method evaluated on these goals, from the files named in the last column "
             "(their commands and models are in their sections below):", ""]
    lines += table
    comparisons = comparison_table(episodes, pairs)
    if comparisons:
        lines += ["", "Paired on the (goal, seed) episodes both sides have:", ""] + comparisons
    lines.append("")
    return lines


def _seeds(episodes) -> str:
    return ", ".join(str(s) for s in sorted({e["seed"] for e in episodes}))


def render(files: Sequence[Tuple[str, Mapping[str, Any]]], preamble: str = "") -> str:
    """Markdown for several ``(path, data)`` results, each section naming its file; training-
    length curves (:func:`curve_tables`) and the all-methods tables (:func:`method_tables`)
    come first."""
    sections = [preamble.rstrip() + "\n"] if preamble else []
    curves = curve_tables(files)
    if curves:
        sections.append("\n".join(curves))
    methods = method_tables(files)
    if methods:
        sections.append("\n".join(methods))
    varying = varying_settings([data["header"] for _, data in files])
    for path, data in files:
        sections.append(render_one(data, varying=varying) + f"\nFrom `{path}`.\n")
    return "\n".join(sections)
