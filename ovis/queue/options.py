"""Checking a grid against the options its script accepts, before anything is queued.

A script of the project root that defines ``build_parser`` and ``validate_args`` (the launch
protocol, ``ovis.launch.OPTION_FUNCTIONS``: ``run.py``, ``asymptotic_variance.py``) is loaded from
its file, without running it, and every grid point is parsed exactly as the script will parse
it: unknown options, bad values (``--iw abc``), invalid choices and incompatible options are
refused up front, and estimator ids are checked with ``ovis.estimators.config.parse_estimator_id``.
Any other script is asked for ``--help`` and its option names are checked (argparse's
unique-prefix abbreviations are accepted, as argparse does).
"""
import argparse
import ast
import functools
import importlib.util
import os
import re
import subprocess
import sys
from typing import Callable, Dict, List, Optional, Sequence, Set

from ovis.cli import comma_list, did_you_mean
from ovis.launch import OPTION_FUNCTIONS
from ovis.queue.spec import ExperimentSpec, GridPoint, SpecError

# Options whose values are estimator ids (``estimators``: a comma-separated list).
ESTIMATOR_OPTIONS = ("estimator", "estimators")


class _ParserError(Exception):
    pass


def _raise_parser_error(message: str) -> None:
    raise _ParserError(message)


class ScriptOptions:
    """What a script accepts: a full parser (project scripts) or only option names (``--help``)."""

    def __init__(self, script: str, parser: Optional[argparse.ArgumentParser] = None,
                 validate: Optional[Callable] = None, names: Optional[Set[str]] = None,
                 check_estimators: bool = False):
        self.script = script
        self.parser = parser
        self.validate = validate
        self.names = names
        self.check_estimators = check_estimators

    @property
    def known(self) -> bool:
        return self.parser is not None or self.names is not None

    def check(self, spec: ExperimentSpec, points: Sequence[GridPoint]) -> List[str]:
        """Raise SpecError for the first grid point the script would refuse; return warnings
        about what could not be checked."""
        name = os.path.basename(self.script)
        warnings = []
        if self.names is not None:
            self._check_names(spec, points, name)
        if self.parser is not None:
            warnings += self._check_parse(spec, points, name)
        if self.check_estimators:
            warnings += self._check_estimator_ids(spec, points)
        return warnings

    def _check_names(self, spec: ExperimentSpec, points: Sequence[GridPoint], name: str) -> None:
        problems = []
        for point in points:
            for option in point.params:
                matches = [known for known in self.names if known.startswith(option)]
                if option in self.names or len(matches) == 1:
                    continue
                hint = did_you_mean(option, self.names, "--")
                ambiguous = f" (ambiguous: {', '.join('--' + m for m in sorted(matches))})" if matches else ""
                problems.append(f"grid point {point.index} ({point.args}): unknown option --{option}{hint}"
                                f"{ambiguous} for {name}")
        _refuse(spec, name, problems, len(points))

    def _check_parse(self, spec: ExperimentSpec, points: Sequence[GridPoint], name: str) -> List[str]:
        """Parse and validate each grid point exactly as the script will (its ``build_parser``
        and ``validate_args``, i.e. its ``parse_args``), in this process."""
        self.parser.error = _raise_parser_error
        validate, warnings, problems = self.validate, [], []
        for point in points:
            try:
                namespace = self.parser.parse_args(list(point.argv))
                if validate is not None:
                    try:
                        validate(namespace)
                    except ImportError as error:  # it needs a part of ovis that is not installed
                        validate = None
                        warnings.append(f"{name}'s own validation could not run ({error}): "
                                        f"only the options' syntax was checked")
            except (_ParserError, ValueError) as error:
                problems.append(f"grid point {point.index} ({point.args}): {error}")
        _refuse(spec, name, problems, len(points))
        return warnings

    def _check_estimator_ids(self, spec: ExperimentSpec, points: Sequence[GridPoint]) -> List[str]:
        try:
            from ovis.estimators.config import parse_estimator_id
        except ImportError as error:
            return [f"estimator ids not checked: {error}"]
        checked: Set[str] = set()
        for point in points:
            for option in ESTIMATOR_OPTIONS:
                value = point.params.get(option)
                if not isinstance(value, str):
                    continue
                for estimator_id in comma_list(value):
                    if estimator_id in checked:
                        continue
                    try:
                        parse_estimator_id(estimator_id)
                    except ValueError as error:
                        raise SpecError(f"{spec.path}: --{option} {estimator_id!r} in grid point {point.index} "
                                        f"is not a valid estimator id: {error}") from None
                    checked.add(estimator_id)
        return []


def _refuse(spec: ExperimentSpec, name: str, problems: List[str], total: int) -> None:
    """One SpecError listing every refused grid point (one line each); nothing is queued."""
    if problems:
        raise SpecError(f"{spec.path}: {name} refuses {len(problems)} of the {total} grid points; nothing was "
                        f"queued. Fix the spec's options:\n" + "\n".join("  " + p for p in problems))


def _module_names(script: str) -> Set[str]:
    """The names a script's module level defines or imports (read with ``ast``, nothing runs)."""
    try:
        with open(script) as f:
            tree = ast.parse(f.read(), script)
    except (OSError, SyntaxError, ValueError):
        return set()
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, ast.Assign):
            names.update(target.id for target in node.targets if isinstance(target, ast.Name))
    return names


def _project_parser(script: str, project_root: str) -> Optional[ScriptOptions]:
    """The parser and validation of a project-root script that defines ``OPTION_FUNCTIONS``,
    loaded from its file (its work runs only under ``__main__``); None otherwise."""
    parser_name, validate_name = OPTION_FUNCTIONS
    if (os.path.dirname(os.path.abspath(script)) != os.path.abspath(project_root)
            or parser_name not in _module_names(script)):
        return None
    name = "ovis_launched_" + re.sub(r"\W", "_", os.path.splitext(os.path.basename(script))[0])
    spec = importlib.util.spec_from_file_location(name, script)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except ImportError:
        return None
    return ScriptOptions(script, parser=getattr(module, parser_name)(), validate=getattr(module, validate_name, None),
                         check_estimators=True)


OPTION_PATTERN = re.compile(r"(?<![\w-])--([A-Za-z][\w-]*)")


def _help_options(script: str, project_root: str) -> Optional[Set[str]]:
    """Option names listed by ``python script --help``; None when the script does not answer."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [project_root, os.environ.get("PYTHONPATH")])))
    try:
        result = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True,
                                timeout=120, cwd=project_root, env=env)
    except (OSError, subprocess.TimeoutExpired):
        return None
    names = set(OPTION_PATTERN.findall(result.stdout)) - {"help"}
    return names if result.returncode == 0 and names else None


@functools.lru_cache(maxsize=8)
def script_options(script: str, project_root: str) -> ScriptOptions:
    """The best available description of what ``script`` accepts."""
    options = _project_parser(script, project_root)
    if options is not None:
        return options
    return ScriptOptions(script, names=_help_options(script, project_root))


def missing_data(spec: ExperimentSpec, points: Sequence[GridPoint], data_root: str) -> Dict[str, str]:
    """``{dataset: why}`` for the ``--dataset`` values of ``points`` whose files cannot be found
    under ``data_root`` (``ovis.datasets``); unknown data set names are refused."""
    names = sorted({p.params["dataset"] for p in points if isinstance(p.params.get("dataset"), str)})
    if not names:
        return {}
    try:
        from ovis.datasets import MissingDataError, get_datasets
    except ImportError:
        return {}
    missing = {}
    for name in names:
        try:
            get_datasets(name, data_root=data_root)
        except MissingDataError as error:
            missing[name] = str(error)
        except ValueError as error:
            raise SpecError(f"{spec.path}: --dataset {name}: {error}") from None
    return missing


def check_grid(spec: ExperimentSpec, points: List[GridPoint], script: str, project_root: str) -> List[str]:
    """Validate ``points`` against ``script``; return warnings (nothing could be checked)."""
    options = script_options(script, project_root)
    if not options.known:
        return [f"could not read the options of {script} (no parser, '--help' failed): option names not checked"]
    return options.check(spec, points)


def uses_datasets(script: str, project_root: str) -> bool:
    """Whether ``--dataset`` of this script names an ``ovis.datasets`` data set (run.py)."""
    return (os.path.basename(script) == "run.py"
            and os.path.dirname(os.path.abspath(script)) == os.path.abspath(project_root))


def accepts_option(script: str, project_root: str, name: str) -> bool:
    """Whether ``script`` accepts ``--name`` (e.g. run.py's ``--threads``)."""
    options = script_options(script, project_root)
    if options.parser is not None:
        return any(f"--{name}" in action.option_strings for action in options.parser._actions)
    return name in (options.names or ())
