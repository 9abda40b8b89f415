"""The estimator registry: every estimator family is declared once, as an ``EstimatorFamily``.

    from ovis.estimators.registry import EstimatorFamily, Style, register_estimator
    register_estimator(EstimatorFamily(name="my-sf", grammar="my-sf", ids={"my-sf": (MySF, {})},
                                       examples=("my-sf",), label="my SF", style=Style("#8c564b", (8, 0))))

A family maps estimator ids to ``(class, config)``: exact ids through ``ids``, ids with parameters
through ``parse(id, reproduce_original) -> (class, config, EstimatorId)`` for the first tokens in
``prefixes``. Built-in families are declared next to their classes (each module's ``FAMILIES``)
and listed in ``ovis/estimators/builtin.py``; installed packages add theirs under the entry-point
group ``ovis.estimators``, and modules named in ``$OVIS_ESTIMATOR_PLUGINS`` (comma-separated) are
imported, registering theirs. All are loaded on the first lookup, in every process (run.py, the
queue's runs, reports, ``python -m ovis.apps.check``). Parsing, suggestions, the valid
forms, the example ids, figure styles and the generic tests all read this one table
(docs/DESIGN.md, section 3a).
"""
import difflib
import importlib
import importlib.metadata
import os
import re
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Tuple, Type, Union

ENTRY_POINT_GROUP = "ovis.estimators"
PLUGIN_MODULES_VARIABLE = "OVIS_ESTIMATOR_PLUGINS"  # comma-separated modules that register families on import

Parameter = Union[int, float, str]


@dataclass(frozen=True)
class EstimatorId:
    """What an estimator id says, from the one parse of the grammar (``describe_estimator_id``).

    ``text``: the id as given; ``family``: the id without its numbers (``ovis-gamma``,
    ``ovis-S-exclusive``, ``tvo-config1``, ``vimco-arithmetic``); ``parameters``: its numbers as
    typed values in id order (``(("S", 2),)`` for ``ovis-S2-exclusive``: 2 auxiliary particles,
    ``(("S_per_K", 2.0),)`` for ``ovis-S2.0-exclusive``: 2K of them); ``label``: a plain-text display
    name; ``key``: the canonical id, equal for ids that build the same estimator."""
    text: str
    family: str
    parameters: Tuple[Tuple[str, Parameter], ...]
    label: str
    key: str

    def parameter(self, name: str, default: Optional[Parameter] = None) -> Optional[Parameter]:
        return dict(self.parameters).get(name, default)


Parsed = Tuple[type, Dict, EstimatorId]


@dataclass(frozen=True)
class Style:
    """How an estimator is drawn in figures. ``color``: a matplotlib colour, or a ramp of colours
    that ``position`` in [0, 1] picks from; ``shade`` > 0 mixes it with black, < 0 with white;
    ``order``: legend position (tuples compared across every family: paper order first);
    ``marker``/``linestyle``: matplotlib's (None: the figure's default); ``label``: mathtext
    display name (None: the id's plain-text label)."""
    color: Union[str, Tuple[str, ...]]
    order: Tuple = (9,)
    position: float = 0.0
    shade: float = 0.0
    marker: Optional[str] = None
    linestyle: Optional[str] = None
    label: Optional[str] = None


@dataclass(frozen=True, eq=False)
class EstimatorFamily:
    """One estimator family (docs/DESIGN.md, section 3a).

    ``name``: unique; ``grammar``: the id form shown in errors and docs; ``ids``: exact id ->
    ``(class, config)`` (aliases: equal rows, the first spelling is the canonical key);
    ``parse`` and ``prefixes``: the parser of ids with parameters and the first ``-``-separated
    tokens it takes; ``examples``: ids the generic tests and the check tables run; ``label``:
    display name (a mapping id -> label for several exact ids); ``style``: a ``Style``, a
    mapping id -> ``Style`` or a callable ``EstimatorId -> Style``; ``table``: its rows of the README's
    estimator table, ``(identifiers, estimator, unbiased for)`` in markdown (``estimator_table``;
    every built-in family has at least one)."""
    name: str
    grammar: str
    examples: Tuple[str, ...]
    ids: Mapping[str, Tuple[type, Dict]] = field(default_factory=dict)
    parse: Optional[Callable[[str, bool], Parsed]] = None
    prefixes: Tuple[str, ...] = ()
    label: Union[str, Mapping[str, str]] = ""
    style: Union[Style, Mapping[str, Style], Callable[[EstimatorId], Style], None] = None
    table: Tuple[Tuple[str, str, str], ...] = ()

    def __post_init__(self):
        if not self.name or not self.grammar or not self.examples:
            raise ValueError(f"estimator family {self.name!r}: name, grammar and at least one example id are required")
        if bool(self.parse) != bool(self.prefixes):
            raise ValueError(f"estimator family {self.name!r}: give parse and prefixes together (the first id "
                             f"tokens the parser takes), or neither")
        if not self.ids and not self.parse:
            raise ValueError(f"estimator family {self.name!r}: give exact ids, a parser, or both")

    def describe_exact(self, estimator_id: str) -> Parsed:
        cls, config = self.ids[estimator_id]
        key = next(name for name, row in self.ids.items() if row == (cls, config))  # first spelling of an alias
        label = self.label.get(key, key) if isinstance(self.label, Mapping) else (self.label or key)
        return cls, dict(config), EstimatorId(estimator_id, key, (), label, key)

    def style_of(self, description: EstimatorId) -> Optional[Style]:
        if isinstance(self.style, Mapping):
            return self.style.get(description.key)
        return self.style(description) if callable(self.style) else self.style


_FAMILIES: Dict[str, EstimatorFamily] = {}
_EXACT: Dict[str, EstimatorFamily] = {}
_PREFIXES: Dict[str, EstimatorFamily] = {}
_loaded = False


def _add(family: EstimatorFamily, replace: bool) -> None:
    if not isinstance(family, EstimatorFamily):
        raise TypeError(f"register_estimator takes an EstimatorFamily, got {type(family).__name__}")
    old = _FAMILIES.get(family.name)
    taken = [f"id {i!r} ({_EXACT[i].name})" for i in family.ids if i in _EXACT and _EXACT[i] is not old]
    taken += [f"prefix {p!r} ({_PREFIXES[p].name})" for p in family.prefixes if p in _PREFIXES and _PREFIXES[p] is not old]
    if not replace and (old is not None or taken):
        what = f"the name {family.name!r}" if old is not None else ", ".join(taken)
        raise ValueError(f"estimator family {family.name!r}: {what} is already registered; choose another "
                         f"name/ids, or pass replace=True to override")
    for other in {_EXACT.get(i) for i in family.ids} | {_PREFIXES.get(p) for p in family.prefixes} | {old}:
        if other is not None:
            _remove(other)
    _FAMILIES[family.name] = family
    _EXACT.update(dict.fromkeys(family.ids, family))
    _PREFIXES.update(dict.fromkeys(family.prefixes, family))
    for example in family.examples:
        try:
            if family_of(example) is not family:
                raise ValueError(f"it parses as family {family_of(example).name!r}")
            _lookup(example, False)
        except ValueError as error:
            _remove(family)
            raise ValueError(f"estimator family {family.name!r}: its example id {example!r} does not parse as "
                             f"one of its ids ({str(error).splitlines()[0]}); give examples that it parses") from None


def _remove(family: EstimatorFamily) -> None:
    _FAMILIES.pop(family.name, None)
    for index in (_EXACT, _PREFIXES):
        for key in [k for k, f in index.items() if f is family]:
            del index[key]


def register_estimator(family: EstimatorFamily, replace: bool = False) -> EstimatorFamily:
    """Register ``family``; its ids then work everywhere a built-in id works (run.py, ovis.Loss,
    PyroLoss, reports, the check tables). Raises ``ValueError`` when its name, one of its ids or
    prefixes is taken, unless ``replace=True`` (which removes the families it takes them from).
    Returns ``family``."""
    _ensure_loaded()
    _add(family, replace)
    return family


def unregister_estimator(name: str) -> None:
    """Remove the family called ``name`` (tests and interactive sessions)."""
    _ensure_loaded()
    if name not in _FAMILIES:
        raise ValueError(f"no estimator family {name!r}; registered: {', '.join(_FAMILIES)}")
    _remove(_FAMILIES[name])


def registered_families() -> Tuple[EstimatorFamily, ...]:
    """Every registered family: built-ins, then entry-point plugins, then ``register_estimator`` calls."""
    _ensure_loaded()
    return tuple(_FAMILIES.values())


def _families_from(loaded, source: str) -> List[EstimatorFamily]:
    value = loaded() if callable(loaded) and not isinstance(loaded, EstimatorFamily) else loaded
    values = [value] if isinstance(value, EstimatorFamily) else list(value)
    if not all(isinstance(v, EstimatorFamily) for v in values):
        raise TypeError(f"{source} must give an EstimatorFamily, a callable returning one, or an iterable of them")
    return values


def _load_entry_points() -> None:
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        source = f"estimator plugin {entry_point.name!r} (entry point {entry_point.value!r}, group {ENTRY_POINT_GROUP!r})"
        try:
            for family in _families_from(entry_point.load(), source):
                _add(family, replace=False)
        except Exception as error:
            raise ValueError(f"{source} failed to load: {type(error).__name__}: {error}; fix or uninstall the "
                             f"package that declares it") from error


def _load_plugin_modules() -> None:
    """Import the modules named in ``$OVIS_ESTIMATOR_PLUGINS`` (they call ``register_estimator``)."""
    for name in filter(None, (n.strip() for n in os.environ.get(PLUGIN_MODULES_VARIABLE, "").split(","))):
        try:
            importlib.import_module(name)
        except ImportError as error:
            raise ValueError(f"estimator plugin module {name!r} (${PLUGIN_MODULES_VARIABLE}) could not be imported: "
                             f"{error}; put its folder on PYTHONPATH or remove it from ${PLUGIN_MODULES_VARIABLE}"
                             ) from error


def _ensure_loaded() -> None:
    """Register the built-in families, then the entry-point plugins and the plugin modules, once."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    from .builtin import builtin_families
    for family in builtin_families():
        _add(family, replace=False)
    _load_entry_points()
    _load_plugin_modules()


def valid_forms() -> Tuple[str, ...]:
    """The grammar of every family, for error messages and help texts."""
    return tuple(f.grammar for f in registered_families())


def example_ids() -> Tuple[str, ...]:
    """Every family's example ids (the generic test matrices and check tables run these)."""
    return tuple(e for f in registered_families() for e in f.examples)


def invalid(estimator_id, reason: str = "") -> ValueError:
    """The one error for a bad id: the reason, then every valid form (parsers raise it too)."""
    forms = "\n  ".join(valid_forms())
    reason = f" ({reason})" if reason else ""
    return ValueError(f"unknown estimator id {estimator_id!r}{reason}; valid forms:\n  {forms}\n(an estimator of "
                      f"your own: install its package, entry-point group {ENTRY_POINT_GROUP!r}, or name its module in "
                      f"${PLUGIN_MODULES_VARIABLE})")


def parse_number(text: str) -> Union[int, float]:
    """``"50"`` -> 50 (int), ``"0.3"`` -> 0.3 (float)."""
    return float(text) if "." in text else int(text)


def number_text(value: Union[int, float]) -> str:
    """A parameter as written in a canonical id: ``1.0`` -> ``1``, ``0.25`` -> ``0.25``."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def family_of(estimator_id) -> EstimatorFamily:
    """The family that parses ``estimator_id`` (exact ids first, then by first token)."""
    _ensure_loaded()
    if not isinstance(estimator_id, str):
        raise invalid(estimator_id, "expected a string")
    family = _EXACT.get(estimator_id) or _PREFIXES.get(estimator_id.split("-")[0])
    if family is None:
        raise invalid(estimator_id)
    return family


def _lookup(estimator_id, reproduce_original: bool) -> Parsed:
    family = family_of(estimator_id)
    if estimator_id in family.ids:
        return family.describe_exact(estimator_id)
    return family.parse(estimator_id, reproduce_original)


def closest_ids(estimator_id) -> Tuple[str, ...]:
    """What the user probably meant: the id with spaces, underscores and case normalised, if that
    parses; else example or exact ids that extend it (``vimco``), reorder its words
    (``rebar-dynamic``) or are close to it (``difflib``); empty for a non-string."""
    if not isinstance(estimator_id, str):
        return ()
    text = estimator_id.strip().replace("_", "-")
    for candidate in dict.fromkeys((text, text.lower(), re.sub(r"^ovis-s", "ovis-S", text.lower()))):
        if candidate != estimator_id:
            try:
                _lookup(candidate, False)
                return (candidate,)
            except ValueError:
                pass
    text = text.lower()
    known = tuple(dict.fromkeys(example_ids() + tuple(_EXACT)))
    related = [e for e in known if e.startswith(text + "-") or e.endswith("-" + text)
               or sorted(e.split("-")) == sorted(text.split("-"))]
    return tuple(related[:2]) or tuple(difflib.get_close_matches(text, known, n=2, cutoff=0.6))


def lookup(estimator_id, reproduce_original: bool = False) -> Parsed:
    """``(class, config, EstimatorId)`` of an id; the ``ValueError`` names the ids probably meant
    and lists the valid forms."""
    try:
        return _lookup(estimator_id, reproduce_original)
    except ValueError as error:
        close = closest_ids(estimator_id)
        if not close:
            raise
        hint = f"; did you mean {' or '.join(map(repr, close))}?; valid forms:"
        raise ValueError(str(error).replace("; valid forms:", hint, 1)) from None


def estimators_accepting(latent_type: str) -> Tuple[str, ...]:
    """Example ids of the estimators that accept models with ``latent_type`` latents."""
    return tuple(e for e in example_ids() if latent_type in _lookup(e, False)[0].latent_types)


def check_latent_type(estimator: type, model) -> None:
    """Raise ``ValueError`` when ``model`` declares a ``latent_type`` outside ``estimator.latent_types``
    (a model without the attribute is not checked)."""
    latent_type = getattr(model, "latent_type", None)
    if latent_type is not None and latent_type not in estimator.latent_types:
        accepted = " or ".join(sorted(estimator.latent_types))
        raise ValueError(f"{estimator.__name__} accepts {accepted} latents, but {type(model).__name__} has "
                         f"{latent_type} latents: use a model with {accepted} latents, or an estimator that accepts "
                         f"{latent_type} latents, such as {', '.join(estimators_accepting(latent_type)[:4])}")


TABLE_HEADER = ("identifier", "estimator", "unbiased for")


def estimator_table(families: Iterable[EstimatorFamily]) -> str:
    """The markdown table of the families' ``table`` rows (the README's, from the built-in families)."""
    rows = [TABLE_HEADER]
    for family in families:
        if not family.table:
            raise ValueError(f"estimator family {family.name!r} has no table rows: give it "
                             f"table=((identifiers, estimator, unbiased for), ...) to describe it")
        rows += family.table
    lines = ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join([lines[0], "|" + "---|" * len(TABLE_HEADER), *lines[1:]])


def estimator_classes(families: Optional[Iterable[EstimatorFamily]] = None) -> Tuple[Type, ...]:
    """The classes that the families' exact ids and examples build (tests: every subclass is registered)."""
    classes = []
    for family in registered_families() if families is None else families:
        classes += [cls for cls, _ in family.ids.values()]
        classes += [_lookup(e, False)[0] for e in family.examples if e not in family.ids]
    return tuple(dict.fromkeys(classes))
