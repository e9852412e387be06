"""Control-centric evaluation: the simulator as the planner's model, statistics, report files."""
import copy
import glob
import json
import os
import subprocess
import sys

import gin
import numpy as np
import pytest
import tensorflow as tf
from tf_agents.environments import tf_py_environment

import mbold_tf
from mbold_tf.envs import goal_env
from mbold_tf.envs import goals
from mbold_tf.envs import simulator
from mbold_tf.eval import paper_comparison
from mbold_tf.eval import policy_eval
from mbold_tf.eval import report
from mbold_tf.eval import results
from mbold_tf.eval import results_page
from mbold_tf.eval import stats
from mbold_tf.planning import costs
from mbold_tf.planning import factory


@pytest.mark.parametrize("task", ["reach", "push1", "push3", "door_slide"])
def test_simulator_model_returns_the_frames_of_stepping_the_environment(task):
    goal_set = goals.generate_goal_set(task, num_goals=1, seed=3)
    env = goal_env.GoalConditionedPyEnvironment(goal_set)
    sim = simulator.SimulatorRollouts(env)
    try:
        rng = np.random.default_rng(0)
        time_step = env.reset()
        for action in rng.uniform(-1, 1, (3, 4)).astype(np.float32):  # mid-episode
            time_step = env.step(action)
        actions = rng.uniform(-1, 1, (3, 13, 4)).astype(np.float32)
        observation = {k: tf.repeat(tf.constant(v)[None], 3, axis=0)
                       for k, v in time_step.observation.items()}
        frames = costs.simulator_model_fn(sim)(observation, tf.constant(actions)).numpy()
        assert frames.shape == (3, 13, 64, 64, 3) and frames.dtype == np.float32
        real = np.stack([env.step(a).observation["image"] for a in actions[1]])
        np.testing.assert_array_equal(frames[1], real.astype(np.float32) / 255.0)
        # The other candidates really differ (the copy is restored before each one).
        assert not np.array_equal(frames[0], frames[1])
    finally:
        sim.close()
        env.close()


def test_simulator_model_rejects_what_it_cannot_restore_or_is_not_attached_to():
    with pytest.raises(TypeError, match="saved and restored"):
        simulator.SimulatorRollouts(object())
    goal_set = goals.generate_goal_set("reach", num_goals=1, seed=3)
    env = goal_env.GoalConditionedPyEnvironment(goal_set)
    sim = simulator.SimulatorRollouts(env)
    try:
        env.reset()
        with pytest.raises(ValueError, match="not the one the policy observes"):
            sim.rollout(np.zeros((2, 3, 4), np.float32),
                        current_image=np.zeros((64, 64, 3), np.uint8))
    finally:
        sim.close()
        env.close()


def test_only_planners_take_a_planning_model():
    assert factory.requires("mbold", "simulator") == ("simulator", "distance")
    with pytest.raises(ValueError, match="does not plan with a model"):
        factory.requires("q_only", "simulator")
    with pytest.raises(ValueError, match="needs the simulator model"):
        factory.requires("privileged", "predictor")
    with pytest.raises(ValueError, match="needs the simulator model"):
        policy_eval.evaluation_grid(["privileged"], ["predictor"])
    with pytest.raises(ValueError, match="Unknown planning model"):
        policy_eval.evaluation_grid(["vf"], ["oracle"])
    assert policy_eval.evaluation_grid(["vf", "random", "privileged"],
                                       ["predictor", "simulator"]) == [
        ("vf", "predictor"), ("vf", "simulator"), ("random", "none"),
        ("privileged", "simulator")]


def test_ideal_eq3_cost_counts_steps_and_is_flat_within_one_step():
    cost = costs.make_cost("ideal_eq3", ideal_step=0.1)
    d = tf.constant([[0.3, 0.0], [0.3, 0.04], [0.3, 0.1], [0.0, 0.101], [0.0, 0.25]])
    frames = tf.zeros([5, 2, 4, 4, 3])
    # Scores the last state only: at the goal and 10 cm from it cost the same one step.
    np.testing.assert_array_equal(
        cost({"frames": frames, "privileged": d}, observation=None).numpy(), [1, 1, 1, 2, 3])
    finer = costs.make_cost("ideal_eq3", ideal_step=0.05)
    np.testing.assert_array_equal(
        finer({"frames": frames, "privileged": d}, observation=None).numpy(), [1, 1, 2, 3, 5])
    with pytest.raises(ValueError, match="cannot score predicted frames"):
        cost(frames, observation=None)
    with pytest.raises(ValueError, match="ideal_step > 0"):
        costs.make_cost("ideal_eq3")


def test_ideal_eq3_needs_the_simulator_on_reach_and_its_setting_is_not_ignored():
    with pytest.raises(ValueError, match="needs the simulator model"):
        factory.requires("ideal_eq3", "predictor")
    assert policy_eval.evaluation_grid(["ideal_eq3"], ["predictor", "simulator"]) == [
        ("ideal_eq3", "simulator")]
    for task in ("push1", "reach"):
        env = goal_env.GoalConditionedPyEnvironment(goals.generate_goal_set(task, 1, seed=3))
        sim = simulator.SimulatorRollouts(env)
        try:
            tf_env = tf_py_environment.TFPyEnvironment(env)
            make = lambda method, **kw: factory.make_policy(
                method, tf_env.time_step_spec(), tf_env.action_spec(), np.ones(4, np.float32),
                {"simulator": sim}, model="simulator", **kw)
            if task == "push1":
                with pytest.raises(ValueError, match="reach only; this is 'push1'"):
                    make("ideal_eq3")
                continue
            assert sim.action_scale == pytest.approx(0.1)
            make("ideal_eq3")
            make("ideal_eq3", ideal_step=0.05)
            with pytest.raises(ValueError, match="ideal_step is a setting of method"):
                make("privileged", ideal_step=0.05)
        finally:
            sim.close()
            env.close()


UPPER_BOUND_PLANNER = ["CEMConfig.num_samples = 40", "CEMConfig.num_elites = 5",
                       "CEMConfig.iterations = 2", "make_cost.q_action = 'plan'"]


@pytest.fixture(scope="module")
def reach_upper_bound(tmp_path_factory):
    """CEM with the simulator model and the true distance, and random, on 3 reach goals."""
    out = str(tmp_path_factory.mktemp("upper"))
    goal_set = goals.generate_goal_set("reach", num_goals=3, seed=9)
    gin.clear_config()
    gin.parse_config(UPPER_BOUND_PLANNER)
    try:
        data = policy_eval.evaluate_methods(
            goal_set, ["privileged", "random"], {}, seeds=[0], out_dir=out, num_gifs=0,
            planning_models=["simulator"], command="pytest", model_dirs={})
    finally:
        gin.clear_config()
    return out, data


def test_cem_with_simulator_and_true_distance_solves_reach(reach_upper_bound):
    _, data = reach_upper_bound
    rows = {r["method"]: r for r in report.summary_rows(data["episodes"])}
    assert rows["privileged"]["model"] == "simulator"
    assert rows["privileged"]["successes"] >= 2, rows["privileged"]
    assert rows["privileged"]["success"] > rows["random"]["success"]
    assert rows["privileged"]["object_distance"] < rows["privileged"]["start_object_distance"]
    assert data["header"]["planner_config"]["num_samples"] == 40
    assert data["header"]["planner_config"]["make_cost.q_action"] == "plan"


def test_results_file_renders_its_table_byte_for_byte(reach_upper_bound):
    out, data = reach_upper_bound
    path = os.path.join(out, "results.json")
    with open(os.path.join(out, "table.md")) as f:
        written = f.read()
    assert report.render_one(results.load_results(path)) == written
    assert "true distance (privileged) | simulator (privileged) | 3 |" in written
    for e in data["episodes"]:
        assert set(results.EPISODE_FIELDS) <= set(e)
        assert e["start_object_distance"] >= 0.15 - 1e-6  # reach goals: ≥ 0.15 m of motion


def test_evaluation_resumes_finished_blocks(reach_upper_bound, monkeypatch):
    out, data = reach_upper_bound
    goal_set = goals.generate_goal_set("reach", num_goals=3, seed=9)
    ran = []
    monkeypatch.setattr(policy_eval.episode_runner.goal_eval, "evaluate_py_policy",
                        lambda *a, **k: ran.append(k["tag"]) or [])
    gin.parse_config(UPPER_BOUND_PLANNER)
    kwargs = dict(out_dir=out, num_gifs=0, planning_models=["simulator"], command="pytest",
                  model_dirs={})
    try:
        again = policy_eval.evaluate_methods(goal_set, ["privileged", "random"], {}, seeds=[0],
                                             **kwargs)
        assert not ran and again["episodes"] == data["episodes"]
        # More seeds: only the new seed's blocks run.
        policy_eval.evaluate_methods(goal_set, ["privileged", "random"], {}, seeds=[0, 1],
                                     **kwargs)
        assert ran == ["privileged_simulator_seed1_", "random_seed1_"]
        with pytest.raises(ValueError, match="other goals or planner settings"):
            policy_eval.evaluate_methods(goals.generate_goal_set("reach", num_goals=2, seed=9),
                                         ["random"], {}, seeds=[0], **kwargs)
        # Another Q for the learned-distance cost is another planner.
        gin.parse_config(["make_cost.q_action = 'actor'"])
        with pytest.raises(ValueError, match="other goals or planner settings"):
            policy_eval.evaluate_methods(goal_set, ["random"], {}, seeds=[0], **kwargs)
    finally:
        gin.clear_config()


def test_wilson_intervals_on_known_cases():
    assert stats.wilson_interval(0, 20) == pytest.approx((0.0, 0.16113), abs=1e-4)
    assert stats.wilson_interval(20, 20) == pytest.approx((0.83887, 1.0), abs=1e-4)
    assert stats.wilson_interval(10, 20) == pytest.approx((0.29930, 0.70070), abs=1e-4)
    with pytest.raises(ValueError, match="successes=21, n=20"):
        stats.wilson_interval(21, 20)


def test_paired_comparison_on_known_cases():
    keys = [(g, s) for g in range(20) for s in range(3)]
    a = {k: float(k[0] % 2) for k in keys}
    same = stats.paired_comparison(a, dict(a))
    assert (same["difference"], same["ci_low"], same["ci_high"]) == (0.0, 0.0, 0.0)
    assert same["p_sign"] == 1.0 and same["wins"] == same["losses"] == 0
    ones = {k: 1.0 for k in keys}
    zeros = {k: 0.0 for k in keys}
    full = stats.paired_comparison(ones, zeros)
    assert (full["difference"], full["ci_low"], full["ci_high"]) == (1.0, 1.0, 1.0)
    assert full["wins"] == 60 and full["p_sign"] == pytest.approx(2 * 0.5 ** 60)
    half = stats.paired_comparison(a, zeros)  # A wins on the 10 odd goals only
    assert half["difference"] == 0.5 and half["ci_low"] < 0.5 < half["ci_high"]
    assert half["ci_low"] > 0.0 and half["goals"] == 20 and half["pairs"] == 60
    assert stats.sign_test_p(9, 1) == pytest.approx(22 / 1024)
    with pytest.raises(ValueError, match="same \\(goal, seed\\) episodes"):
        stats.paired_comparison(a, {k: 0.0 for k in keys[:-1]})


def _sample_results():
    eps = []
    for method, model, cost, rate in (("mbold", "predictor", "learned_distance", 0.3),
                                      ("mbold", "simulator", "learned_distance", 0.6),
                                      ("privileged", "simulator", "privileged", 0.9),
                                      ("random", "none", "none", 0.0)):
        for g in range(10):
            metrics = {"goal_index": g, "success": float(g < 10 * rate),
                       "start_object_distance": 0.2, "object_distance": 0.1,
                       "start_arm_distance": 0.2, "arm_distance": 0.1,
                       "object_displacement": 0.1, "object_moved": 1.0}
            eps.append(results.episode_record(method, model, cost, 0, metrics, 1.0))
    header = results.make_header("reach", False, 0, 10, range(10), [0], "cmd", [], {},
                                 {"predictor": None})
    return {"format": results.FORMAT, "version": results.VERSION, "header": header,
            "episodes": eps}


def test_report_draws_a_training_length_curve_from_files_that_differ_in_steps():
    def run(steps, rate_shift=0):
        data = copy.deepcopy(_sample_results())
        data["header"]["models"] = {"distance": {"dir": f"d{steps}", "step": steps,
                                                 "dataset": "reach_cpu"}}
        for e in data["episodes"]:
            if e["method"] == "mbold" and e["model"] == "simulator":
                e["success"] = int(e["goal_index"] < 6 + rate_shift)
        return data

    files = [("b.json", run(30000, 2)), ("a.json", run(3000))]
    text = "\n".join(report.curve_tables(files))
    assert "| distance steps |" in text
    rows = [line for line in text.splitlines() if line.startswith("| 3") and "json" in line]
    assert [r.split(" | ")[0] for r in rows] == ["| 3000", "| 30000"]  # sorted by steps
    assert "60.0 [31.3, 83.2] (10)" in rows[0] and "80.0 [49.0, 94.3] (10)" in rows[1]
    # Other goals: no curve; same steps twice: no curve.
    other = run(10000)
    other["header"]["goal_indices"] = list(range(5))
    assert report.curve_tables([("a.json", run(3000)), ("c.json", other)]) == []
    assert report.curve_tables([("a.json", run(3000)), ("d.json", run(3000))]) == []


def test_curve_rows_name_the_settings_other_than_length_in_which_they_differ():
    def run(steps, gamma, directory):
        data = copy.deepcopy(_sample_results())
        data["header"]["models"] = {"distance": {
            "dir": directory, "step": steps, "dataset": "reach_cpu",
            "settings": {"gamma": gamma, "networks": {"fc_units": 128}}}}
        return data

    files = [("a.json", run(3000, 0.8, "d1")), ("b.json", run(3000, 0.935, "d2")),
             ("c.json", run(6000, 0.8, "d1"))]
    rows = [line for line in "\n".join(report.curve_tables(files)).splitlines()
            if ".json" in line]
    assert [r.split(" | ")[2] for r in rows] == ["distance gamma = 0.8", "distance gamma = 0.935",
                                                "distance gamma = 0.8"]
    assert "fc_units" not in "\n".join(rows)  # only what differs
    same = [("a.json", run(3000, 0.8, "d1")), ("c.json", run(6000, 0.8, "d1"))]
    assert "other settings" not in "\n".join(report.curve_tables(same))


def test_the_curve_adds_the_models_training_cpu_minutes_when_every_run_timed_all_its_steps():
    def run(steps, predictor_first_step):
        data = copy.deepcopy(_sample_results())
        timed = {"timed_steps": steps, "first_step": 0, "wall_minutes": 9.0,
                 "cpu_minutes": steps / 1000}
        data["header"]["models"] = {
            "distance": {"dir": "d", "step": steps, "dataset": "reach_cpu",
                         "training_time": timed},
            "predictor": {"dir": "p", "step": 500, "dataset": "reach_cpu",
                          "training_time": dict(timed, cpu_minutes=2.5,
                                                first_step=predictor_first_step)}}
        return data

    text = "\n".join(report.curve_tables([("a.json", run(3000, 0)), ("b.json", run(6000, 100))]))
    rows = {line.split(" | ")[0]: line.split(" | ") for line in text.splitlines()
            if line.startswith("| 3000") or line.startswith("| 6000")}
    assert rows["| 3000"][2] == "5.5"  # 3.0 + 2.5 CPU-minutes
    assert rows["| 6000"][2] == "—"  # the predictor's record starts at step 100
    header = "\n".join(report._header_lines(run(6000, 100)["header"], 1, 10))
    assert "trained in 9.0 min wall, 2.5 CPU-min (steps 100–500 only)" in header


def test_report_combines_files_of_other_methods_on_the_same_goals():
    planners = _sample_results()  # MBOLD, true distance, random
    baselines = copy.deepcopy(_sample_results())
    baselines["episodes"] = [dict(e, method="gcbc", model="none", cost="none",
                                  success=float(e["goal_index"] < 5))
                             for e in baselines["episodes"] if e["method"] == "random"]
    text = "\n".join(report.method_tables([("p.json", planners), ("b.json", baselines)]))
    assert "### All methods: reach, 10 goals" in text
    gcbc = [line for line in text.splitlines() if line.startswith("| GCBC | — |")]
    assert len(gcbc) == 1 and gcbc[0].endswith("| 0 | `b.json` |") and "50.0 [23.7, 76.3]" in gcbc[0]
    # MBOLD (30%) against GCBC (50%), and GCBC against random (0%): 5 wins of 10.
    assert "| MBOLD · video predictor | GCBC | 10 | -20.0 " in text
    assert "| GCBC | random | 10 | +50.0 " in text and "| 5 / 0 |" in text
    # Other goals, or a cell in both files: not combined.
    other = copy.deepcopy(baselines)
    other["header"]["goal_indices"] = list(range(5))
    assert report.method_tables([("p.json", planners), ("o.json", other)]) == []
    # The same cell in both files: counted once when its episodes agree, else not combined.
    with_random = copy.deepcopy(baselines)
    with_random["episodes"] += copy.deepcopy([e for e in planners["episodes"]
                                              if e["method"] == "random"])
    text = "\n".join(report.method_tables([("p.json", planners), ("r.json", with_random)]))
    assert len([line for line in text.splitlines() if line.startswith("| random | — |")]) == 1
    for e in with_random["episodes"]:
        if e["method"] == "random" and e["goal_index"] == 0:
            e["success"] = 1.0
    assert report.method_tables([("p.json", planners), ("r.json", with_random)]) == []
    # Another seed: the file with more seeds leads, and pairs are the shared episodes.
    seed1 = copy.deepcopy(baselines)
    seed1["header"]["seeds"] = [0, 1]
    seed1["episodes"] += [dict(e, seed=1) for e in copy.deepcopy(seed1["episodes"])]
    text = "\n".join(report.method_tables([("p.json", planners), ("s.json", seed1)]))
    assert "| GCBC | — | 20 (10 distinct) | 50.0 [23.7, 76.3] |" in text
    assert "| 0, 1 | `s.json` |" in text and "| MBOLD · video predictor | GCBC | 10 | " in text


def test_each_mbold_run_with_the_most_seeds_anchors_its_own_all_methods_table():
    cpu = _sample_results()  # MBOLD 30%, 1 seed
    later = copy.deepcopy(cpu)
    for e in later["episodes"]:
        if e["method"] == "mbold" and e["model"] == "predictor":
            e["success"] = float(e["goal_index"] < 7)  # another MBOLD run: 70%
    baselines = copy.deepcopy(cpu)
    baselines["episodes"] = [dict(e, method="gcbc", model="none", cost="none")
                             for e in baselines["episodes"] if e["method"] == "random"]
    point = copy.deepcopy(later)  # a curve point: fewer seeds, anchors nothing
    point["header"]["seeds"], cpu["header"]["seeds"], later["header"]["seeds"] = [], [0, 1], [0, 1]
    for data in (cpu, later):
        data["episodes"] += [dict(e, seed=1) for e in copy.deepcopy(data["episodes"])]
    text = "\n".join(report.method_tables([("a.json", cpu), ("b.json", baselines),
                                           ("c.json", later), ("d.json", point)]))
    titles = [line for line in text.splitlines() if line.startswith("### All methods")]
    assert titles == ["### All methods: reach, 10 goals, MBOLD from `a.json`",
                      "### All methods: reach, 10 goals, MBOLD from `c.json`"]
    first, second = text.split(titles[1])
    assert "| MBOLD | video predictor | 20 (10 distinct) | 30.0 " in first and "`b.json`" in first
    assert "| MBOLD | video predictor | 20 (10 distinct) | 70.0 " in second and "`b.json`" in second
    assert "`d.json`" not in text
    # A file left out still lends the cells that use no trained model (same planner settings).
    for e in later["episodes"]:
        if e["method"] == "privileged":
            e["method"] = "gone"
    later["episodes"] = [e for e in later["episodes"] if e["method"] != "gone"]
    text = "\n".join(report.method_tables([("a.json", cpu), ("b.json", baselines),
                                           ("c.json", later)]))
    second = text.split("MBOLD from `c.json`")[1]
    assert "| true distance (privileged) | simulator (privileged) | 20 " in second
    assert second.count("`a.json`") == 1  # only that row comes from the left-out file
    cpu["header"]["planner_config"] = {"num_samples": 7}
    text = "\n".join(report.method_tables([("a.json", cpu), ("b.json", baselines),
                                           ("c.json", later)]))
    assert "true distance" not in text.split("MBOLD from `c.json`")[1]
    cpu["header"]["planner_config"] = later["header"]["planner_config"]
    # The README's headline takes the newest anchor: c.json's 70%, then a.json's 30% when newer.
    cpu["header"]["date"], later["header"]["date"] = "2026-01-01 00:00 UTC", "2026-02-01 00:00 UTC"
    files = [("a.json", cpu), ("b.json", baselines), ("c.json", later), ("d.json", point)]
    headline = "\n".join(report.headline_table(files))
    assert "| MBOLD · video predictor | 70 [40, 89], 10 |" in headline and "`c.json`" in headline
    cpu["header"]["date"] = "2026-03-01 00:00 UTC"
    headline = "\n".join(report.headline_table(files))
    assert "| MBOLD · video predictor | 30 [11, 60], 10 |" in headline and "`c.json`" not in headline


def test_tables_join_only_files_planned_with_the_same_trained_models():
    preset = _sample_results()
    preset["header"]["models"] = {"predictor": {"dir": "pred", "step": 6500, "dataset": "d"}}
    vf = copy.deepcopy(preset)
    vf["episodes"] = [dict(e, method="vf", cost="pixel_l2") for e in vf["episodes"]
                      if e["method"] == "mbold" and e["model"] == "predictor"]
    longer = copy.deepcopy(preset)  # MBOLD alone with a predictor trained longer, newer
    longer["header"]["models"]["predictor"]["step"] = 13000
    longer["header"]["date"] = "2099-01-01 00:00 UTC"
    longer["episodes"] = [dict(e, success=1.0) for e in longer["episodes"]
                          if e["method"] == "mbold" and e["model"] == "predictor"]
    gcbc = copy.deepcopy(preset)
    gcbc["header"]["models"] = {"gcbc": {"dir": "gcbc", "step": 3000, "dataset": "d"}}
    gcbc["episodes"] = [dict(e, method="gcbc", model="none", cost="none")
                        for e in gcbc["episodes"] if e["method"] == "random"]
    files = [("a.json", preset), ("b.json", vf), ("c.json", longer), ("g.json", gcbc)]
    text = "\n".join(report.method_tables(files))
    first, second = text.split("MBOLD from `c.json`")
    assert "| Visual Foresight | video predictor |" in first and "`b.json`" in first
    # VF planned with the 6,500-step predictor stays out of the 13,000-step MBOLD's table.
    assert "Visual Foresight" not in second and "`b.json`" not in second
    # The headline keeps the fullest table, not the newest MBOLD file alone.
    headline = "\n".join(report.headline_table(files))
    assert "`a.json`" in headline and "`c.json`" not in headline
    assert "| MBOLD · video predictor | 30 [11, 60], 10 |" in headline
    longer["header"]["models"]["predictor"]["step"] = 6500  # the same run: VF joins it
    assert "Visual Foresight" in "\n".join(report.method_tables(files)).split(
        "MBOLD from `c.json`")[1]


def test_tables_join_only_files_planned_with_the_same_planner():
    long_plan = {"horizon": 13, "replan_every": 6, "num_samples": 100}
    short_plan = dict(long_plan, horizon=7, replan_every=3)
    preset = _sample_results()
    preset["header"]["planner_config"] = long_plan
    vf = copy.deepcopy(preset)
    vf["episodes"] = [dict(e, method="vf", cost="pixel_l2") for e in vf["episodes"]
                      if e["method"] == "mbold" and e["model"] == "predictor"]
    short = copy.deepcopy(preset)  # MBOLD and VF again, both planning 7 steps
    short["header"]["planner_config"] = short_plan
    short["episodes"] = [dict(e, success=1.0) for e in preset["episodes"]
                         if e["model"] == "predictor"]
    short_vf = copy.deepcopy(vf)
    short_vf["header"]["planner_config"] = short_plan
    short_vf["episodes"] = [dict(e, success=0.0) for e in vf["episodes"]]
    files = [("a.json", preset), ("b.json", vf), ("s.json", short), ("t.json", short_vf)]
    text = "\n".join(report.method_tables(files))
    first, second = text.split("MBOLD from `s.json`; planner: horizon = 7, replan_every = 3")
    assert "MBOLD from `a.json`; planner: horizon = 13, replan_every = 6" in first
    # Each VF file joins the table of its own planner only.
    assert "`b.json`" in first and "`s.json`" not in first and "`t.json`" not in first
    assert "`b.json`" not in second and "`t.json`" in second
    assert "| Visual Foresight | video predictor | 10 | 0.0 [0.0, 27.8] |" in second
    # The 13-step file's simulator and random cells stay out of the 7-step table.
    assert "simulator" not in second and "random" not in second.lower()
    headline = "\n".join(report.headline_table(files))
    assert "`a.json`" in headline and "planner horizon = 13, replan_every = 6" in headline


def test_the_readme_headline_keeps_the_anchors_its_block_names():
    preset = _sample_results()
    preset["header"]["models"] = {"predictor": {"dir": "pred", "step": 6500, "dataset": "d"}}
    experiment = copy.deepcopy(preset)  # a later, fuller join with another predictor
    experiment["header"]["models"]["predictor"]["step"] = 13000
    experiment["header"]["date"] = "2099-01-01 00:00 UTC"
    experiment["episodes"] = [dict(e, success=1.0) for e in experiment["episodes"]]
    extra = copy.deepcopy(experiment)
    extra["episodes"] = [dict(e, method="vf", cost="pixel_l2") for e in preset["episodes"]
                         if e["method"] == "mbold" and e["model"] == "predictor"]
    vf = copy.deepcopy(preset)  # VF with the preset's predictor
    vf["episodes"] = extra["episodes"]
    files = [("a.json", preset), ("v.json", vf), ("x.json", experiment), ("y.json", extra)]
    assert "`x.json`" in "\n".join(report.headline_table(files))  # fullest, then newest
    named = "\n".join(report.headline_table(files, ["a.json"]))
    assert "`a.json`" in named and "`v.json`" in named and "`x.json`" not in named
    assert "| MBOLD · video predictor | 30 [11, 60], 10 |" in named
    # an experiment (two files that join) on a task the anchors do not name
    other = [(f"z{i}.json", copy.deepcopy(d)) for i, d in enumerate((experiment, extra))]
    for _, d in other:
        d["header"]["task"] = "reach_fine"
    assert "reach_fine" in "\n".join(report.headline_table(files + other))
    named = "\n".join(report.headline_table(files + other, ["a.json"]))
    assert "reach_fine" not in named and "`z0.json`" not in named
    block = (f"intro\n{report.README_BEGIN}\n<!-- headline anchors: a.json -->\nold\n"
             f"{report.README_END}\nrest\n")
    text = report.readme_with_headline(block, files)
    assert "<!-- headline anchors: a.json -->\n| method |" in text and "old" not in text
    assert "`a.json`" in text and text.endswith(f"{report.README_END}\nrest\n")
    assert report.readme_with_headline(text, files) == text
    with pytest.raises(ValueError, match=r"\['b.json'\] anchor no all-methods table"):
        report.headline_table(files, ["b.json"])
    with pytest.raises(ValueError, match="'a.json' and 'x.json' are both reach"):
        report.headline_table(files, ["a.json", "x.json"])


def test_repeated_seeds_of_a_deterministic_policy_do_not_narrow_its_interval():
    data = _sample_results()
    three = []
    for seed in (0, 1, 2):
        three += [dict(e, seed=seed) for e in data["episodes"]]
    rows = {r["method"] + r["model"]: r for r in report.summary_rows(three)}
    mbold = rows["mboldpredictor"]  # 3 of 10 goals, every seed the same episode
    assert (mbold["n"], mbold["distinct"]) == (30, 10)
    assert (mbold["ci_low"], mbold["ci_high"]) == stats.wilson_interval(3, 10)
    assert "| 30 (10 distinct) | 30.0 [10.8, 60.3] |" in "\n".join(report.summary_table(
        [mbold]))
    # One goal's seeds differ: the episodes count as they are.
    three[0] = dict(three[0], success=1.0 - three[0]["success"], arm_distance=0.5)
    mixed = [r for r in report.summary_rows(three) if r["method"] == "mbold"][0]
    assert mixed["distinct"] == 30
    assert mixed["successes"] == 8  # goal 0's first episode now failed
    assert (mixed["ci_low"], mixed["ci_high"]) == stats.wilson_interval(8, 30)


def test_report_splits_the_gap_between_predictor_and_cost():
    data = _sample_results()
    parts = report.decomposition(report.summary_rows(data["episodes"]))
    assert len(parts) == 1
    p = parts[0]
    assert (p["method"], p["best_method"]) == ("mbold", "privileged")
    assert p["gap"] == pytest.approx(0.6)
    assert p["predictor_share"] == pytest.approx(0.3) and p["cost_share"] == pytest.approx(0.3)
    # success 0.3 with the predictor, 0.6 with the simulator: the predictor keeps 50% of it
    assert p["predictor_over_simulator"] == pytest.approx(p["predictor"] / p["simulator"])
    text = report.render_one(data)
    assert f"| {100 * p['predictor_over_simulator']:.0f}% |" in text
    assert "| 30.0 (50% of the gap) | 30.0 (50% of the gap) |" in text
    assert "| MBOLD · video predictor | MBOLD · simulator (privileged) | 10 |" in text


def test_report_names_the_settings_in_which_runs_of_one_task_differ(tmp_path):
    def run_dir(name, settings):
        path = tmp_path / name
        path.mkdir()
        (path / "config.json").write_text(json.dumps({"kind": "distance", "settings": settings}))
        return str(path)

    old = run_dir("old", {"gamma": 0.8, "networks": {"fc_units": 128}})
    new = run_dir("new", {"gamma": 0.935, "networks": {"fc_units": 128}, "cql_tau": 3.0})
    assert results.describe_run(new)["settings"]["gamma"] == 0.935
    files = []
    for name, path in (("a.json", old), ("b.json", new)):
        data = copy.deepcopy(_sample_results())
        data["header"]["models"] = {"distance": results.describe_run(path)}
        files.append((name, data))
    # cql_tau is in one run's record only: not a difference; fc_units agrees.
    assert report.varying_settings([d["header"] for _, d in files]) == {
        ("reach", "distance"): ["gamma"]}
    text = report.render(files)
    assert "settings: gamma = 0.8\n" in text and "settings: gamma = 0.935\n" in text
    assert "fc_units" not in text
    # A setting that varies among the runs that record it (an ensemble's size) is not named
    # for a run without it.
    third = run_dir("third", {"gamma": 0.935, "networks": {"fc_units": 128}, "cql_tau": 5.0})
    data = copy.deepcopy(_sample_results())
    data["header"]["models"] = {"distance": results.describe_run(third)}
    text = report.render(files + [("c.json", data)])
    assert "settings: cql_tau = 3.0, gamma = 0.935\n" in text
    assert "settings: gamma = 0.8\n" in text and "cql_tau = —" not in text
    # Runs of another task are compared among themselves only.
    files[1][1]["header"]["task"] = "push1"
    assert "settings:" not in report.render(files)


def test_report_names_the_file_and_field_of_a_bad_results_file(tmp_path):
    data = _sample_results()
    bad = copy.deepcopy(data)
    del bad["episodes"][3]["object_moved"]
    path = str(tmp_path / "bad.json")
    with open(path, "w") as f:
        json.dump(bad, f)
    with pytest.raises(results.ResultsFormatError, match="bad.json: episode 3 is missing field "
                                                         "'object_moved'"):
        results.load_results(path)
    old = dict(data, version=0)
    with open(str(tmp_path / "old.json"), "w") as f:
        json.dump(old, f)
    run = subprocess.run([sys.executable, "-m", "launch.report", str(tmp_path / "old.json")],
                         cwd=mbold_tf.REPO_ROOT, capture_output=True, text=True, check=False)
    assert run.returncode != 0
    assert "old.json: results format version 0" in run.stderr
    assert "Traceback" not in run.stderr


def test_results_page_is_the_report_of_the_committed_results():
    """docs/results.md holds no typed number: it equals the report of results/*.json."""
    root = mbold_tf.REPO_ROOT
    paths = sorted(glob.glob(os.path.join(root, "results", "*.json")))
    assert paths, "docs/results.md cites results/*.json: commit the results files"
    rel = [os.path.relpath(p, root) for p in paths]
    with open(os.path.join(root, "README.md")) as f:
        readme = f.read()
    cwd = os.getcwd()
    os.chdir(root)
    try:
        expected = results_page.results_page(rel, "docs/results.md",
                                             report.readme_anchors(readme),
                                             paper_comparison.PAPER_NUMBERS, "README.md")
    finally:
        os.chdir(cwd)
    with open(os.path.join(root, "docs", "results.md")) as f:
        assert f.read() == expected, "regenerate: python -m launch.report results/*.json " \
            "--out=docs/results.md --readme=README.md --paper=results/paper/mbold_iclr2021.json"
    files = [(p, results.load_results(os.path.join(root, p))) for p in rel]
    assert report.readme_with_headline(readme, files) == readme, \
        "regenerate: python -m launch.report results/*.json --readme=README.md"
    assert "| MBOLD · video predictor |" in readme  # the block is not empty
    with pytest.raises(ValueError, match="no results block"):
        report.readme_with_headline("# A README without the markers\n", files)


def test_evaluate_names_a_bad_grid_without_a_traceback():
    # Without the test session's TF_CPP_MIN_LOG_LEVEL, as a user runs it.
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_CPP_MIN_LOG_LEVEL", "CUDA_VISIBLE_DEVICES", "MBOLD_VERBOSE")}
    run = subprocess.run([sys.executable, "-m", "launch.evaluate", "--methods=privileged,random",
                          "--models=predictor", "--out=/nonexistent"], env=env,
                         cwd=mbold_tf.REPO_ROOT, capture_output=True, text=True, check=False)
    assert run.returncode != 0
    assert "launch.evaluate: Method 'privileged' needs the simulator model" in run.stderr
    assert "Traceback" not in run.stderr
    # The launcher imports TensorFlow and TF-Agents with their CPU-machine banners filtered.
    for banner in ("TensorRT", "cuda", "cuDNN", "Gym has been unmaintained", "oneDNN"):
        assert banner not in run.stderr, run.stderr


def test_gin_cannot_bind_what_the_method_decides():
    """The cost name and the planning model come from the method and the evaluation grid; a gin
    binding of either fails instead of being silently overridden."""
    for binding in ("make_cost.name = 'no_such_cost'", "make_policy.model = 'simulator'"):
        with pytest.raises(ValueError, match="denylisted kwarg"):
            gin.parse_config([binding])
        gin.clear_config()


def test_beam_evaluation_equals_the_sequential_one(tmp_path):
    """2 goals × 2 seeds on DirectRunner with 2 worker processes: the same per-episode results
    (all but the wall time) as the sequential path, in the same order; a bad runner fails first."""
    from mbold_tf.eval import beam_eval
    from mbold_tf.utils import beam
    goal_set = goals.generate_goal_set("reach", num_goals=2, seed=5)
    gin.clear_config()
    gin.parse_config(["CEMConfig.num_samples = 40", "CEMConfig.num_elites = 5",
                      "CEMConfig.iterations = 2"])
    kwargs = dict(seeds=[0, 1], num_gifs=0, planning_models=["simulator"], command="pytest")
    try:
        seq = policy_eval.evaluate_methods(goal_set, ["privileged", "random"], {},
                                           out_dir=str(tmp_path / "seq"), model_dirs={},
                                           **kwargs)
        with pytest.raises(beam.BeamOptionsError, match="NoSuchRunner"):
            beam_eval.evaluate_methods_on_beam(goal_set, ["privileged", "random"], {},
                                               out_dir=str(tmp_path / "never"),
                                               beam_pipeline_options="runner=NoSuchRunner",
                                               **kwargs)
        assert not os.path.exists(tmp_path / "never")
        on_beam = beam_eval.evaluate_methods_on_beam(
            goal_set, ["privileged", "random"], {}, out_dir=str(tmp_path / "beam"),
            beam_pipeline_options="runner=DirectRunner,direct_num_workers=2,"
                                  "direct_running_mode=multi_processing", **kwargs)
    finally:
        gin.clear_config()

    def strip(data):
        return [{k: v for k, v in e.items() if k != "seconds"} for e in data["episodes"]]

    assert len(seq["episodes"]) == 8
    assert strip(on_beam) == strip(seq)
    # the same header but its date (the two runs may straddle a minute)
    assert ({k: v for k, v in on_beam["header"].items() if k != "date"}
            == {k: v for k, v in seq["header"].items() if k != "date"})
    assert any(e["success"] for e in on_beam["episodes"] if e["method"] == "privileged")
    # the same GIFs: every success and each cell and seed's first failure, none pending
    seq_gifs = sorted(os.listdir(tmp_path / "seq" / "gifs"))
    assert sorted(os.listdir(tmp_path / "beam" / "gifs")) == seq_gifs
    assert any("seed1_" in n for n in seq_gifs), seq_gifs
