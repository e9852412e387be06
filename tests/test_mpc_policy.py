"""CEM-MPC TFPolicy with a perfect (privileged) model and cost solves reach goals."""
import numpy as np
import pytest
import tensorflow as tf
from tf_agents.environments import tf_py_environment
from tf_agents.policies import random_tf_policy

from mbold_tf.envs import goal_env
from mbold_tf.envs import goals
from mbold_tf.envs import oracle
from mbold_tf.envs import scene
from mbold_tf.envs import tasks
from mbold_tf.planning import cem
from mbold_tf.planning import mpc_policy

LAG = 0.72  # the end effector covers ~72% of a commanded displacement in one control step


def _kinematic_model(obs, actions):
    """Predicted end-effector positions [N, h, 3] from the current one and the actions."""
    step = 0.1 * LAG * actions[..., :3]
    pred = obs["ee_pos"][:, None, :] + tf.cumsum(step, axis=1)
    return tf.clip_by_value(pred, scene.EE_LOW.astype(np.float32),
                            scene.EE_HIGH.astype(np.float32))


def _true_distance(pred, obs, actions=None):
    del actions
    return tf.norm(pred[:, -1] - obs["goal_ee_pos"], axis=-1)


def _run(policy, env, tf_env, n_goals):
    results = []
    for i in range(n_goals):
        env.set_goal(i)
        time_step = tf_env.reset()
        state = policy.get_initial_state(1)
        while not time_step.is_last():
            step = policy.action(time_step, state)
            time_step, state = tf_env.step(step.action), step.state
        results.append(env.episode_metrics()["success"])
    return np.mean(results)


def test_planner_with_perfect_cost_solves_reach_and_beats_random():
    goal_set = goals.generate_goal_set("reach", num_goals=4, seed=9)
    env = goal_env.GoalConditionedPyEnvironment(goal_set)
    py_env = oracle.PrivilegedObservation(env)
    tf_env = tf_py_environment.TFPyEnvironment(py_env)
    policy = mpc_policy.MPCPolicy(
        tf_env.time_step_spec(), tf_env.action_spec(), _kinematic_model, _true_distance,
        init_std=tasks.TASKS["reach"].collection_std,
        config=cem.CEMConfig(num_samples=100, num_elites=10, iterations=3, horizon=8),
        replan_every=4)
    mpc_success = _run(policy, env, tf_env, 4)
    tf.random.set_seed(0)
    random = random_tf_policy.RandomTFPolicy(tf_env.time_step_spec(), tf_env.action_spec())
    random_success = _run(random, env, tf_env, 4)
    assert mpc_success >= 0.75, mpc_success
    assert mpc_success > random_success
    env.close()


def _oracle_reach(samples: int, iterations: int, **policy_kwargs):
    """(env, tf_env, policy): one reach goal, privileged observations, the perfect planner."""
    goal_set = goals.generate_goal_set("reach", num_goals=1, seed=1)
    env = goal_env.GoalConditionedPyEnvironment(goal_set)
    tf_env = tf_py_environment.TFPyEnvironment(oracle.PrivilegedObservation(env))
    policy = mpc_policy.MPCPolicy(
        tf_env.time_step_spec(), tf_env.action_spec(), _kinematic_model, _true_distance,
        init_std=[0.6, 0.6, 0.3, 0.3],
        config=cem.CEMConfig(num_samples=samples, num_elites=5, iterations=iterations,
                             horizon=6), **policy_kwargs)
    return env, tf_env, policy


def test_policy_state_carries_plan_between_replans():
    env, tf_env, policy = _oracle_reach(50, 2, replan_every=3)
    time_step = tf_env.reset()
    state = policy.get_initial_state(1)
    first = policy.action(time_step, state)
    plan = first.state["plan"].numpy()[0]
    np.testing.assert_allclose(first.action.numpy()[0], plan[0])
    time_step = tf_env.step(first.action)
    second = policy.action(time_step, first.state)
    np.testing.assert_array_equal(second.state["plan"].numpy()[0], plan)  # no replan yet
    np.testing.assert_allclose(second.action.numpy()[0], plan[1])
    assert int(second.state["step"][0]) == 2
    env.close()


def test_closed_loop_final_steps_replan_every_step_at_the_end():
    env, tf_env, policy = _oracle_reach(30, 1, replan_every=4, episode_length=10,
                                        closed_loop_final_steps=3, warm_start=True)
    time_step = tf_env.reset()
    state = policy.get_initial_state(1)
    replanned = []
    for step in range(10):
        out = policy.action(time_step, state)
        new_plan, old_plan = out.state["plan"].numpy()[0], state["plan"].numpy()[0]
        replanned.append(not np.array_equal(new_plan, old_plan))
        # the action is the plan's first entry right after a replan, else the stored plan's next
        index = 0 if replanned[-1] else step % 4
        np.testing.assert_allclose(out.action.numpy()[0], np.clip(new_plan[index], -1, 1))
        time_step, state = tf_env.step(out.action), out.state
    # regular schedule at 0 and 4, then every one of the last 3 steps (7, 8, 9)
    assert [s for s, r in enumerate(replanned) if r] == [0, 4, 7, 8, 9]
    # the count the planner benchmark's per-action time uses matches the policy
    assert mpc_policy.replans_per_episode(10, 4, 3) == sum(replanned)
    with pytest.raises(ValueError, match="needs episode_length"):
        mpc_policy.MPCPolicy(tf_env.time_step_spec(), tf_env.action_spec(), _kinematic_model,
                             _true_distance, init_std=[0.6] * 4, closed_loop_final_steps=2)
    env.close()


def test_final_action_steps_take_the_given_action_and_plans_end_before_them():
    seen = []  # how many predicted steps each CEM cost call scores

    def recording_distance(pred, obs, actions=None):
        seen.append(pred.shape[1])
        return _true_distance(pred, obs, actions)

    goal_set = goals.generate_goal_set("reach", num_goals=1, seed=1)
    env = goal_env.GoalConditionedPyEnvironment(goal_set)
    tf_env = tf_py_environment.TFPyEnvironment(oracle.PrivilegedObservation(env))
    fixed = np.array([0.5, -0.25, 0.0, 1.0], np.float32)
    policy = mpc_policy.MPCPolicy(
        tf_env.time_step_spec(), tf_env.action_spec(), _kinematic_model, recording_distance,
        init_std=[0.6] * 4, config=cem.CEMConfig(num_samples=20, num_elites=5, iterations=1,
                                                 horizon=6),
        replan_every=4, episode_length=10, final_action_fn=lambda obs: tf.tile(
            fixed[None], [tf.shape(obs["image"])[0], 1]), final_action_steps=3)
    time_step = tf_env.reset()
    state = policy.get_initial_state(1)
    replanned, scored = [], []
    for _ in range(10):
        seen.clear()
        out = policy.action(time_step, state)
        replanned.append(not np.array_equal(out.state["plan"].numpy()[0],
                                            state["plan"].numpy()[0]))
        scored.append(sorted(set(seen)))
        if len(replanned) > 7:
            np.testing.assert_allclose(out.action.numpy()[0], fixed)
        time_step, state = tf_env.step(out.action), out.state
    # plans at 0 and 4 only: step 8 is inside the last 3 steps (7, 8, 9), which take the action
    assert [s for s, r in enumerate(replanned) if r] == [0, 4]
    # the plan at step 4 scores the frame at step 7 (3 predicted steps), not the episode's end
    assert scored[0] == [6] and scored[4] == [3], scored
    assert mpc_policy.replans_per_episode(10, 4, 0, 3) == sum(replanned)
    with pytest.raises(ValueError, match="final_action_fn"):
        mpc_policy.MPCPolicy(tf_env.time_step_spec(), tf_env.action_spec(), _kinematic_model,
                             _true_distance, init_std=[0.6] * 4, episode_length=10,
                             final_action_steps=2)
    env.close()


def test_shift_plan_drops_executed_actions():
    plan = tf.reshape(tf.range(12, dtype=tf.float32), [6, 2])
    np.testing.assert_array_equal(cem.shift_plan(plan, 2).numpy(),
                                  [[4, 5], [6, 7], [8, 9], [10, 11], [0, 0], [0, 0]])
    np.testing.assert_array_equal(cem.shift_plan(plan, tf.constant(1, tf.int64)).numpy()[-2:],
                                  [[10, 11], [0, 0]])
    np.testing.assert_array_equal(cem.shift_plan(plan, 9).numpy(), np.zeros([6, 2]))
