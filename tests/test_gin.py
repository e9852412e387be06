"""Every shipped gin file parses against the registered configurables."""
import glob
import os

import gin
import pytest

import importlib
import pathlib
import pkgutil

import mbold_tf

ROOT = os.path.join(os.path.dirname(__file__), "..", "gin")
GIN_FILES = sorted(glob.glob(os.path.join(ROOT, "**", "*.gin"), recursive=True))


def _import_all():
    """Registers the configurables the way launchers do: through mbold_tf.configurables."""
    from mbold_tf import configurables  # noqa: F401  pylint: disable=unused-import


def test_every_configurable_is_registered_by_the_one_module():
    """A module defining a gin configurable that mbold_tf.configurables does not import would
    leave its bindings unparseable in the launchers."""
    from mbold_tf import configurables

    defining = []
    for info in pkgutil.walk_packages(mbold_tf.__path__, "mbold_tf."):
        module = importlib.import_module(info.name)
        path = getattr(module, "__file__", "") or ""
        if path.endswith(".py") and "@gin.configurable" in open(path).read():
            defining.append(info.name)
    assert sorted(defining) == sorted(configurables.MODULES)


@pytest.mark.parametrize("path", GIN_FILES, ids=[os.path.relpath(p, ROOT) for p in GIN_FILES])
def test_gin_file_parses(path):
    _import_all()
    gin.clear_config()
    gin.parse_config_file(path)
    gin.clear_config()


@pytest.mark.parametrize("binding", [
    "distance_dataset.batch_size = 32", "distance_dataset.reward_scheme = 'ten_one'",
    "distance_dataset.negatives_key = 'goal'", "predictor_dataset.horizon = 10",
    "make_cost.name = 'pixel_l2'"])
def test_a_setting_owned_elsewhere_cannot_be_bound_in_gin(binding):
    """Each of these values is passed by its owner (train_distance, the model, the method), so
    a gin binding would be ignored: it must fail at parse time instead."""
    _import_all()
    gin.clear_config()
    try:
        with pytest.raises(ValueError, match="denylisted kwarg"):
            gin.parse_config(binding)
    finally:
        gin.clear_config()


def test_unknown_reward_scheme_fails_naming_the_choices(tmp_path):
    from mbold_tf.training import distance

    gin.clear_config()
    with pytest.raises(ValueError, match="Unknown reward scheme 'binary'; choose one of"):
        distance.train_distance(str(tmp_path / "run"), reward_scheme="binary")


# Explicit arguments to gin configurables that a binding would still silently lose: each names
# the file that has to denylist it. Remove an entry once its configurable denylists it.
NOT_YET_DENYLISTED = set()


def _explicit_arguments_to_configurables():
    """{(configurable, parameter): 'file:line'} for every argument that code in mbold_tf passes
    explicitly to a gin configurable (positionally or by keyword)."""
    import ast
    import inspect
    from mbold_tf import configurables

    objects = {}
    for name in configurables.MODULES:
        module = importlib.import_module(name)
        tree = ast.parse(open(module.__file__).read())
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and any(
                    ast.unparse(d).startswith("gin.configurable") for d in node.decorator_list):
                objects[node.name] = getattr(module, node.name)
    params = {n: [p for p in inspect.signature(o).parameters if p != "self"]
              for n, o in objects.items()}
    found = {}
    for path in sorted(pathlib.Path(mbold_tf.__path__[0]).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", None)
            if name not in objects:
                continue
            passed = params[name][:len(node.args)] + [k.arg for k in node.keywords if k.arg]
            for p in passed:
                found.setdefault((name, p), f"{path.name}:{node.lineno}")
    return found


def test_no_explicit_argument_shadows_a_gin_binding():
    """An explicit argument beats a gin binding without a word, so every parameter the package
    passes explicitly must be denylisted: binding it fails at parse time."""
    _import_all()
    silently_ignored = {}
    for (name, param), where in sorted(_explicit_arguments_to_configurables().items()):
        gin.clear_config()
        try:
            gin.parse_config(f"{name}.{param} = None")
        except ValueError as e:
            if "denylisted" in str(e):
                continue
            raise
        finally:
            gin.clear_config()
        silently_ignored[(name, param)] = where
    assert set(silently_ignored) == NOT_YET_DENYLISTED, silently_ignored


@pytest.mark.parametrize("param", ["cql", "cql_tau", "gamma", "td_target_bounds"])
def test_the_agent_settings_train_distance_owns_cannot_be_bound_on_the_agent(param):
    """train_distance passes these to CqlTd3Agent from the run's record; bound on the class they
    fail at parse time, naming it (bind train_distance.cql_tau / .gamma / .reward_scheme)."""
    _import_all()
    gin.clear_config()
    try:
        with pytest.raises(ValueError, match=f"'CqlTd3Agent' has denylisted kwarg '{param}'"):
            gin.parse_config(f"CqlTd3Agent.{param} = 10.0")
    finally:
        gin.clear_config()


def test_sorb_networks_are_configured_apart_from_the_distance_networks():
    """sorb_settings owns SoRB's network sizes: a network_settings binding changes the MBOLD
    distance's networks only, and sorb_settings' own binding takes effect."""
    from mbold_tf.models import distance_networks as dn
    from mbold_tf.models import sorb

    gin.clear_config()
    try:
        gin.parse_config(["network_settings.fc_units = 7", "sorb_settings.fc_units = 9"])
        assert dn.network_settings()["fc_units"] == 7
        assert sorb.sorb_settings()["networks"]["fc_units"] == 9
    finally:
        gin.clear_config()
