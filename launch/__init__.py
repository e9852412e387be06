"""absl applications (``python -m launch.<name>``). Importing the package imports TensorFlow,
TFDS and TF-Agents with their start-up banners filtered (:mod:`mbold_tf.utils.quiet`)."""
from mbold_tf.utils import quiet as _quiet

_quiet.import_libraries()
