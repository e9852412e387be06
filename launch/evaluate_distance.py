"""Compare distance functions offline: ``python -m launch.evaluate_distance``.

  python -m launch.evaluate_distance \
      --root_dir=/work/runs/distance_cql_td3_push1_cpu \
      --root_dir=/work/runs/distance_temporal_push1_cpu --pixel --oracle --heatmap_dir=docs

For each run directory (and the pixel-ℓ2 baseline with --pixel) on the held-out split: Spearman
ρ of the predicted distance with the true step offset of reached goals, and the AUC of reached
goals against arm-joint hard negatives, and (for datasets with privileged state) ρ against the
geometric displacement; --oracle scores that displacement itself. Writes Fig. 6-style heatmaps
``<heatmap_dir>/heatmap_<name>.png``. Prints a table and, last, one JSON line.

With ``--block_scenes_goals=G`` (push datasets), each distance also scores four renders of each of
G test goals' start scenes (:mod:`mbold_tf.eval.block_scenes`: the moved block at its goal, at its
start, past its goal, off the table) and reports how often a block swept off the table scores
closer to the goal than a block left alone (``block_scenes`` in the JSON line)::

  python -m launch.evaluate_distance --root_dir=/work/runs/distance_push1 --heatmap_dir= \
      --block_scenes_goals=20
"""
import json
import os

from absl import app
from absl import flags
from absl import logging
import numpy as np

from mbold_tf.utils import run_config

flags.DEFINE_multi_string("root_dir", [], "Trained distance run directories (one --root_dir "
                          "may join several runs with commas: their mean Q, an ensemble).")
flags.DEFINE_multi_string("name", [], "Display names, one per --root_dir (default: dir name).")
flags.DEFINE_bool("pixel", False, "Also evaluate the pixel-l2 distance.")
flags.DEFINE_bool("oracle", False, "Also score the privileged displacement (end effector + "
                  "objects) as a distance: the ceiling random-walk offsets leave for Spearman.")
flags.DEFINE_string("dataset", "mbold_tabletop/push1_cpu", "TFDS dataset name or directory.")
flags.DEFINE_string("data_dir", None, "TFDS data dir.")
flags.DEFINE_string("split", "validation", "Held-out split.")
flags.DEFINE_integer("num_pairs", 2000, "Pairs per measure.")
flags.DEFINE_string("heatmap_dir", "docs", "Where heatmap PNGs go ('' to skip heatmaps).")
flags.DEFINE_integer("heatmap_resolution", 21, "Grid points per axis.")
flags.DEFINE_integer("seed", 0, "Pair sampling seed.")
flags.DEFINE_integer("block_scenes_goals", 0, "Push tasks: score block scenes built from this "
                     "many generated test goals (0: skip).")
flags.DEFINE_string("block_scenes_task", "push1", "The push task of the block scenes.")
flags.DEFINE_integer("goal_seed", 0, "Seed of the generated goal set for --block_scenes_goals "
                     "(launch.evaluate's default, so the goals are the evaluated ones).")
FLAGS = flags.FLAGS


def _name(root_dir: str) -> str:
    runs = run_config.split_runs(root_dir)
    if len(runs) > 1:  # an ensemble
        return "+".join(_name(r) for r in runs)
    base = os.path.basename(os.path.normpath(root_dir))
    base = base[len("distance_"):] if base.startswith("distance_") else base
    for suffix in ("_push1_cpu", "_push1"):
        if base.endswith(suffix):
            base = base[:-len(suffix)]
    return base


def main(argv):
    del argv
    os.environ.setdefault("MUJOCO_GL", "egl")
    # pylint: disable=g-import-not-at-top
    from mbold_tf.agents import checkpoints
    from mbold_tf.data import neighbors, rlds
    from mbold_tf.eval import distance_quality as dq
    from mbold_tf.models import baselines
    if not FLAGS.root_dir and not FLAGS.pixel and not FLAGS.oracle:
        raise app.UsageError("Give at least one --root_dir, --pixel or --oracle.")
    if FLAGS.name and len(FLAGS.name) != len(FLAGS.root_dir):
        raise app.UsageError("--name must be given once per --root_dir.")
    names = FLAGS.name or [_name(r) for r in FLAGS.root_dir]
    models = [(n, lambda r=r: checkpoints.load_distance(r))
              for n, r in zip(names, FLAGS.root_dir)]
    if FLAGS.pixel:
        models.append(("pixel_l2", baselines.PixelDistance))
    arrays = rlds.load_episodes(FLAGS.dataset, FLAGS.split, data_dir=FLAGS.data_dir)
    if FLAGS.oracle:
        models.append(("oracle_geometric", lambda: dq.GeometricOracle(arrays)))
    table = neighbors.neighbor_table(arrays)
    grid = None
    if FLAGS.heatmap_dir:
        os.makedirs(FLAGS.heatmap_dir, exist_ok=True)
        xs = np.linspace(-0.2, 0.2, FLAGS.heatmap_resolution)
        grid = dq.block_grid_images(xs, xs, (0.1, -0.05))
    scenes = None
    if FLAGS.block_scenes_goals:
        from mbold_tf.envs import goals  # pylint: disable=g-import-not-at-top
        from mbold_tf.eval import block_scenes  # pylint: disable=g-import-not-at-top
        scenes = block_scenes.scene_images(goals.generate_goal_set(
            FLAGS.block_scenes_task, num_goals=FLAGS.block_scenes_goals, seed=FLAGS.goal_seed))
    rows = []
    for name, make in models:
        obj = make()
        row = {"method": name, **dq.evaluate_distance(obj, arrays, table,
                                                      num_pairs=FLAGS.num_pairs,
                                                      seed=FLAGS.seed)}
        if hasattr(obj, "q_values") and hasattr(obj, "action"):  # a TD3 actor + critics
            health = dq.actor_health(obj, arrays)
            row.update(health)
            if health["q_actor"] < health["q_data"]:
                logging.warning("%s: Q at the actor's action (%.3f) is below Q at the data actions "
                                "(%.3f), %.0f%% of actor outputs saturated: the actor is not a "
                                "maximiser and the distance reads extrapolated Q.", name,
                                health["q_actor"], health["q_data"],
                                100 * health["actor_saturated"])
        if grid is not None and hasattr(obj, "distance"):  # image distances only
            path = os.path.join(FLAGS.heatmap_dir, f"heatmap_{name}.png")
            hm = dq.distance_heatmap(obj, path, resolution=FLAGS.heatmap_resolution, grid=grid)
            row.update(heatmap=path, heatmap_argmin_xy=hm["argmin_xy"],
                       heatmap_argmin_error_m=round(hm["argmin_error_m"], 3))
        if scenes is not None and hasattr(obj, "distance"):
            row["block_scenes"] = block_scenes.scene_distances(obj, scenes)
            print(f"{name}: block scenes, mean distance "
                  f"{row['block_scenes']['mean']}; closer than start: "
                  f"{row['block_scenes']['closer']}", flush=True)
        rows.append(row)
        print(f"{name}: spearman {row['spearman']:.3f}  auc {row['auc']:.3f}", flush=True)
    print(dq.format_table(rows))
    compact = [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()
                if k != "mean_distance_by_offset"} for r in rows]
    for r in compact:  # the per-goal lists stay in the row's scene means and shares
        if "block_scenes" in r:
            r["block_scenes"] = {k: v for k, v in r["block_scenes"].items() if k != "per_goal"}
    print(json.dumps({"split": FLAGS.split, "dataset": FLAGS.dataset, "rows": compact},
                     sort_keys=True))


if __name__ == "__main__":
    app.run(main)
