"""The package imports downward only (developer guide): models/datasets -> estimators -> analysis ->
training -> queue/reporting -> the command-line programs (``ovis/apps/``, then the scripts at the
repository root), with the shared foundations (``ovis/files.py``, ``exit_codes.py``, ``cli.py``,
``identity.py``, ``records.py``, ``devices.py``, ``launch.py``, ``run_folder.py``) at the bottom and
``ovis/testing/`` (test models and the check tables) just above the estimators. Parsed from the
source with ``ast``, so an upward import fails here even when nothing executes it yet
(function-level imports included).
"""
import ast
from pathlib import Path
from typing import Dict, List, Set, Tuple

PACKAGE = Path(__file__).resolve().parents[1] / "ovis"
# Rank of each part of the package: a module may import its own rank or lower ones.
RANKS = {
    "ovis": 0, "files": 0, "exit_codes": 0, "cli": 0, "identity": 0, "records": 0, "devices": 0, "launch": 0,
    "run_folder": 0,
    "models": 1, "datasets": 1,
    "estimators": 2,
    "testing": 3,
    "analysis": 4,
    "training": 5,
    "queue": 6, "reporting": 6,
    "apps": 7,
}
# The library: the parts below the command-line programs, which must expose functions only.
LIBRARY = ("models", "datasets", "estimators", "testing", "analysis", "training")
# Upward imports that another piece of work is to remove (none left).
KNOWN_UPWARD: Set[Tuple[str, str]] = set()


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> Set[str]:
    """Every ``ovis`` module ``path`` imports (relative imports resolved; ``from ovis import x``
    counts as importing ``ovis.x``)."""
    name = module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "ovis")
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            if module.split(".")[0] != "ovis":
                continue
            found.add(module)
            if module == "ovis":  # from ovis import records
                found.update(f"ovis.{alias.name}" for alias in node.names)
    found.discard("ovis")
    return found


def import_graph() -> Dict[str, Set[str]]:
    return {module_name(path): imported_modules(path) for path in sorted(PACKAGE.rglob("*.py"))}


def part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "ovis"


def upward_imports(graph: Dict[str, Set[str]]) -> Set[Tuple[str, str]]:
    return {(module, target) for module, targets in graph.items() for target in targets
            if RANKS[part(target)] > RANKS[part(module)]}


def test_every_part_of_the_package_has_a_rank():
    assert {part(module) for module in import_graph()} <= set(RANKS)


def test_nothing_imports_upward():
    upward = upward_imports(import_graph())
    assert not upward - KNOWN_UPWARD, sorted(upward - KNOWN_UPWARD)
    assert KNOWN_UPWARD <= upward, f"fixed: remove {sorted(KNOWN_UPWARD - upward)} from KNOWN_UPWARD"


# The queue knows the scripts it launches through ``ovis.launch`` only (with ``ovis.records`` and
# ``ovis.exit_codes``): never through the code of what they run.
SCRIPT_CODE = ("training", "analysis")


def script_code_references(graph: Dict[str, Set[str]]) -> Set[Tuple[str, str]]:
    """(queue module, module of a launched script's code) for each import of one by the queue."""
    return {(module, target) for module, targets in graph.items() for target in targets
            if part(module) == "queue" and part(target) in SCRIPT_CODE}


def named_modules(path: Path) -> Set[str]:
    """Module paths of ``SCRIPT_CODE`` written as strings in ``path`` (``importlib`` by name)."""
    return {node.value for node in ast.walk(ast.parse(path.read_text(), str(path)))
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and any(node.value == f"ovis.{p}" or node.value.startswith(f"ovis.{p}.") for p in SCRIPT_CODE)
            and " " not in node.value}


def test_the_queue_knows_scripts_through_the_launch_protocol_only():
    assert not script_code_references(import_graph())
    named = {module_name(path): named_modules(path) for path in sorted((PACKAGE / "queue").rglob("*.py"))}
    assert not {module: names for module, names in named.items() if names}


def is_command_line(module: str) -> bool:
    """A command-line program: ``ovis.apps``, or the parsers of the queue's and the reports' scripts
    (``ovis.queue.cli``, ``ovis.reporting.cli``, ``ovis.queue.dbutils_cli``)."""
    return part(module) == "apps" or (module != "ovis.cli" and module.rsplit(".", 1)[-1].endswith("cli"))


def command_line_imports(graph: Dict[str, Set[str]]) -> Set[Tuple[str, str]]:
    """(module, command-line module) for each import of a command-line program by the library
    or by anything else that is not itself a command-line program."""
    return {(module, target) for module, targets in graph.items() for target in targets
            if is_command_line(target) and not is_command_line(module)}


def test_the_command_line_programs_are_above_the_library():
    assert all(RANKS["apps"] > RANKS[name] for name in RANKS if name != "apps")
    assert not command_line_imports(import_graph())


# run.py's options stay with the training code that reads them (defaults, run identity, estimator
# construction); ``ovis.apps.train`` parses with them.
RUN_OPTIONS = ("ovis.training.arguments", "ovis.training.reproduction_options")


def command_line_definitions(path: Path) -> List[str]:
    """What in ``path`` makes a command line: a module-level ``main`` or an ``ArgumentParser(...)`` call."""
    tree = ast.parse(path.read_text(), str(path))
    found = ["main()" for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "main"]
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = getattr(node.func, "attr", getattr(node.func, "id", None))
            found += ["ArgumentParser(...)"] if name == "ArgumentParser" else []
    return found


def test_the_library_defines_no_command_line():
    """Parsers and entry points live in ``ovis.apps``; the library exposes functions."""
    found = {module_name(path): command_line_definitions(path) for path in sorted(PACKAGE.rglob("*.py"))
             if part(module_name(path)) in LIBRARY and module_name(path) not in RUN_OPTIONS}
    assert not {module: names for module, names in found.items() if names}


def test_a_deliberately_upward_import_is_caught():
    graph = import_graph()
    graph["ovis.models.vae"] = graph["ovis.models.vae"] | {"ovis.training.trainer"}
    assert ("ovis.models.vae", "ovis.training.trainer") in upward_imports(graph)


def test_a_queue_import_of_script_code_is_caught():
    graph = import_graph()
    graph["ovis.queue.executor"] = graph["ovis.queue.executor"] | {"ovis.training.divergence"}
    assert ("ovis.queue.executor", "ovis.training.divergence") in script_code_references(graph)


def test_a_library_import_of_a_command_line_is_caught():
    graph = import_graph()
    graph["ovis.training.trainer"] = graph["ovis.training.trainer"] | {"ovis.apps.train"}
    graph["ovis.reporting.report"] = graph["ovis.reporting.report"] | {"ovis.queue.cli"}
    assert {("ovis.training.trainer", "ovis.apps.train"), ("ovis.reporting.report", "ovis.queue.cli")} <= (
        command_line_imports(graph))
    assert ("ovis.training.trainer", "ovis.apps.train") in upward_imports(graph)
