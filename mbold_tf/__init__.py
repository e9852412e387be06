"""mbold-tf: MBOLD (Tian et al., ICLR 2021) on TensorFlow, TF-Agents, TFDS and dm_control.

Gin files under the repository's ``gin/`` may ``include 'gin/paper/<part>.gin'``; the repository
root is on gin's search path, so includes resolve from any working directory.
"""
import os as _os

import gin as _gin

__version__ = "0.1.0"
REPO_ROOT = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
_gin.add_config_file_search_path(REPO_ROOT)
