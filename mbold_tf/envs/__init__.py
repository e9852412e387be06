"""dm_control tabletop tasks (reach, push1, push3, door_slide), goal sets, metrics and wrappers."""
from mbold_tf.envs.tasks import TASKS, load, privileged_state, task_spec  # noqa: F401
