"""Import TensorFlow and TF-Agents without their start-up banners (launchers only).

On a CPU-only machine ``import tensorflow`` prints about a dozen lines that carry no information
here (CUDA drivers not found, cuDNN/cuFFT/cuBLAS factory "errors", TensorRT not found, the CPU
feature guard, oneDNN's round-off note), and TF-Agents' import of ``gym`` prints a 3-line
"Gym has been unmaintained" banner. :func:`import_libraries` imports them with the process's
stderr (file descriptor 2, where the C++ logs go) captured, then writes back every line that
does not match one of :data:`NOISE`, so real warnings and errors still reach the console.
``MBOLD_VERBOSE=1`` skips the filter. It also turns off TFDS's probing of Google Cloud Storage
for dataset metadata (this project's datasets are local; the probe logs a bearer-token warning
on machines without Google credentials), and the SyntaxWarning that autograph raises on
TF-Agents' ``has_state``.
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import warnings
from typing import Iterator, Sequence

NOISE = tuple(re.compile(p) for p in (
    r"cudart_stub\.cc.*Could not find cuda drivers",
    r"Unable to register cu(DNN|FFT|BLAS) factory",
    r"cpu_feature_guard\.cc",
    r"^To enable the following instructions: .* rebuild TensorFlow",
    r"oneDNN custom operations are on",
    r"TF-TRT Warning: Could not find TensorRT",
    r"^Gym has been unmaintained since 2022",
    r"^Please upgrade to Gymnasium, the maintained drop-in replacement of Gym",
    r"^See the migration guide at https://gymnasium\.farama\.org",
))


@contextlib.contextmanager
def filtered_stderr(patterns: Sequence[re.Pattern] = NOISE) -> Iterator[None]:
    """Captures file descriptor 2 in the block; afterwards writes back the lines that match no
    pattern (in order)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            kept = [line for line in tmp.read().decode("utf-8", "replace").splitlines(True)
                    if not any(p.search(line) for p in patterns)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def import_libraries() -> None:
    """Imports tensorflow, tensorflow_datasets and tf_agents.environments, banners filtered.

    A no-op for the filter when ``MBOLD_VERBOSE=1`` or TensorFlow is already imported.
    """
    if os.environ.get("MBOLD_VERBOSE") == "1" or "tensorflow" in sys.modules:
        context = contextlib.nullcontext()
    else:
        context = filtered_stderr()
    with context:
        import tensorflow  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
        import tensorflow_datasets  # noqa: F401  pylint: disable=g-import-not-at-top
        import tf_agents.environments  # noqa: F401  pylint: disable=g-import-not-at-top
    from tensorflow_datasets.core.utils import gcs_utils  # pylint: disable=g-import-not-at-top
    gcs_utils._is_gcs_disabled = True  # pylint: disable=protected-access
    # tf_agents.utils.common.has_state (`state is not ()`) warns each time autograph converts it.
    warnings.filterwarnings("ignore", message=r'"is not" with a literal', category=SyntaxWarning,
                            module=r".*__autograph_generated_file")
