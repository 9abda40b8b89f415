"""Every fenced ``bash`` and ``python`` block of README.md, run as written, at small sizes.

* Python blocks run in one interpreter, after a prelude that defines the names a reader brings
  (``model``, ``x``, ``inf_net``, ...): a small model from ``ovis.testing``, the example objects.
* Bash blocks run in a scratch checkout (links to the project's files, its own ``runs/`` and
  ``reports/``, the data at ``../shared/data``), each command as a subprocess. Long commands are
  shrunk: ``SHRINK`` sets small values of their size options; the experiment specs they queue are
  cut to their first two lines and first parameter values with tiny runs (``shrunk_spec``); a Slurm
  submission is a dry run. The quickstart and test-suite scripts are checked for existence and
  syntax only (running the suite from within the suite would recurse).
* Every block must be matched by these rules: a new block fails the first test until it is.
"""
import json
import os
import re
import shlex
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
SCRIPTS_ONLY = ("scripts/quickstart.sh", "scripts/test.sh")
# script -> option -> small value (set, or added when absent)
SHRINK = {
    "run.py": {"--epochs": "1", "--max_eval": "20", "--iw_test": "5", "--iw_valid": "5", "--grad_samples": "2",
               "--mini": None},
    "asymptotic_variance.py": {"--iw_min": "3", "--iw_max": "6", "--iw_steps": "2", "--mc_samples": "8",
                               "--npoints": "8", "--samples_per_batch": "1000"},
    "measure_efficiency.py": {"--models": "sbm", "--estimators": "reinforce,ovis-gamma1", "--iw": "5", "--steps": "2",
                              "--untimed_steps": "1"},
    "benchmarks/floor.py": {"--models": "sbm", "--iw": "5", "--steps": "2", "--untimed_steps": "1"},
}
# global options of a shrunk spec (they override its parameters; its args lines keep theirs): one
# epoch of the --mini subset (the shortest run), K = 5, small evaluations, no active-unit analysis
TINY_RUN = ("--nsteps 10 --epochs -1 --bs 250 --iw 5 --eval_freq 1 --max_eval 20 --iw_test 5 --iw_valid 5 "
            "--test_bs 10 --valid_bs 10 --grad_samples 2 --grad_bs 5 --mc_au_analysis 0 --mini")


def readme_blocks():
    """``(line, language, code)`` of every fenced bash/python block (indentation removed)."""
    blocks, lines = [], open(README).read().splitlines()
    i = 0
    while i < len(lines):
        opening = re.match(r"^(\s*)```(bash|python)\s*$", lines[i])
        if opening:
            indent, start = len(opening.group(1)), i + 1
            i += 1
            while not lines[i].strip().startswith("```"):
                i += 1
            blocks.append((start, opening.group(2), "\n".join(line[indent:] for line in lines[start:i])))
        i += 1
    return blocks


def commands(code):
    """``(environment, argv)`` per command: continuations joined, comments dropped."""
    result = []
    for line in code.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        env = {}
        while words and re.match(r"^[A-Z_]+=", words[0]):
            name, _, value = words.pop(0).partition("=")
            env[name] = value
        if words:
            result.append((env, words))
    return result


def shrink(argv):
    script = argv[1] if argv[0] == "python" else argv[0]
    argv = list(argv)
    for option, value in SHRINK.get(script, {}).items():
        if option in argv:
            if value is not None:
                argv[argv.index(option) + 1] = value
        else:
            argv += [option] + ([value] if value is not None else [])
    if script == "manager.py" and "slurm" in argv:
        argv.append("--dry_run")  # no Slurm here: print the array job's grid
    return argv


def shrunk_spec(path):
    """The spec cut to its first two args lines and first parameter values, with tiny runs."""
    with open(path) as f:
        spec = json.load(f)
    spec["args"] = spec["args"][:2]
    spec["parameters"] = {name: values[:1] for name, values in spec["parameters"].items()}
    spec["global"] = f"{spec.get('global', '')} {TINY_RUN}"
    return spec


@pytest.fixture(scope="module")
def checkout(tmp_path_factory):
    """``<tmp>/checkout``: the project's files linked, shrunk specs, ``../shared/data`` linked."""
    base = tmp_path_factory.mktemp("readme")
    folder = base / "checkout"
    folder.mkdir()
    for name in os.listdir(ROOT):
        if name not in ("experiments", "runs", "reports", "data", ".git") and not name.startswith("."):
            os.symlink(os.path.join(ROOT, name), folder / name)
    (folder / "experiments").mkdir()
    for name in os.listdir(os.path.join(ROOT, "experiments")):
        spec = shrunk_spec(os.path.join(ROOT, "experiments", name))
        (folder / "experiments" / name).write_text(json.dumps(spec))
    data = os.environ.get("OVIS_DATA") or os.path.join(os.path.dirname(ROOT), "shared", "data")
    if not os.path.isfile(os.path.join(data, "binarized_mnist.npz")):
        pytest.skip(f"binarized_mnist.npz not in {data}: the README's commands need the shared data")
    (base / "shared").mkdir()
    os.symlink(os.path.abspath(data), base / "shared" / "data")
    return folder


def test_every_block_is_covered():
    blocks = readme_blocks()
    assert len(blocks) >= 12
    for line, language, code in blocks:
        if language == "python":
            continue
        for _, argv in commands(code):
            assert argv[0] in ("python", "bash"), f"README line {line}: {argv}"
            script = argv[1]
            assert os.path.isfile(os.path.join(ROOT, script)), f"README line {line}: {script} does not exist"


def test_quickstart_and_test_scripts_exist_and_parse():
    for script in SCRIPTS_ONLY:
        assert any(script in code for _, _, code in readme_blocks())
        assert subprocess.run(["bash", "-n", os.path.join(ROOT, script)]).returncode == 0


def test_python_blocks_run_as_written():
    """The own-project and evaluation blocks, in order, in one namespace."""
    import ovis
    from ovis.estimators.registry import registered_families, unregister_estimator
    from ovis.models.dynamic import GeometricGenerative, GeometricInference
    from ovis.testing.models import EnumerableModel
    before = {family.name for family in registered_families()}
    try:
        _run_python_blocks(ovis, GeometricGenerative, GeometricInference, EnumerableModel)
    finally:  # the plugin block registers an estimator: later tests see the built-in registry
        for family in registered_families():
            if family.name not in before:
                unregister_estimator(family.name)


def _run_python_blocks(ovis, GeometricGenerative, GeometricInference, EnumerableModel):
    torch.manual_seed(0)
    model = EnumerableModel()  # binary x of model.x_dim pixels, Bernoulli latents
    data = torch.bernoulli(torch.full((4, model.x_dim), 0.5))
    namespace = {"ovis": ovis, "model": model, "x": data}
    for line, language, code in readme_blocks():
        if language != "python":
            continue
        if "inf_net" in code:  # the black-box objects and their data
            namespace.update(inf_net=GeometricInference(slope=0.3), gen_model=GeometricGenerative(),
                             x=torch.tensor([8.0, 9.0, 10.0]))
        if "loss_from_log_probs" in code:  # per-particle log-densities of the shape it asks for
            bs, mc, n = namespace["estimator"].particle_shape(3)
            namespace.update(x=torch.zeros(bs, 1), log_p=torch.randn(bs, mc, n, requires_grad=True),
                             log_q=torch.randn(bs, mc, n, requires_grad=True))
        if "ovis.evaluate" in code:
            namespace["x"] = data
        exec(compile(code, f"README.md:{line}", "exec"), namespace)
    assert namespace["bound"].shape == (4,) and torch.isfinite(namespace["bound"]).all()


@pytest.mark.slow
@pytest.mark.parametrize("line", [line for line, language, code in readme_blocks()
                                  if language == "bash" and not any(s in code for s in SCRIPTS_ONLY)])
def test_bash_block_runs(checkout, line):
    code = next(code for start, _, code in readme_blocks() if start == line)
    for env, argv in commands(code):
        argv = [sys.executable if word == "python" else word for word in shrink(["python"] + argv[1:])]
        environment = {**os.environ, "PYTHONPATH": str(checkout), "OVIS_NO_DOWNLOAD": "1",
                       "OVIS_DATA": str(checkout.parent / "shared" / "data"), **env}  # the block's own settings last
        result = subprocess.run(argv, cwd=checkout, env=environment, capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, f"README line {line}: {shlex.join(argv)}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"


def test_commands_that_spec_descriptions_send_to_the_readme_are_there():
    """A spec whose description names a command "(see README)" / "(in README)": the README holds it."""
    readme = " ".join(open(README).read().replace("\\\n", " ").split())
    experiments = os.path.join(ROOT, "experiments")
    checked = 0
    for name in sorted(os.listdir(experiments)):
        with open(os.path.join(experiments, name)) as f:
            description = json.load(f)["description"]
        if "README" not in description:
            continue
        for command in re.findall(r"python \S+\.py[^;()]*?(?=,\.\.\.| \(|\.$|;)", description):
            assert " ".join(command.split()) in readme, f"{name}: {command!r} is not in README.md"
            checked += 1
    assert checked >= 2
