"""Experiment specifications (``experiments/NAME.json``) and their grid of runs.

A spec is a JSON object::

    {
      "description": "what the experiment shows",
      "script": "run.py",                        # optional, default run.py
      "args": ["--estimator ovis-gamma1", ...],  # one base configuration a line
      "global": "--silent --nsteps 1000",        # appended to every line
      "parameters": {"iw": [50, 10], "seed": [1, 2, 3]},
      "skip_missing_data": false                 # optional: drop runs whose data set is missing
    }

The grid is every ``args`` line times the Cartesian product of ``parameters``. A grid point's
argument list is ``parameters``, then ``global``, then the ``args`` line, so that argparse (which
keeps the last occurrence of an option) gives the precedence args > global > parameters of the
original code. Grid order follows the original too: the ``args`` line varies fastest,
the last parameter slowest.

Every grid point gets a stable id, ``<readable prefix>-<hash>``, where the hash is taken over the
*canonical* arguments (each option's final value, sorted by name, as JSON), so reordering options
in the spec or moving one between ``global`` and ``parameters`` keeps the ids.
The hash is ``ovis.identity.run_hash``, the one run identity of ovis (options that change how a
run executes but not what it computes are left out; numbers compare as numbers; ``nsteps`` and
``epochs`` are part of it).
"""
import itertools
import json
import os
import re
import shlex
from dataclasses import dataclass, field
from typing import Dict, List, Sequence, Tuple, Union

from ovis.cli import did_you_mean
from ovis.identity import canonical_options, run_hash

SPEC_KEYS = ("description", "script", "args", "global", "parameters", "skip_missing_data")
DEFAULT_SCRIPT = "run.py"

# Options the manager sets itself for every run (DESIGN.md section 5); a spec may not set them,
# since the manager's values would silently override them.
MANAGED_OPTIONS = ("exp", "root", "data_root", "run_id", "resume", "rf")
# Options shown, in this order, in the readable prefix of a run id.
PREFIX_OPTIONS = ("id", "dataset", "model", "estimator", "iw", "seed")
HASH_LENGTH = 12

Scalar = Union[str, int, float, bool]


class SpecError(ValueError):
    """An experiment specification that cannot be expanded; the message names the problem."""


@dataclass(frozen=True)
class GridPoint:
    """One run of the grid.

    ``argv``: the options as passed to the script (without the manager's bookkeeping options);
    ``params``: canonical view, option name -> final value (``True`` for flags);
    ``index``: position in the grid.
    """
    run_id: str
    argv: Tuple[str, ...]
    params: Dict[str, Union[str, bool]]
    index: int

    @property
    def args(self) -> str:
        return shlex.join(self.argv)


@dataclass
class ExperimentSpec:
    """A validated experiment specification."""
    name: str
    path: str
    description: str = ""
    script: str = DEFAULT_SCRIPT
    args: List[str] = field(default_factory=lambda: [""])
    global_args: str = ""
    parameters: Dict[str, List[Scalar]] = field(default_factory=dict)
    skip_missing_data: bool = False
    duplicates: int = 0  # grid points identical to an earlier one, set by grid()

    @property
    def size(self) -> int:
        size = len(self.args)
        for values in self.parameters.values():
            size *= len(values)
        return size

    def script_path(self, project_root: str) -> str:
        """Absolute path of the script: as given when absolute, else looked up next to the spec
        file and then in the project root."""
        if os.path.isabs(self.script):
            candidates = [self.script]
        else:
            candidates = [os.path.join(os.path.dirname(self.path), self.script),
                          os.path.join(project_root, self.script)]
        for candidate in candidates:
            if os.path.isfile(candidate):
                return os.path.abspath(candidate)
        raise SpecError(f"{self.path}: script {self.script!r} not found (looked for "
                        + ", ".join(repr(c) for c in candidates) + ")")

    def grid(self) -> List[GridPoint]:
        """Every grid point, in grid order, duplicates (same canonical arguments, e.g. a parameter
        that 'global' overrides) removed and counted in ``duplicates``."""
        where_global = f"{self.path}: 'global'"
        global_tokens = split_arguments(self.global_args, where_global)
        lines = [split_arguments(line, f"{self.path}: args[{i}]") for i, line in enumerate(self.args)]
        names = list(self.parameters)
        points, seen = [], set()
        # itertools.product varies its last iterable fastest: reversing the parameters makes the
        # last one vary slowest, and the args line (innermost loop) fastest, as in the original code.
        for combination in itertools.product(*(self.parameters[name] for name in reversed(names))):
            values = dict(zip(reversed(names), combination))
            parameter_tokens = [t for name in names for t in parameter_tokens_for(name, values[name])]
            for line in lines:
                argv = tuple(parameter_tokens + global_tokens + line)
                params = canonical_arguments(argv, f"{self.path}: {shlex.join(argv)!r}")
                run_id = make_run_id(params)
                if run_id in seen:
                    continue
                seen.add(run_id)
                points.append(GridPoint(run_id, argv, params, len(points)))
        if not points:
            raise SpecError(f"{self.path}: the grid is empty")
        self.duplicates = self.size - len(points)
        return points


def split_arguments(text: str, where: str) -> List[str]:
    try:
        return shlex.split(text)
    except ValueError as error:
        raise SpecError(f"{where}: cannot split {text!r} into arguments ({error})") from None


def parameter_tokens_for(name: str, value: Scalar) -> List[str]:
    """``--name value``; booleans are flags: ``true`` gives ``--name``, ``false`` nothing."""
    if value is True:
        return [f"--{name}"]
    if value is False:
        return []
    return [f"--{name}", str(value)]


def canonical_arguments(argv: Sequence[str], where: str) -> Dict[str, Union[str, bool]]:
    """Option name -> final value of an argument list made of ``--name value``, ``--name=value``
    and ``--flag`` tokens (later occurrences win, as in argparse)."""
    params: Dict[str, Union[str, bool]] = {}
    i = 0
    while i < len(argv):
        token = argv[i]
        if not token.startswith("--") or token == "--":
            raise SpecError(f"{where}: unexpected token {token!r}; options are written "
                            f"'--name value' or '--flag'")
        name, has_value, value = token[2:].partition("=")
        if not name:
            raise SpecError(f"{where}: empty option name in {token!r}")
        if has_value:
            params[name] = value
            i += 1
        elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            params[name] = argv[i + 1]
            i += 2
        else:
            params[name] = True
            i += 1
    return params


def _slug(value: Union[str, bool]) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(value)).strip("_-")


def make_run_id(params: Dict[str, Union[str, bool]]) -> str:
    """``<id>-<dataset>-<model>-<estimator>-iw<K>-seed<s>-<hash>`` (parts present only when set; no
    ``<model>`` for a data set that brings its own);
    the hash is ``ovis.identity.run_hash`` (``--lr 3e-4`` and ``--lr 0.0003`` are the same run)."""
    digest = run_hash(params)[:HASH_LENGTH]
    shown = canonical_options(params)  # without the options the run does not read
    parts = []
    for name in PREFIX_OPTIONS:
        if name in shown and params[name] not in (True, ""):
            label = name if name in ("iw", "seed") else ""
            parts.append(label + _slug(params[name]))
    prefix = "-".join(p for p in parts if p)[:80]
    return f"{prefix}-{digest}" if prefix else digest


def _require(condition: bool, path: str, message: str) -> None:
    if not condition:
        raise SpecError(f"{path}: {message}")


def parse_spec(data: object, name: str, path: str) -> ExperimentSpec:
    """Validate the decoded JSON of a spec; raise SpecError naming the first problem."""
    _require(isinstance(data, dict), path, f"the spec must be a JSON object with keys {', '.join(SPEC_KEYS)}, "
             f"not a {type(data).__name__}")
    for key in data:
        _require(key in SPEC_KEYS, path, f"unknown key {key!r}{did_you_mean(key, SPEC_KEYS)}; "
                 f"allowed keys: {', '.join(SPEC_KEYS)}")
    description = data.get("description", "")
    _require(isinstance(description, str), path, "'description' must be a string")
    script = data.get("script", DEFAULT_SCRIPT)
    _require(isinstance(script, str) and script.strip() != "", path,
             "'script' must be a non-empty string (a path to the script, default run.py)")
    args = data.get("args", [""])
    _require(isinstance(args, list) and all(isinstance(a, str) for a in args), path,
             "'args' must be a list of strings, one estimator configuration a line")
    _require(len(args) > 0, path, "'args' is an empty list: the grid is empty "
             "(leave 'args' out for a single configuration)")
    global_args = data.get("global", "")
    _require(isinstance(global_args, str), path, "'global' must be a string of arguments for all runs")
    parameters = data.get("parameters", {})
    _require(isinstance(parameters, dict), path, "'parameters' must be an object: option name -> list of values")
    for option, values in parameters.items():
        _require(re.fullmatch(r"[A-Za-z][A-Za-z0-9_\-]*", option) is not None, path,
                 f"parameter name {option!r} is not an option name (write 'lr', not '--lr')")
        _require(isinstance(values, list) and len(values) > 0, path,
                 f"parameter {option!r} must be a non-empty list of values, got {json.dumps(values)}")
        for value in values:
            _require(isinstance(value, (str, int, float, bool)), path,
                     f"parameter {option!r}: value {json.dumps(value)} is not a string, number or boolean")
    skip_missing_data = data.get("skip_missing_data", False)
    _require(isinstance(skip_missing_data, bool), path, "'skip_missing_data' must be true or false")
    spec = ExperimentSpec(name=name, path=path, description=description, script=script, args=list(args),
                          global_args=global_args, parameters=dict(parameters),
                          skip_missing_data=skip_missing_data)
    _check_managed_options(spec)
    return spec


def _check_managed_options(spec: ExperimentSpec) -> None:
    sources = [("'global'", spec.global_args)] + [(f"args[{i}]", line) for i, line in enumerate(spec.args)]
    names = {name: "'parameters'" for name in spec.parameters}
    for where, text in sources:
        for token in split_arguments(text, f"{spec.path}: {where}"):
            if token.startswith("--"):
                names.setdefault(token[2:].partition("=")[0], where)
    for name in MANAGED_OPTIONS:
        if name in names:
            hint = "pass it to manager.py instead" if name in ("root", "data_root") else "remove it from the spec"
            raise SpecError(f"{spec.path}: {names[name]} sets --{name}, which the manager sets for every run "
                            f"({', '.join('--' + n for n in MANAGED_OPTIONS)}); {hint}")


def available_experiments(experiments_dir: str) -> List[str]:
    if not os.path.isdir(experiments_dir):
        return []
    return sorted(f[:-5] for f in os.listdir(experiments_dir) if f.endswith(".json"))


def resolve_spec_path(exp: str, experiments_dir: str) -> Tuple[str, str]:
    """``(name, path)`` of ``--exp``: a name in ``experiments_dir`` or a path to a JSON file."""
    if exp.endswith(".json") or os.sep in exp:
        path = os.path.abspath(exp)
        name = os.path.splitext(os.path.basename(path))[0]
    else:
        name, path = exp, os.path.join(experiments_dir, exp + ".json")
    if not os.path.isfile(path):
        known = available_experiments(experiments_dir)
        raise SpecError(f"experiment {exp!r} not found: no file {path}. "
                        f"Available in {experiments_dir}: {', '.join(known) or 'none'}")
    return name, path


def load_spec(exp: str, experiments_dir: str) -> ExperimentSpec:
    """Read and validate ``experiments/<exp>.json`` (or a path to a spec file)."""
    name, path = resolve_spec_path(exp, experiments_dir)
    with open(path) as f:
        text = f.read()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        line = text.splitlines()[error.lineno - 1] if 0 < error.lineno <= len(text.splitlines()) else ""
        raise SpecError(f"{path}: invalid JSON at line {error.lineno}, column {error.colno}: {error.msg}\n"
                        f"    {line}\n    {' ' * (error.colno - 1)}^") from None
    return parse_spec(data, name, path)
