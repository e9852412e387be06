"""Render the results tables from per-episode results files (``launch.evaluate``'s results.json).

    python -m launch.report results/reach_upper_bound.json results/push1_upper_bound.json
    python -m launch.report results/*.json --readme=README.md       # the README's results table
    python -m launch.report results/*.json --out=docs/results.md --readme=README.md \
        --paper=results/paper/mbold_iclr2021.json                     # the project's results page

Each file becomes a section: its header (command, planner preset, models' training steps,
goals × seeds, date, machine), success rates with Wilson 95% intervals, paired comparisons on the
same goals and seeds, and, where the planners also ran with the simulator (PRIVILEGED), which part
of each cost's gap is the predictor's and which the cost's. With ``--paper`` (a file of the
paper's reported numbers) the results page opens with the paper against ours. The output depends
only on the files.
"""
import glob
import os
import sys

from absl import app
from absl import flags

from mbold_tf.eval import report
from mbold_tf.eval import results
from mbold_tf.eval import results_page

flags.DEFINE_string("out", None, "Write the Markdown here (default: print it).")
flags.DEFINE_string("readme", None, "Rewrite this README's generated results block (between "
                    "its results markers) with the headline table of the files.")
flags.DEFINE_string("paper", None, "With --out: a file of the paper's reported success rates "
                    "(results/paper/mbold_iclr2021.json) to put beside ours.")
FLAGS = flags.FLAGS

def main(argv):
    paths = []
    for arg in argv[1:]:
        matched = sorted(glob.glob(arg))
        paths += matched or [arg]
    if not paths:
        sys.exit("Give one or more results files: python -m launch.report results/*.json")
    try:
        if FLAGS.readme:
            with open(FLAGS.readme) as f:
                text = report.readme_with_headline(
                    f.read(), [(p, results.load_results(p)) for p in sorted(paths)])
            with open(FLAGS.readme, "w") as f:
                f.write(text)
            print(f"Rewrote the results block of {FLAGS.readme} from {len(paths)} file(s).")
        if FLAGS.out:
            anchors = []
            if FLAGS.readme:
                with open(FLAGS.readme) as f:
                    anchors = report.readme_anchors(f.read())
            text = results_page.results_page(paths, FLAGS.out, anchors, FLAGS.paper,
                                             FLAGS.readme)
            os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
            with open(FLAGS.out, "w") as f:
                f.write(text)
            print(f"Wrote {FLAGS.out} from {len(paths)} results file(s).")
        elif not FLAGS.readme:
            print(report.render([(p, results.load_results(p)) for p in paths]), end="")
    except (results.ResultsFormatError, FileNotFoundError, ValueError) as e:
        sys.exit(f"launch.report: {e}")


if __name__ == "__main__":
    app.run(main)
