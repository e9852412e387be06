"""Apache Beam pipeline options from the command line, checked before any work starts.

The launchers that run on Beam (``launch.build_dataset`` and ``launch.evaluate``) take TFDS'
form, ``--beam_pipeline_options="runner=DirectRunner,direct_num_workers=2,
direct_running_mode=multi_processing"``: comma-separated ``key=value`` pairs, each becoming
``--key=value`` of Beam's ``PipelineOptions``.
"""
from __future__ import annotations

from typing import Dict


class BeamOptionsError(ValueError):
    """Malformed pipeline options or a runner Beam does not know."""


def parse(spec: str) -> Dict[str, str]:
    """``'runner=DirectRunner,direct_num_workers=2'`` → ``{'runner': 'DirectRunner', ...}``."""
    out = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise BeamOptionsError(f"Beam pipeline option {part!r} is not key=value (e.g. "
                                   f"--beam_pipeline_options=\"runner=DirectRunner,"
                                   f"direct_num_workers=2\").")
        out[key.strip()] = value.strip()
    return out


def pipeline_options(spec: str):
    """``apache_beam.options.pipeline_options.PipelineOptions`` for ``spec`` (default runner:
    DirectRunner). Raises BeamOptionsError for malformed options or an unknown runner, before
    any pipeline is built."""
    from apache_beam.options.pipeline_options import PipelineOptions  # pylint: disable=g-import-not-at-top
    from apache_beam.runners import runner as beam_runner  # pylint: disable=g-import-not-at-top

    options = parse(spec or "")
    options.setdefault("runner", "DirectRunner")
    try:
        beam_runner.create_runner(options["runner"])
    except (ValueError, ImportError) as e:
        raise BeamOptionsError(f"Unknown Beam runner {options['runner']!r} ({e}). Use e.g. "
                               f"DirectRunner, DataflowRunner, FlinkRunner or SparkRunner.") \
            from None
    return PipelineOptions([f"--{k}={v}" for k, v in options.items()])


def runner_name(spec: str) -> str:
    """The runner ``spec`` names (DirectRunner when none)."""
    return parse(spec or "").get("runner", "DirectRunner")
