"""dm_control tasks, goal sets, metrics, wrappers and adapters."""
import numpy as np
import pytest

from mbold_tf.envs import goal_env
from mbold_tf.envs import goals
from mbold_tf.envs import metrics
from mbold_tf.envs import random_policy
from mbold_tf.envs import scene
from mbold_tf.envs import tasks


@pytest.fixture
def push1():
    env = tasks.load("push1", seed=3)
    yield env
    tasks.close(env)


def _run(task, seed, steps=10):
    env = tasks.load(task, seed=seed)
    policy = random_policy.CorrelatedNoisePolicy(tasks.TASKS[task].collection_std, seed=seed)
    ts = env.reset()
    images, states = [ts.observation["image"]], [env.physics.get_state_vector()]
    for a in policy.sample_episode(steps):
        ts = env.step(a)
        images.append(ts.observation["image"])
        states.append(env.physics.get_state_vector())
    tasks.close(env)
    return np.stack(images), np.stack(states)


@pytest.mark.parametrize("task", sorted(tasks.TASKS))
def test_observations_and_specs(task):
    env = tasks.load(task, seed=0)
    ts = env.reset()
    obs = ts.observation
    assert obs["image"].shape == (64, 64, 3) and obs["image"].dtype == np.uint8
    assert obs["joint_pos"].shape == (7,) and obs["gripper"].shape == (2,)
    assert obs["image"].std() > 5  # a real frame, not a blank buffer
    assert set(obs) == {"image", "joint_pos", "gripper"}  # privileged state is not observed
    n = 0
    while not ts.last():
        ts = env.step(np.zeros(4))
        n += 1
    assert n == tasks.EPISODE_STEPS
    tasks.close(env)


def test_same_seed_same_images_and_states():
    im1, st1 = _run("push3", seed=7)
    im2, st2 = _run("push3", seed=7)
    im3, _ = _run("push3", seed=8)
    np.testing.assert_array_equal(im1, im2)
    np.testing.assert_array_equal(st1, st2)
    assert not np.array_equal(im1, im3)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_actions_move_end_effector_in_commanded_direction(push1, axis):
    push1.reset()
    physics = push1.physics
    for sign in (+1.0, -1.0):
        start = physics.ee_pos()
        action = np.zeros(4)
        action[axis] = sign * 0.5
        push1.step(action)
        delta = physics.ee_pos() - start
        assert sign * delta[axis] > 0.02, delta
        others = [i for i in range(3) if i != axis]
        assert np.all(np.abs(delta[others]) < 0.5 * abs(delta[axis]))


def test_the_task_sets_how_far_one_action_moves_the_hand():
    moved = {}
    for task in ("reach", "reach_fine", "push1", "push1_fine"):
        env = tasks.load(task, seed=0)
        try:
            env.reset()
            start = env.physics.ee_pos()
            env.step(np.array([0.5, 0.0, 0.0, 0.0]))
            moved[task] = env.physics.ee_pos()[0] - start[0]
            assert env.task.action_scale == tasks.TASKS[task].action_scale
        finally:
            tasks.close(env)
    # Half a unit action commands 5 cm at reach's 0.1 m scale (the arm covers ~73% of it within
    # the step), 0.3 times that at reach_fine's 0.03 m and half of push1's at push1_fine's 0.05 m.
    assert 0.025 < moved["reach"] <= 0.05
    assert moved["reach_fine"] / moved["reach"] == pytest.approx(0.3, abs=0.03)
    assert moved["push1_fine"] / moved["push1"] == pytest.approx(0.5, abs=0.05)


def test_workspace_bounds_respected():
    env = tasks.load("reach", seed=0)
    for direction in (np.array([1, 1, 1, 0.0]), np.array([-1, -1, -1, 0.0])):
        env.reset()
        for _ in range(29):
            env.step(direction)
        ee = env.physics.ee_pos()
        assert np.all(ee <= scene.EE_HIGH + 0.01) and np.all(ee >= scene.EE_LOW - 0.01), ee
        # It went all the way to the commanded corner of the box.
        corner = scene.EE_HIGH if direction[0] > 0 else scene.EE_LOW
        assert np.linalg.norm(ee - corner) < 0.05, (ee, corner)
    tasks.close(env)


def test_joint_pos_and_gripper_change_when_arm_moves(push1):
    ts = push1.reset()
    q0, g0 = ts.observation["joint_pos"].copy(), ts.observation["gripper"].copy()
    for _ in range(3):
        ts = push1.step([0.8, 0.3, 0.0, -1.0])
    assert np.abs(ts.observation["joint_pos"] - q0).max() > 0.05
    assert np.all(ts.observation["gripper"] < g0 - 0.01)  # -1 closes the fingers


def test_block_resets_uniform_and_restricted():
    for restricted, half in ((False, 0.2), (True, 0.05)):
        env = tasks.load("push1", seed=0, restricted=restricted)
        xy = []
        for _ in range(40):
            env.reset()
            xy.append(env.physics.block_pos()[0, :2] - scene.WORKSPACE_CENTER[:2])
        xy = np.array(xy)
        assert np.all(np.abs(xy) <= half + 1e-6)
        assert np.abs(xy).max() > 0.6 * half  # spread over the range, not a point
        tasks.close(env)


def test_success_metrics_on_constructed_states():
    spec = tasks.task_spec("push3")
    goal = {"ee_pos": np.zeros(3), "block_pos": np.array([[0, 0.6, 0.03], [0.1, 0.6, 0.03],
                                                          [0.2, 0.6, 0.03]]),
            "door_pos": np.array([0.2])}
    near = {**goal, "block_pos": goal["block_pos"] + np.array([[0.0, 0.0, 0], [0.04, 0, 0],
                                                              [0.3, 0, 0]])}
    assert metrics.success(spec, near, goal, moved_object=1)      # 4 cm < 5 cm
    assert not metrics.success(spec, near, goal, moved_object=2)  # 30 cm
    assert metrics.object_distance(spec, near, goal, 1) == pytest.approx(0.04)
    reach = tasks.task_spec("reach")
    assert metrics.success(reach, {**goal, "ee_pos": np.array([0.03, 0.0, 0.0])}, goal)
    assert not metrics.success(reach, {**goal, "ee_pos": np.array([0.03, 0.045, 0.0])}, goal)
    door = tasks.task_spec("door_slide")
    assert metrics.success(door, {**goal, "door_pos": np.array([0.27])}, goal)
    assert not metrics.success(door, {**goal, "door_pos": np.array([0.28])}, goal)
    assert metrics.arm_distance({"ee_pos": np.array([0.3, 0.4, 0])}, goal) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="moved_object=3"):
        metrics.object_distance(spec, near, goal, moved_object=3)


@pytest.mark.parametrize("task", ["reach", "push1", "door_slide"])
def test_goal_sets_reproducible(task):
    a = goals.generate_goal_set(task, num_goals=3, seed=11)
    b = goals.generate_goal_set(task, num_goals=3, seed=11)
    c = goals.generate_goal_set(task, num_goals=3, seed=12)
    assert a.goal_images.tobytes() == b.goal_images.tobytes()
    np.testing.assert_array_equal(a.start_states, b.start_states)
    assert a.goal_images.tobytes() != c.goal_images.tobytes()


def test_goal_conditions_regular_and_hard():
    reg = goals.generate_goal_set("push1", num_goals=4, seed=5)
    hard = goals.generate_goal_set("push1", num_goals=4, seed=5, hard=True)
    for gs in (reg, hard):
        disp = np.linalg.norm(gs.goal_blocks[:, 0, :2] - gs.start_blocks[:, 0, :2], axis=1)
        assert np.all(disp > goals.PUSH_MIN_MOTION)
    arm_to_block = np.linalg.norm(hard.goal_ee[:, :2] - hard.goal_blocks[:, 0, :2], axis=1)
    assert np.all(arm_to_block > goals.HARD_ARM_CLEARANCE)
    reach = goals.generate_goal_set("reach", num_goals=4, seed=5)
    assert np.all(np.linalg.norm(reach.goal_ee[:, :2] - reach.start_ee[:, :2], axis=1) >= 0.15)
    door = goals.generate_goal_set("door_slide", num_goals=4, seed=5)
    travel = np.abs(door.goal_door - door.start_door).ravel()
    np.testing.assert_allclose(travel, 2 * goals.DOOR_HALF_TRAVEL, atol=1e-6)


def test_push3_goals_move_exactly_one_block():
    gs = goals.generate_goal_set("push3", num_goals=3, seed=2)
    disp = np.linalg.norm(gs.goal_blocks[..., :2] - gs.start_blocks[..., :2], axis=-1)
    assert np.all((disp > goals.PUSH_MOVED).sum(axis=1) == 1)
    np.testing.assert_array_equal(np.argmax(disp, axis=1), gs.moved_object)


def test_goal_set_save_load_and_start_state(tmp_path):
    gs = goals.generate_goal_set("push1", num_goals=2, seed=0)
    path = str(tmp_path / "g.npz")
    gs.save(path)
    back = goals.GoalSet.load(path)
    assert back.task == "push1" and len(back) == 2
    np.testing.assert_array_equal(back.goal_images, gs.goal_images)
    env = goal_env.GoalConditionedPyEnvironment(back)
    env.set_goal(1)
    ts = env.reset()
    np.testing.assert_allclose(env.physics.block_pos(), gs.start_blocks[1], atol=1e-6)
    np.testing.assert_array_equal(ts.observation["goal_image"], gs.goal_images[1])
    # Re-rendering the goal state gives the stored goal image byte for byte.
    env.physics.set_state_vector(gs.goal_states[1])
    np.testing.assert_array_equal(env.physics.render_image(), gs.goal_images[1])
    env.close()


@pytest.mark.parametrize("bad", [[np.nan, 0, 0, 0], [0, np.inf, 0, 0], [0, 0, 0], [[0, 0, 0, 0]]])
def test_bad_actions_rejected_state_unchanged(push1, bad):
    push1.reset()
    push1.step([0.2, 0.1, 0.0, 0.0])
    before = push1.physics.get_state_vector()
    with pytest.raises(ValueError, match=r"\[-1, 1\]") as err:
        push1.step(bad)
    assert "nan" in str(err.value).lower() or "inf" in str(err.value).lower() or \
        "shape" in str(err.value)
    np.testing.assert_array_equal(push1.physics.get_state_vector(), before)


def test_unknown_task_and_goal_index_rejected():
    with pytest.raises(ValueError, match="'push7'.*door_slide"):
        tasks.load("push7")
    gs = goals.generate_goal_set("reach", num_goals=2, seed=0)
    env = goal_env.GoalConditionedPyEnvironment(gs)
    for index in (2, -1):
        with pytest.raises(ValueError, match=rf"{index}.*0\.\.1"):
            env.set_goal(index)
    env.close()


def test_goal_env_with_tf_agents_driver():
    from tf_agents.drivers import py_driver
    from tf_agents.environments import utils as env_utils
    from tf_agents.metrics import py_metrics
    from tf_agents.policies import random_py_policy

    gs = goals.generate_goal_set("reach", num_goals=2, seed=0)
    env = goal_env.GoalConditionedPyEnvironment(gs)
    env_utils.validate_py_environment(env, episodes=1)
    policy = random_py_policy.RandomPyPolicy(env.time_step_spec(), env.action_spec())
    length = py_metrics.AverageEpisodeLengthMetric()
    driver = py_driver.PyDriver(env, policy, observers=[length], max_episodes=2)
    driver.run(env.reset())
    assert length.result() == tasks.EPISODE_STEPS
    m = env.episode_metrics()
    assert set(m) == {"goal_index", "success", "object_distance", "arm_distance",
                      "start_object_distance", "start_arm_distance", "object_displacement",
                      "object_moved"}
    # The driver stops after the boundary step, i.e. just after the auto-reset into the next
    # goal: nothing has moved yet and the distances are the start distances (reach goals are
    # ≥ 0.15 m of end-effector motion away).
    assert (m["object_moved"], m["object_displacement"]) == (0.0, 0.0)
    assert m["object_distance"] == m["start_object_distance"] >= 0.15 - 1e-6
    env.step(np.ones(4, np.float32))
    moved = env.episode_metrics()
    assert moved["object_moved"] == 1.0 and moved["object_displacement"] > 0.01
    assert moved["start_object_distance"] == m["start_object_distance"]
    env.close()


def test_reach_goal_reached_by_scripted_controller():
    """Driving the end effector to the goal position with a P-controller succeeds."""
    gs = goals.generate_goal_set("reach", num_goals=2, seed=4)
    env = goal_env.GoalConditionedPyEnvironment(gs)
    for i in range(2):
        env.set_goal(i)
        ts = env.reset()
        while not ts.is_last():
            err = gs.goal_ee[i] - env.physics.ee_pos()
            ts = env.step(np.append(np.clip(err / 0.1, -1, 1), 0.0).astype(np.float32))
        assert env.episode_metrics()["success"] == 1.0
        assert ts.reward == 1.0
    env.close()


def test_dm_env_adapter_on_dm_control_suite():
    from dm_control import suite
    from dm_control.suite.wrappers import pixels
    from mbold_tf.envs import adapters

    base = pixels.Wrapper(suite.load("reacher", "easy", task_kwargs={"random": 0}),
                          pixels_only=False, render_kwargs={"height": 48, "width": 48})
    env = adapters.ImageArmAdapter(base, image_key="pixels", proprio_key="position")
    ts = env.reset()
    assert ts.observation["image"].shape == (64, 64, 3)
    assert ts.observation["joint_pos"].shape == (2,)
    ts2 = env.step(np.ones(2))
    assert not np.allclose(ts2.observation["joint_pos"], ts.observation["joint_pos"])
    with pytest.raises(ValueError, match="finite"):
        env.step([np.nan, 0.0])
    with pytest.raises(KeyError, match="'arm'.*position"):
        adapters.ImageArmAdapter(base, image_key="pixels", proprio_key="arm").reset()


class _PointMassGymnasium:
    """A user's Gymnasium-API env (5-tuple step, (obs, info) reset) drawing a dot at its position."""

    class _Box:
        def __init__(self, low, high):
            self.low, self.high = np.array(low, float), np.array(high, float)

    def __init__(self):
        self.action_space = self._Box([-2, -2], [2, 2])
        self.observation_space = None
        self.pos = np.zeros(2)

    def _obs(self):
        img = np.zeros((32, 32, 3), np.uint8)
        x, y = ((self.pos + 1) * 15.5).astype(int).clip(0, 31)
        img[y, x] = 255
        return {"rgb": img, "qpos": self.pos.copy()}

    def reset(self, seed=None):
        self.pos = np.zeros(2)
        return self._obs(), {}

    def step(self, action):
        self.pos = np.clip(self.pos + 0.1 * np.asarray(action), -1, 1)
        return self._obs(), 0.0, False, bool(abs(self.pos).max() >= 1), {}


def test_gymnasium_adapter_rescales_actions():
    from mbold_tf.envs import adapters

    env = adapters.ImageArmAdapter(_PointMassGymnasium(), image_key="rgb", proprio_key="qpos")
    ts = env.reset()
    assert ts.observation["image"].shape == (64, 64, 3)
    ts = env.step([1.0, -1.0])  # [-1, 1] -> the env's [-2, 2]
    np.testing.assert_allclose(ts.observation["joint_pos"], [0.2, -0.2], atol=1e-6)
    assert env.action_spec().shape == (2,)


def test_correlated_noise_statistics():
    std = np.array([0.6, 0.6, 0.3, 0.3])
    policy = random_policy.CorrelatedNoisePolicy(std, beta=0.5, seed=0)
    u = np.concatenate([policy.sample_episode(30)[5:] for _ in range(800)])  # skip warm-up
    # Stationary u_t = 0.5 n_t + 0.5 u_{t-1}: std = std·sqrt(0.25/0.75), lag-1 corr = 0.5.
    np.testing.assert_allclose(u.std(axis=0), std * np.sqrt(1 / 3), rtol=0.06)
    eps = np.stack([policy.sample_episode(30) for _ in range(800)])[:, 5:]
    lag1 = [np.corrcoef(eps[:, :-1, d].ravel(), eps[:, 1:, d].ravel())[0, 1] for d in range(4)]
    np.testing.assert_allclose(lag1, 0.5, atol=0.05)


@pytest.mark.parametrize("task, restricted", [(t, r) for t in sorted(tasks.TASKS)
                                              for r in (False, True)])
def test_every_task_resets_validly_and_deterministically(task, restricted):
    """Blocks never overlap; the same seed gives the same state; restricted fits one block."""
    if restricted and tasks.TASKS[task].num_blocks != 1:
        with pytest.raises(ValueError, match="restricted=True"):
            tasks.task_spec(task, restricted)
        return
    states = []
    for _ in range(2):
        env = tasks.load(task, seed=7, restricted=restricted)
        try:
            for _ in range(5):
                env.reset()
                blocks = env.physics.block_pos()[:, :2]
                for i in range(len(blocks)):
                    for j in range(i):
                        assert np.linalg.norm(blocks[i] - blocks[j]) > 3 * scene.BLOCK_HALF
            states.append(env.physics.get_state_vector())
        finally:
            tasks.close(env)
    np.testing.assert_array_equal(states[0], states[1])
