"""The estimator registry: every estimator class is registered, every family's declaration is
true (capabilities, model evaluations), registration and entry-point plugins behave, and
everything derived from it follows a new family."""
import importlib
import inspect
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import ovis
import ovis.estimators
from ovis.estimators import registry
from ovis.estimators.base import GradientEstimator
from ovis.estimators.builtin import builtin_families
from ovis.estimators.config import EXAMPLE_IDS, VALID_FORMS, describe_estimator_id, parse_estimator_id
from ovis.estimators.registry import EstimatorFamily, Style, register_estimator
from ovis.estimators.score_function import Reinforce
from ovis.testing import LinearGaussianModel

from .helpers import enumerable_model_for


def unregistered_estimator_classes():
    """Concrete ``GradientEstimator`` subclasses of the package that no registered family builds."""
    for module in pkgutil.iter_modules(ovis.estimators.__path__):
        if module.name != "pyro":  # the optional adapter needs Pyro; it defines no estimator
            importlib.import_module(f"ovis.estimators.{module.name}")
    classes, stack = [], [GradientEstimator]
    while stack:
        cls = stack.pop()
        stack += cls.__subclasses__()
        if cls.__module__.startswith("ovis.") and not inspect.isabstract(cls):
            classes.append(cls)
    registered = set(registry.estimator_classes())
    return [cls for cls in classes if cls not in registered]


def test_every_estimator_class_is_registered():
    assert unregistered_estimator_classes() == []


def test_an_unregistered_estimator_class_is_found():
    stray = type("StrayEstimator", (Reinforce,), {"__module__": "ovis.estimators.stray"})
    try:
        assert unregistered_estimator_classes() == [stray]
    finally:
        del stray
        import gc
        gc.collect()  # __subclasses__ holds weak references


def test_example_ids_valid_forms_and_labels_come_from_the_families():
    families = registry.registered_families()
    assert EXAMPLE_IDS == tuple(e for f in families for e in f.examples)
    assert VALID_FORMS == tuple(f.grammar for f in families)
    assert len({f.name for f in families}) == len(families)
    for family in families:
        for estimator_id in family.examples:
            assert registry.family_of(estimator_id) is family
            assert family.style_of(describe_estimator_id(estimator_id)) is not None, estimator_id


def counted_generative_passes(model):
    """Rows of ``model`` evaluated (forward passes, prior samples), counted by a hook."""
    counts = [0]
    model.register_forward_pre_hook(lambda m, args, kwargs: counts.__setitem__(
        0, counts[0] + args[0].shape[0] * kwargs.get("particles", 1)), with_kwargs=True)
    sample_from_prior = model.sample_from_prior
    model.sample_from_prior = lambda n, **kw: (counts.__setitem__(0, counts[0] + n), sample_from_prior(n, **kw))[1]
    return counts


@pytest.mark.parametrize("estimator_id", EXAMPLE_IDS)
def test_model_evaluations_and_owned_parameters_are_true(estimator_id):
    Estimator, config = parse_estimator_id(estimator_id)
    model = LinearGaussianModel(dim=2) if Estimator.reparam else enumerable_model_for(Estimator)
    x = torch.ones(4, *((2,) if Estimator.reparam else (3,)))
    estimator = Estimator(mc=max(2, Estimator.min_mc), iw=3, x_shape=tuple(x.shape[1:]), **config)
    estimator.check_model(model)  # its probe pass, if any, is not part of a step
    assert estimator.owns_parameters == any(p.requires_grad for p in estimator.parameters()), estimator_id
    counts = counted_generative_passes(model)
    estimator(model, x)[0].mean().backward()
    assert counts[0] == x.shape[0] * estimator.model_evaluations(), estimator_id


def test_a_model_whose_latent_type_the_estimator_refuses_is_refused_before_any_work():
    model = LinearGaussianModel(dim=2)
    counts = counted_generative_passes(model)
    with pytest.raises(ValueError, match="accepts bernoulli latents, but LinearGaussianModel has gaussian latents: "
                                         "use a model with bernoulli latents, or an estimator that accepts "
                                         "gaussian latents, such as pathwise"):
        parse_estimator_id("disarm")[0](iw=2, x_shape=(2,))(model, torch.ones(3, 2))
    assert counts[0] == 0


def test_min_mc_and_min_iw_are_checked_with_the_fix():
    with pytest.raises(ValueError, match="ReinforceLeaveOneOut needs mc >= 2, got mc=1; use mc=2 or more"):
        parse_estimator_id("reinforce-loo")[0](mc=1, iw=3)
    with pytest.raises(ValueError, match="OvisAsymptotic needs iw >= 2, got iw=1"):
        parse_estimator_id("ovis-gamma1")[0](iw=1, gamma=1.0)


class OwnScoreFunction(Reinforce):
    """A plugin's estimator: Reinforce with a constant baseline."""
    unbiased_for = "∇ L_K"

    def control_variate(self, x, log_weights, bound, weights, aux_log_weights, options):
        return bound.detach().new_full((), 1.0)


def own_family(name="own", ids=("own-sf",)):
    return EstimatorFamily(name=name, grammar=" | ".join(ids), ids={i: (OwnScoreFunction, {}) for i in ids},
                           examples=ids, label="own SF", style=Style("#8c564b", (8, 5), marker="*"))


@pytest.fixture
def clean_registry(monkeypatch):
    """A registry loaded afresh (built-ins, then the faked entry points) and restored after the test."""
    for name, value in (("_FAMILIES", {}), ("_EXACT", {}), ("_PREFIXES", {}), ("_loaded", False)):
        monkeypatch.setattr(registry, name, value)
    entry_points = []
    monkeypatch.setattr(registry.importlib.metadata, "entry_points", lambda group: [
        e for e in entry_points if group == registry.ENTRY_POINT_GROUP])
    return entry_points


class FakeEntryPoint:
    def __init__(self, name, loads):
        self.name, self.value, self.loads = name, f"{name}_package:family", loads

    def load(self):
        if isinstance(self.loads, Exception):
            raise self.loads
        return self.loads


def test_a_registered_family_works_where_built_in_ids_work(clean_registry):
    family = ovis.register_estimator(own_family())
    assert registry.registered_families()[-1] is family
    assert parse_estimator_id("own-sf") == (OwnScoreFunction, {})
    assert describe_estimator_id("own-sf").label == "own SF"
    import ovis.estimators.config as config
    assert "own-sf" in config.EXAMPLE_IDS and "own-sf" in config.VALID_FORMS
    from ovis.reporting.style import estimator_style
    estimator_style.cache_clear()
    assert estimator_style("own-sf").marker == "*" and estimator_style("own-sf").rank[:2] == (8, 5)
    estimator_style.cache_clear()
    with pytest.raises(ValueError, match="did you mean 'own-sf'"):
        parse_estimator_id("own_sf ")


def test_conflicting_registrations_are_refused_unless_replaced(clean_registry):
    register_estimator(own_family())
    with pytest.raises(ValueError, match="estimator family 'own': the name 'own' is already registered; "
                                         "choose another name/ids, or pass replace=True"):
        register_estimator(own_family())
    with pytest.raises(ValueError, match=r"id 'reinforce' \(reinforce\) is already registered"):
        register_estimator(own_family("mine", ("reinforce",)))
    register_estimator(own_family("own", ("own-sf", "own-sf2")), replace=True)
    assert parse_estimator_id("own-sf2")[0] is OwnScoreFunction
    registry.unregister_estimator("own")
    with pytest.raises(ValueError, match="unknown estimator id 'own-sf'"):
        parse_estimator_id("own-sf")
    with pytest.raises(ValueError, match="its example id 'own-sf3' does not parse as one of its ids"):
        register_estimator(EstimatorFamily(name="bad", grammar="own-sf3", examples=("own-sf3",),
                                           ids={"own-sf4": (OwnScoreFunction, {})}))
    assert "bad" not in {f.name for f in registry.registered_families()}
    with pytest.raises(ValueError, match="at least one example id"):
        EstimatorFamily(name="x", grammar="x", examples=(), ids={"x": (OwnScoreFunction, {})})


def test_entry_point_plugins_load_on_the_first_lookup(clean_registry):
    clean_registry.append(FakeEntryPoint("own", own_family))  # a callable returning a family
    assert parse_estimator_id("own-sf")[0] is OwnScoreFunction
    assert [f.name for f in registry.registered_families()][-1] == "own"


def test_a_broken_plugin_is_named_with_the_fix(clean_registry):
    clean_registry.append(FakeEntryPoint("broken", ImportError("No module named 'broken_package'")))
    with pytest.raises(ValueError, match="estimator plugin 'broken' \\(entry point 'broken_package:family', group "
                                         "'ovis.estimators'\\) failed to load: ImportError: No module named "
                                         "'broken_package'; fix or uninstall the package that declares it"):
        parse_estimator_id("reinforce")


# The generic matrices parametrised by estimator id: (test, its parameter).
GENERIC_MATRICES = {
    "tests/estimators/test_layout.py::test_shapes_for_every_estimator": "estimator_id",
    "tests/estimators/test_registry.py::test_model_evaluations_and_owned_parameters_are_true": "estimator_id",
    "tests/training/test_run_options.py::test_every_accepted_combination_trains_with_the_defaults": "estimator",
}
COLLECTING_PLUGIN = '''
import json
import os
from ovis.estimators.registry import EstimatorFamily, Style, register_estimator
from ovis.estimators.score_function import Reinforce

class PluginEstimator(Reinforce):
    pass

def pytest_configure(config):
    register_estimator(EstimatorFamily(name="plugin", grammar="plugin-sf", ids={"plugin-sf": (PluginEstimator, {})},
                                       examples=("plugin-sf",), style=Style("#000000")))

def pytest_collection_modifyitems(session, config, items):
    ids = {}
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        ids.setdefault(item.nodeid.split("[")[0], []).append({k: v for k, v in params.items() if isinstance(v, str)})
    with open(os.environ["COLLECTED_IDS"], "w") as f:
        json.dump(ids, f)
'''


def test_every_registered_example_id_runs_in_the_generic_matrices(tmp_path):
    """Collected with a plugin family registered first: each matrix runs every example id, the plugin's too."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path
    repo = Path(__file__).resolve().parents[2]
    (tmp_path / "plugin").mkdir()
    (tmp_path / "plugin" / "collect_plugin_ids.py").write_text(COLLECTING_PLUGIN)
    files = sorted({test.split("::")[0] for test in GENERIC_MATRICES})
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(repo), str(tmp_path / "plugin")]),
               COLLECTED_IDS=str(tmp_path / "collected.json"))
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "", "-p", "no:cacheprovider",
                           "-p", "collect_plugin_ids"] + files,
                          cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    collected = json.loads((tmp_path / "collected.json").read_text())
    expected = set(EXAMPLE_IDS) | {"plugin-sf"}
    for test, parameter in GENERIC_MATRICES.items():
        assert {params[parameter] for params in collected[test]} == expected, test


def test_the_readme_estimator_table_is_rendered_from_the_registry():
    """README.md holds exactly the table of the built-in families' rows; a new family changes the
    rendering (so the check fails until the README is rewritten), and a family without rows is refused."""
    root = Path(__file__).resolve().parents[2]
    check = subprocess.run([sys.executable, "scripts/estimator_table.py", "--check"], cwd=root,
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    readme = (root / "README.md").read_text(encoding="utf-8")
    families = builtin_families()
    assert "\n" + registry.estimator_table(families) + "\n\n" in readme
    added = EstimatorFamily(name="my-sf", grammar="my-sf", ids={"my-sf": (Reinforce, {})}, examples=("my-sf",),
                            table=(("`my-sf`", "my score function", "∇ L_K"),))
    assert registry.estimator_table(families + (added,)) not in readme
    with pytest.raises(ValueError, match="estimator family 'bare' has no table rows: give it table="):
        registry.estimator_table(families + (EstimatorFamily(name="bare", grammar="bare", examples=("bare",),
                                                             ids={"bare": (Reinforce, {})}),))
