"""Q-only shooting, GCBC and factory: behaviour, bounds and clear errors."""
import numpy as np
import pytest
import tensorflow as tf
from tf_agents.trajectories import time_step as ts

from mbold_tf.envs import goal_env
from mbold_tf.planning import costs
from mbold_tf.models import dreamer
from mbold_tf.models import rig
from mbold_tf.models import sorb
from mbold_tf.planning import factory
from mbold_tf.planning import policies

TIME_STEP_SPEC, ACTION_SPEC = goal_env.tf_specs()
TARGET = tf.constant([0.5, -0.3, 0.2, -0.8])


def _time_step(batch=2):
    rng = np.random.default_rng(0)
    obs = {"image": rng.integers(0, 255, (batch, 64, 64, 3), dtype=np.uint8),
           "goal_image": rng.integers(0, 255, (batch, 64, 64, 3), dtype=np.uint8),
           "joint_pos": np.zeros((batch, 7), np.float32), "gripper": np.zeros((batch, 2),
                                                                                np.float32)}
    return ts.restart({k: tf.constant(v) for k, v in obs.items()}, batch_size=batch)


def test_q_shooting_takes_the_best_of_its_candidates():
    q_fn = lambda image, goal, action: -tf.reduce_sum((action - TARGET) ** 2, axis=-1)
    policy = policies.QShootingPolicy(TIME_STEP_SPEC, ACTION_SPEC, q_fn, num_actions=100,
                                      seed=1)
    step = policy.action(_time_step(), policy.get_initial_state(2))
    err = np.linalg.norm(step.action.numpy() - TARGET.numpy(), axis=-1)
    rng = np.random.default_rng(0)
    random_err = np.linalg.norm(rng.uniform(-1, 1, (1000, 4)) - TARGET.numpy(), axis=-1)
    assert np.all(err < np.percentile(random_err, 5))  # better than 95% of random actions
    assert np.all(step.state["step"].numpy() == 1)
    again = policy.action(_time_step(), policy.get_initial_state(2))
    np.testing.assert_array_equal(again.action.numpy(), step.action.numpy())  # seeded


def test_gcbc_policy_returns_finite_bounded_actions():
    wild = lambda image, goal: tf.constant([[3.0, np.nan, -7.0, 0.25]] * 2)
    policy = policies.GCBCPolicy(TIME_STEP_SPEC, ACTION_SPEC, wild)
    action = policy.action(_time_step()).action.numpy()
    np.testing.assert_allclose(action, [[1.0, 0.0, -1.0, 0.25]] * 2)


def test_pixel_cost_prefers_the_goal_frame():
    goal = np.random.default_rng(1).integers(0, 255, (3, 64, 64, 3), dtype=np.uint8)
    pred = np.stack([goal / 255.0, np.zeros_like(goal, np.float32),
                     np.clip(goal / 255.0 + 0.1, 0, 1)]).astype(np.float32)  # [3, N=3, ...]
    prediction = tf.constant(np.transpose(pred, [1, 0, 2, 3, 4]))  # [N, h=3, ...]: last frame
    cost = costs.make_cost("pixel_l2")(prediction, {"goal_image": tf.constant(goal)}).numpy()
    # the last predicted frame is what is scored: element i's last frame is pred[2][i]
    direct = costs.pixel_l2(prediction[:, -1], goal).numpy()
    np.testing.assert_allclose(cost, direct)
    exact = costs.make_cost("pixel_l2")(tf.constant(goal[:, None] / 255.0, tf.float32),
                                         {"goal_image": tf.constant(goal)}).numpy()
    np.testing.assert_allclose(exact, 0.0, atol=1e-7)


def test_scoring_horizon_stops_at_episode_end():
    assert int(costs.scoring_horizon(tf.constant(0, tf.int64), 13, 30)) == 13
    assert int(costs.scoring_horizon(tf.constant(24, tf.int64), 13, 30)) == 6
    assert int(costs.scoring_horizon(tf.constant(40, tf.int64), 13, 30)) == 1
    assert int(costs.scoring_horizon(tf.constant(24, tf.int64), 13, None)) == 13


def test_bad_names_and_missing_models_fail_clearly():
    with pytest.raises(ValueError, match=r"Unknown planning cost 'l1'.*pixel_l2"):
        costs.make_cost("l1")
    with pytest.raises(ValueError, match="needs a trained model"):
        costs.make_cost("vae")
    with pytest.raises(ValueError, match=r"Unknown method 'foresight'.*'vf'"):
        factory.make_policy("foresight", TIME_STEP_SPEC, ACTION_SPEC, [0.6] * 4, {})
    with pytest.raises(ValueError, match=r"'mbold' needs trained model\(s\) \['predictor', "
                                         r"'distance'\]"):
        factory.make_policy("mbold", TIME_STEP_SPEC, ACTION_SPEC, [0.6] * 4, {})


class _RoutingDistance:
    """Q = mean pixel value of the image it is given + 10 × the action's first component."""
    reward_scheme, gamma, action_dim = "indicator", 0.8, 4

    def q_values(self, image, goal_image, action=None):
        q = tf.reduce_mean(tf.cast(image, tf.float32), axis=[1, 2, 3])
        return q if action is None else q + 10.0 * action[:, 0]


def test_plan_q_cost_scores_the_last_transition_of_the_plan():
    frames = np.stack([np.full((64, 64, 3), v, np.float32) for v in (0.1, 0.2, 0.3)])
    prediction = tf.constant(np.stack([frames, frames + 0.5]))              # [N=2, h=3, ...]
    actions = np.zeros([2, 3, 4], np.float32)
    actions[:, -1, 0] = [0.5, -0.25]
    actions[:, 0, 0] = 9.0                                                  # never read
    obs = {"image": tf.fill([2, 64, 64, 3], tf.constant(51, tf.uint8)),      # 0.2 as a float
           "goal_image": tf.zeros([2, 64, 64, 3], tf.uint8)}
    model = _RoutingDistance()
    plan = costs.make_cost("learned_distance", model, q_action="plan")
    # Q of the frame before the last (0.2, 0.7) at the plan's last action (×10: 5, −2.5)
    np.testing.assert_allclose(plan(prediction, obs, tf.constant(actions)).numpy(),
                               [-5.2, -(0.7 - 2.5)], rtol=1e-5)
    # One frame left before the episode's end: the transition starts at the camera image.
    np.testing.assert_allclose(plan(prediction[:, -1:], obs, tf.constant(actions[:, -1:])).numpy(),
                               [-5.2, 2.3], rtol=1e-5)
    actor = costs.make_cost("learned_distance", model)                      # Eq. 3: last frame
    np.testing.assert_allclose(actor(prediction, obs, tf.constant(actions)).numpy(),
                               [-0.3, -0.8], rtol=1e-5)
    # 'zero': the last frame at the zero action; an actor that moved would score −(q + 10).
    seen = []

    class _Recording(_RoutingDistance):
        def q_values(self, image, goal_image, action=None):
            seen.append(None if action is None else action.numpy())
            q = super().q_values(image, goal_image, action)
            return q + 10.0 if action is None else q

    zero = costs.make_cost("learned_distance", _Recording(), q_action="zero")
    np.testing.assert_allclose(zero(prediction, obs).numpy(), [-0.3, -0.8], rtol=1e-5)
    np.testing.assert_array_equal(seen[-1], np.zeros([2, 4], np.float32))
    zero_steps = costs.make_cost("learned_distance", _Recording(), q_action="zero", steps=True)
    np.testing.assert_allclose(zero_steps(prediction, obs).numpy(),
                               np.log([0.3, 0.8]) / np.log(0.8), rtol=1e-5)
    with pytest.raises(ValueError, match="q_action 'last'"):
        costs.make_cost("learned_distance", model, q_action="last")
    with pytest.raises(ValueError, match="call cost_fn\\(prediction, observation, actions\\)"):
        plan(prediction, obs)


def _tiny_sorb(distance):
    """An untrained tiny SoRB model with a 3-node graph whose edges all pass max_dist."""
    model = sorb.SorbModel(sorb.sorb_settings(encoder_filters=(4, 8), batch_norm_layers=(1,),
                                              critic_fc_layers=1, actor_fc_layers=1,
                                              fc_units=8, graph_size=3))
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    model.graph = sorb.SorbGraph(images=images, distances=np.ones((3, 3), np.float32) -
                                 np.eye(3, dtype=np.float32), indices=np.arange(3),
                                 checkpoint_step=0, seed=0)
    return model


@pytest.fixture(scope="module")
def tiny_models():
    """Untrained tiny models of every role the factory's methods use."""
    from mbold_tf.agents import checkpoints
    from mbold_tf.agents import distances
    from mbold_tf.models import baselines
    from mbold_tf.models import distance_networks as dn
    from mbold_tf.models import video_predictor

    predictor = video_predictor.VideoPredictor(horizon=4, width=4, norm="none",
                                               num_transformed=1, full_resolution_heads=False)
    predictor.build_variables()
    nets = dn.build_networks(dn.network_settings(encoder_filters=(4, 8), critic_fc_layers=1,
                                                 actor_fc_layers=1, fc_units=8))
    small = baselines.baseline_settings(encoder_filters=(4, 8), batch_norm_layers=(1,),
                                        temporal_fc_layers=1, temporal_units=8,
                                        vae_latent_dim=4, vae_units=8, gcbc_fc_layers=1,
                                        gcbc_units=8)
    models = {"predictor": predictor, "distance": distances.LearnedDistance(*nets)}
    for method in ("vae", "temporal", "gcbc"):
        model = checkpoints.build_baseline({"method": method, "networks": small,
                                            "action_dim": 4})
        checkpoints.build_baseline_variables(model, method)
        models[method] = model
    models["rig"] = rig.RigModel(rig.rig_settings(latent_dim=3, encoder_filters=(4, 8),
                                                  batch_norm_layers=(1,), vae_units=8,
                                                  actor_fc_layers=1, critic_fc_layers=1,
                                                  fc_units=8))
    tiny_dreamer = dreamer.dreamer_settings(
        encoder_filters=(4, 4, 4, 4), goal_encoder_filters=(4, 4, 4, 4), deter_size=8,
        stoch_size=4, hidden_size=8, units=8, reward_layers=1, value_layers=1, actor_layers=1,
        horizon=2)
    for method, reward in factory.DREAMER_REWARD.items():
        models[method] = dreamer.build_model(tiny_dreamer)
        models[method].reward_name, models[method].root_dir = reward, f"runs/{method}"
    models["sorb"] = _tiny_sorb(models["distance"])
    return models


@pytest.mark.parametrize("method", factory.METHODS)
def test_every_method_builds_acts_and_exports(method, tiny_models, tmp_path):
    """Contract over factory.METHODS: each builds from its models, acts with finite in-bounds
    actions, and (all but the simulator-planned 'privileged' and 'ideal_eq3') exports a
    SavedModel that the TensorFlow-only runner loads and steps."""
    from mbold_tf.envs import goals
    from mbold_tf.envs import simulator
    from mbold_tf.export import robot_side
    from mbold_tf.export import saved_model
    from mbold_tf.planning import cem

    config = cem.CEMConfig(num_samples=8, num_elites=2, iterations=1, horizon=4)
    models, model, env, sim = dict(tiny_models), "predictor", None, None
    if method in factory.SIMULATOR_ONLY:
        env = goal_env.GoalConditionedPyEnvironment(
            goals.generate_goal_set("reach", num_goals=1, seed=0))
        env.reset()
        sim = simulator.SimulatorRollouts(env)
        models, model = {"simulator": sim}, "simulator"
    try:
        policy = factory.make_policy(method, TIME_STEP_SPEC, ACTION_SPEC, [0.6, 0.6, 0.3, 0.3],
                                     models, seed=1, config=config, replan_every=2, model=model)
        time_step = _time_step(1)
        if env is not None:  # the simulator checks that it observes its own episode
            obs = env.current_time_step().observation
            time_step = ts.restart({k: tf.constant(np.asarray(v)[None]) for k, v in obs.items()},
                                   batch_size=1)
        action = policy.action(time_step, policy.get_initial_state(1)).action.numpy()
        assert action.shape == (1, 4) and np.all(np.abs(action) <= 1.0)
        if method in factory.SIMULATOR_ONLY:
            return
        path = str(tmp_path / method)
        saved_model.export_policy(policy, path, {"method": method})
        robot = robot_side.RobotPolicy(path)
        obs = {k: v.numpy()[0] for k, v in _time_step(1).observation.items()}
        out = robot.act(obs)
        assert out.shape == (4,) and np.all(np.isfinite(out)) and np.all(np.abs(out) <= 1.0)
    finally:
        if sim is not None:
            sim.close()
        if env is not None:
            env.close()


def test_cem_may_plan_fewer_steps_than_the_predictor_was_trained_for(tiny_models, tmp_path):
    """CEM horizon 2 on a horizon-4 predictor plans (the predictor predicts 2 frames) and
    exports; a horizon beyond the predictor's fails naming the setting."""
    from mbold_tf.export import robot_side
    from mbold_tf.export import saved_model
    from mbold_tf.planning import cem

    models = {"predictor": tiny_models["predictor"], "distance": tiny_models["distance"]}
    config = cem.CEMConfig(num_samples=8, num_elites=2, iterations=1, horizon=2)
    policy = factory.make_policy("mbold", TIME_STEP_SPEC, ACTION_SPEC, [0.6, 0.6, 0.3, 0.3],
                                 models, seed=1, config=config, replan_every=1)
    step = policy.action(_time_step(1), policy.get_initial_state(1))
    assert step.state["plan"].shape == (1, 2, 4)
    path = str(tmp_path / "short")
    saved_model.export_policy(policy, path, {"method": "mbold"})
    obs = {k: v.numpy()[0] for k, v in _time_step(1).observation.items()}
    assert np.all(np.abs(robot_side.RobotPolicy(path).act(obs)) <= 1.0)
    with pytest.raises(ValueError, match=r"horizon 4 but CEM plans horizon 5.*"
                                         r"CEMConfig.horizon <= 4"):
        factory.make_policy("mbold", TIME_STEP_SPEC, ACTION_SPEC, [0.6, 0.6, 0.3, 0.3], models,
                            config=cem.CEMConfig(num_samples=8, num_elites=2, iterations=1,
                                                 horizon=5))


@pytest.mark.parametrize("method", ["mbold", "q_only"])
def test_an_ensemble_distance_plans_and_exports_every_member(method, tiny_models, tmp_path):
    """The planners score with a DistanceEnsemble as with one LearnedDistance, and its export
    acts as the in-process policy: every member's weights are in the SavedModel."""
    from mbold_tf.agents import distances
    from mbold_tf.export import robot_side
    from mbold_tf.export import saved_model
    from mbold_tf.models import distance_networks as dn
    from mbold_tf.planning import cem

    tf.random.set_seed(7)
    second = distances.LearnedDistance(*dn.build_networks(dn.network_settings(
        encoder_filters=(4, 8), critic_fc_layers=1, actor_fc_layers=1, fc_units=8)))
    ensemble = distances.DistanceEnsemble([tiny_models["distance"], second])
    models = dict(tiny_models, distance=ensemble)
    config = cem.CEMConfig(num_samples=8, num_elites=2, iterations=1, horizon=4)
    policy = factory.make_policy(method, TIME_STEP_SPEC, ACTION_SPEC, [0.6, 0.6, 0.3, 0.3],
                                 models, seed=1, config=config, replan_every=2)
    action = policy.action(_time_step(1), policy.get_initial_state(1)).action.numpy()[0]
    path = str(tmp_path / method)
    saved_model.export_policy(policy, path, {"method": method})
    robot = robot_side.RobotPolicy(path)
    obs = {k: v.numpy()[0] for k, v in _time_step(1).observation.items()}
    np.testing.assert_allclose(robot.act(obs), action, atol=1e-5)


def test_final_actor_steps_take_the_distance_actor_action_and_export(tiny_models, tmp_path):
    """With make_policy.final_actor_steps = 1, MBOLD's last step of an episode is the distance
    actor's action on the real frames, in process and in the exported SavedModel; a CEM planner
    without a learned distance keeps its plan's action."""
    from mbold_tf.export import robot_side
    from mbold_tf.export import saved_model
    from mbold_tf.planning import cem

    config = cem.CEMConfig(num_samples=8, num_elites=2, iterations=1, horizon=4)
    make = lambda method: factory.make_policy(  # noqa: E731
        method, TIME_STEP_SPEC, ACTION_SPEC, [0.6, 0.6, 0.3, 0.3], tiny_models, seed=1,
        config=config, replan_every=2, episode_length=3, final_actor_steps=1)
    policy = make("mbold")
    time_step, state = _time_step(1), policy.get_initial_state(1)
    obs = time_step.observation
    actor = np.clip(tiny_models["distance"].action(obs["image"], obs["goal_image"]).numpy()[0],
                    -1.0, 1.0)
    actions = []
    for _ in range(3):
        out = policy.action(time_step, state)
        actions.append(out.action.numpy()[0])
        # later steps of the same episode (a FIRST step would reset the policy state)
        time_step, state = ts.transition(obs, tf.zeros([1])), out.state
    assert not np.allclose(actions[0], actor) and not np.allclose(actions[1], actor)
    np.testing.assert_allclose(actions[2], actor, atol=1e-6)
    path = str(tmp_path / "final_actor")
    saved_model.export_policy(policy, path, {"method": "mbold"})
    robot = robot_side.RobotPolicy(path)
    frame = {k: v.numpy()[0] for k, v in obs.items()}
    robot_actions = [robot.act(frame) for _ in range(3)]
    np.testing.assert_allclose(robot_actions[2], actor, atol=1e-5)
    # a planner without the learned distance has no actor: its last step is its plan's
    vf = make("vf")
    vf_state = vf.get_initial_state(1)
    for _ in range(3):
        vf_out = vf.action(time_step if not vf_state["step"].numpy()[0] else
                           ts.transition(obs, tf.zeros([1])), vf_state)
        if int(vf_state["step"][0]) == 2:  # replan_every = 2: a new plan, its first action
            np.testing.assert_allclose(vf_out.action.numpy()[0],
                                       np.clip(vf_out.state["plan"].numpy()[0][0], -1, 1))
            assert not np.allclose(vf_out.action.numpy()[0], actor)
        vf_state = vf_out.state
