"""Rank sampled plans with each planning cost against their true outcome: where MPC loses.

    python -m launch.evaluate_costs --task=reach --num_goals=10 \\
        --predictor_dir=runs/predictor_reach_cpu --distance_dir=runs/distance_reach_cpu

For each goal, N action sequences from CEM's first sampling distribution are predicted by the
video predictor and also run in the simulator; every cost (pixel ℓ2; with --distance_dir the
learned distance, Eq. 3's actor form and the plan-transition form; with --vae_dir/--temporal_dir
those baselines) scores them on predicted and on real frames. Prints Spearman ρ with the true
final distance and the true distance of the K best-scored plans (see
``mbold_tf/eval/cost_ranking.py``); the last line is one JSON object, also written to --out.
"""
import json
import os

from absl import app
from absl import flags

from launch import model_flags
from mbold_tf.agents import checkpoints
from mbold_tf.envs import goals
from mbold_tf.eval import cost_ranking
from mbold_tf.planning import costs
from mbold_tf.planning import configurables  # noqa: F401  (registers the planner's gin settings)

flags.DEFINE_string("task", "reach", "Task name.")
flags.DEFINE_integer("num_goals", 10, "Goals generated (seed --goal_seed).")
flags.DEFINE_integer("goal_seed", 0, "Seed of the generated goal set.")
flags.DEFINE_bool("hard", False, "Hard goals.")
flags.DEFINE_integer("num_sequences", 100, "Plans sampled per goal (the CPU preset's N).")
flags.DEFINE_integer("num_elites", 10, "K best-scored plans whose true distance is reported.")
flags.DEFINE_integer("seed", 0, "Sampling seed.")
flags.DEFINE_string("out", None, "Optional JSON output path.")
ROLES = ("predictor", "distance", "vae", "temporal")
model_flags.define(ROLES)
flags.mark_flag_as_required("predictor_dir")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    models = checkpoints.load_models(model_flags.model_dirs(ROLES))
    cost_fns = {"pixel_l2": costs.make_cost("pixel_l2")}  # Visual Foresight
    if "distance" in models:
        cost_fns["learned_distance"] = costs.make_cost(  # MBOLD, Eq. 3
            "learned_distance", models["distance"], q_action="actor")
        cost_fns["learned_distance_plan"] = costs.make_cost(
            "learned_distance", models["distance"], q_action="plan")
    for role in ("vae", "temporal"):
        if role in models:
            cost_fns[role] = costs.make_cost(role, models[role])
    goal_set = goals.generate_goal_set(FLAGS.task, num_goals=FLAGS.num_goals, hard=FLAGS.hard,
                                       seed=FLAGS.goal_seed)
    result = cost_ranking.rank_costs(goal_set, models["predictor"], cost_fns,
                                     num_sequences=FLAGS.num_sequences,
                                     num_elites=FLAGS.num_elites, seed=FLAGS.seed)
    print(cost_ranking.format_table(result))
    summary = {k: v for k, v in result.items() if k != "per_goal"}
    summary["task"] = FLAGS.task
    if FLAGS.out:
        os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
        with open(FLAGS.out, "w") as f:
            json.dump({**result, "task": FLAGS.task}, f, indent=1)
    print(json.dumps(summary))


if __name__ == "__main__":
    app.run(main)
