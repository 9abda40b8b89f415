"""The package imports downward only (developer guide): models/datasets -> estimators -> analysis ->
training -> queue/reporting, with the shared foundations (``ovis/files.py``, ``exit_codes.py``,
``cli.py``, ``identity.py``, ``records.py``, ``devices.py``) at the bottom and ``ovis/testing/``
(test models) between models and estimators. Parsed from the source with ``ast``, so an upward
import fails here even when nothing executes it yet (function-level imports included).
"""
import ast
from pathlib import Path
from typing import Dict, Set, Tuple

PACKAGE = Path(__file__).resolve().parents[1] / "ovis"
# Rank of each part of the package: a module may import its own rank or lower ones.
RANKS = {
    "ovis": 0, "files": 0, "exit_codes": 0, "cli": 0, "identity": 0, "records": 0, "devices": 0, "launch": 0,
    "models": 1, "datasets": 1,
    "testing": 2,
    "estimators": 3,
    "analysis": 4,
    "training": 5,
    "queue": 6, "reporting": 6,
}
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


def test_a_deliberately_upward_import_is_caught():
    graph = import_graph()
    graph["ovis.models.vae"] = graph["ovis.models.vae"] | {"ovis.training.trainer"}
    assert ("ovis.models.vae", "ovis.training.trainer") in upward_imports(graph)


def test_a_queue_import_of_script_code_is_caught():
    graph = import_graph()
    graph["ovis.queue.executor"] = graph["ovis.queue.executor"] | {"ovis.training.malloc"}
    assert ("ovis.queue.executor", "ovis.training.malloc") in script_code_references(graph)
