"""absl applications (``python -m launch.<name>``). Importing the package makes MuJoCo render
headless by default (``MUJOCO_GL=egl`` unless set) and imports TensorFlow, TFDS and TF-Agents
with their start-up banners filtered (:mod:`mbold_tf.utils.quiet`)."""
import os as _os

_os.environ.setdefault("MUJOCO_GL", "egl")

from mbold_tf.utils import quiet as _quiet  # noqa: E402  (after the rendering default)

_quiet.import_libraries()
