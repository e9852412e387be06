"""Train the RIG baseline (App. B.1): ``python -m launch.train_rig``.

  python -m launch.train_rig --root_dir=/work/runs/rig_reach_cpu \
      --gin_file=gin/presets/cpu/rig.gin

Runs both stages in one run directory, each resuming from its own checkpoint: the β-VAE on the
offline dataset's images (``train_rig_vae``, ``<root_dir>/vae``), then SAC on the VAE's latents
with online collection in the simulator (``train_rig_sac``, ``<root_dir>/sac``; the collected
environment steps are recorded in ``<root_dir>/sac/env_steps.json``). Flags are only the run
directory and gin; every setting is a gin binding (``train_rig_vae.*``, ``train_rig_sac.*``,
``rig_settings.*``). push1: ``--gin_file=gin/presets/cpu/rig_push1.gin``. Rerunning with the
same root_dir resumes. The last line printed is a JSON summary of both stages.
"""
import json
import os

from absl import app
from absl import flags
from absl import logging
import gin

from launch import common

flags.DEFINE_string("root_dir", None, "Run directory (config.json, vae/, sac/).")
flags.DEFINE_multi_string("gin_file", [], "Gin files, applied in order.")
flags.DEFINE_multi_string("gin_param", [], "Gin bindings, applied after the files.")
flags.mark_flag_as_required("root_dir")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    os.environ.setdefault("MUJOCO_GL", "egl")
    from mbold_tf.training import rig  # pylint: disable=g-import-not-at-top
    gin.parse_config_files_and_bindings(FLAGS.gin_file, FLAGS.gin_param)
    root_dir = os.path.expanduser(FLAGS.root_dir)
    common.write_run_record(root_dir, operative=False)  # a killed run keeps its settings
    with common.user_errors("launch.train_rig"):
        vae = rig.train_rig_vae(root_dir)
        sac = rig.train_rig_sac(root_dir)
    common.write_run_record(root_dir, operative=True)
    logging.info("done")
    print(json.dumps({"vae": vae, "sac": sac}, sort_keys=True))


if __name__ == "__main__":
    app.run(main)
