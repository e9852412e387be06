"""The subpackages of mbold_tf form one-way layers: a module imports only from layers below it.

    utils → envs → data → models → agents → {training, planning} → {eval, export}

(``a → b``: b may import a.) Training and planning are siblings, as are eval and export: neither
imports the other. Planning loads trained models through :mod:`mbold_tf.agents.checkpoints`,
never through the trainers, so evaluation and export run without the training code.
"""
import ast
import pathlib
import subprocess
import sys

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "mbold_tf"
LAYER = {"utils": 0, "envs": 1, "data": 2, "models": 3, "agents": 4, "training": 5,
         "planning": 5, "eval": 6, "export": 6,
         "configurables": 7}  # mbold_tf/configurables.py registers every layer's gin settings


def _layer_of(module: str) -> str:
    """'mbold_tf.data.rlds' -> 'data'; 'mbold_tf.configurables' -> 'configurables'."""
    return module.split(".")[1]


def _imports(path: pathlib.Path):
    """(line, imported mbold_tf module) of every import in ``path``, nested ones included."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = ([f"mbold_tf.{a.name}" for a in node.names] if node.module == "mbold_tf"
                     else [node.module])
        else:
            continue
        for name in names:
            if name.startswith("mbold_tf.") and name.split(".")[1] in LAYER:
                yield node.lineno, name


def upward_imports(package: pathlib.Path = PACKAGE):
    """Every import of a module from the same or a higher layer, as readable strings."""
    bad = []
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package).parts
        if len(parts) == 1 and parts[0] != "configurables.py":
            continue  # mbold_tf/__init__.py
        src = parts[0] if len(parts) > 1 else parts[0][:-3]
        for line, name in _imports(path):
            dst = _layer_of(name)
            if dst != src and LAYER[dst] >= LAYER[src]:
                bad.append(f"{path.relative_to(package.parent)}:{line} imports {name} "
                           f"({src!r}, layer {LAYER[src]}, may import only layers below it; "
                           f"{dst!r} is layer {LAYER[dst]})")
    return bad


def test_every_subpackage_has_a_layer():
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert packages <= set(LAYER), f"give {sorted(packages - set(LAYER))} a layer in LAYER"


def test_no_import_goes_up_or_sideways():
    assert upward_imports() == []


def test_the_walk_sees_an_upward_import(tmp_path):
    """The checker itself: a data module importing training, even inside a function, fails."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "__init__.py").write_text("")
    (tmp_path / "data" / "bad.py").write_text(
        "def f():\n    from mbold_tf.training import distance\n    return distance\n")
    bad = upward_imports(tmp_path)
    assert len(bad) == 1 and "imports mbold_tf.training (" in bad[0]


@pytest.mark.parametrize("modules", [
    "launch.evaluate", "launch.export", "mbold_tf.eval.beam_eval, mbold_tf.eval.episode_runner"])
def test_evaluation_and_export_load_no_training_code(modules):
    """Their gin registration (mbold_tf.planning.configurables) and loaders come from below."""
    code = (f"import sys; import {modules}; "
            "print(sorted(m for m in sys.modules if m.startswith('mbold_tf.training')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=PACKAGE.parent, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
