"""``python -m launch.benchmark envs``: env steps/s per process (physics + 64×64 render)."""
import time


from mbold_tf.envs import goals
from mbold_tf.envs import random_policy
from mbold_tf.envs import tasks


def _steps_per_second(task: str, steps: int, render: bool) -> float:
    env = tasks.load(task, seed=0)
    policy = random_policy.CorrelatedNoisePolicy(tasks.TASKS[task].collection_std, seed=0)
    try:
        env.reset()
        start = time.perf_counter()
        done = 0
        while done < steps:
            env.reset() if render else env.task.initialize_episode(env.physics)
            actions = policy.sample_episode(tasks.EPISODE_STEPS)
            if render:
                for a in actions:
                    env.step(a)
            else:
                goals.rollout(env, actions)
            done += len(actions)
        return done / (time.perf_counter() - start)
    finally:
        tasks.close(env)


def run(quick: bool = False) -> dict:
    """Returns steps/s with rendering and physics-only, and goal acceptance shares, per task."""
    steps = 600 if quick else 6000
    out = {"steps_per_s": {}, "physics_only_steps_per_s": {}, "steps_measured": steps,
           "push_goal_acceptance": {}, "target_push1_steps_per_s": 1000}
    for task in tasks.TASKS:
        out["steps_per_s"][task] = round(_steps_per_second(task, steps, render=True), 1)
        out["physics_only_steps_per_s"][task] = round(
            _steps_per_second(task, steps, render=False), 1)
    for task in ("push1", "push3"):
        for hard in (False, True):
            out["push_goal_acceptance"][f"{task}{'_hard' if hard else ''}"] = \
                goals.acceptance_rate(task, hard, rollouts=60 if quick else 400)
    return out
