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
from absl import app

from launch import common
from mbold_tf.training import rig

common.define_training_flags('Run directory (config.json, vae/, sac/).')


def main(argv):
    del argv

    def train(root_dir):
        return {"vae": rig.train_rig_vae(root_dir), "sac": rig.train_rig_sac(root_dir)}

    common.run_training("launch.train_rig", train, distributed=False)


if __name__ == "__main__":
    app.run(main)
