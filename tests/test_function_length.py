"""No function in mbold_tf is longer than MAX_LINES: a longer one does several things (split it by
mode or stage, as train_distance's agent and baseline builders)."""
import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "mbold_tf"
MAX_LINES = 100


def test_no_function_is_longer_than_max_lines():
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_LINES:
                    long.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name} "
                                f"({lines} lines)")
    assert long == [], f"split these (at most {MAX_LINES} lines each): {long}"
