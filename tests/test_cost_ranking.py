"""The cost-ranking check: rolled-out outcomes, Spearman ρ and elite distances are measured right."""
import tensorflow as tf

from mbold_tf.envs import goals
from mbold_tf.eval import cost_ranking
from mbold_tf.models import video_predictor
from mbold_tf.planning import costs
from tests.test_mpc_policy import LAG  # share of a commanded displacement covered in one step


def _kinematic_cost(start_ee, goal_ee):
    """Predicted final end-effector distance to the goal from the actions alone (reach)."""
    def cost_fn(prediction, observation, actions):
        del prediction, observation
        final = start_ee + 0.1 * LAG * tf.reduce_sum(actions[..., :3], axis=1)
        return tf.norm(final - goal_ee, axis=-1)
    return cost_fn


def test_rank_costs_scores_true_outcomes():
    goal_set = goals.generate_goal_set("reach", num_goals=1, seed=3)
    predictor = video_predictor.VideoPredictor(horizon=4, width=4, norm="none",
                                               num_transformed=1).build_variables()
    good = _kinematic_cost(goal_set.start_ee[0], goal_set.goal_ee[0])
    result = cost_ranking.rank_costs(
        goal_set, predictor, {"kinematic": good,
                              "inverted": lambda p, o, a: -good(p, o, a),
                              "pixel_l2": costs.make_cost("pixel_l2")},
        num_sequences=24, num_elites=4, seed=0)
    s = result["summary"]
    # An action-only cost ranks predicted and real rollouts alike, and it knows the kinematics.
    assert s["kinematic"]["spearman_real"] == s["kinematic"]["spearman_predicted"]
    assert s["kinematic"]["spearman_real"] > 0.95, s  # measured 0.998 and 1.0 (seeds 3, 4)
    assert s["inverted"]["spearman_real"] < -0.95, s
    assert result["best_elite_distance"] <= s["kinematic"]["elite_distance_real"] \
        < result["mean_distance"] < s["inverted"]["elite_distance_real"]
    # The true distances are the simulator's: the start is ≥ 0.15 m from a reach goal (x-y) and
    # four steps of at most 0.1 m cannot cover all of it for most plans.
    assert 0.05 < result["mean_distance"] < 0.6
    assert -1.0 <= s["pixel_l2"]["spearman_predicted"] <= 1.0
    assert "pixel_l2" in cost_ranking.format_table(result)
