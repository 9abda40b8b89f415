"""Estimator identifiers: ``parse_estimator_id("ovis-gamma1") -> (OvisAsymptotic, {"gamma": 1.0, ...})``.

The class is then built with ``Estimator(mc=..., iw=..., **config)``. Identifiers:

==========================================  ===============================================
``pathwise`` (or ``Pathwise``)              reparameterised IW bound, layout (mc, iw)
``pathwise-vae`` / ``pathwise-iwae``        pathwise ELBO x (mc * iw) / IWAE with mc * iw particles
``stl`` / ``dreg``                          sticking-the-landing / doubly reparameterised IWAE
``wake-wake`` / ``wake-sleep``              reweighted wake-sleep, wake / sleep phase for q
``reinforce`` / ``reinforce-baseline``      score function, no control variate / neural baseline
``vimco-arithmetic`` / ``vimco-geometric``  VIMCO leave-one-out control variates
``ovis-S<S>[-exclusive]``                   OVIS-MC; ``<S>`` int = S auxiliary particles,
                                            decimal (``0.3``) = fraction of iw
``ovis-gamma<g>[-arithmetic|-geometric]``   OVIS~ (also ``ovis-arithmetic-gamma<g>``)
``tvo[-part<n>][-beta<b>][-config1|-config2][-left|-right|-trapz]``
                                            TVO: n partitions (2), beta_min = 10^-b (10^-10),
                                            K-dependent beta_min rules, integration (left)
``nvil`` / ``reinforce-loo``                NVIL / leave-one-out baseline over the mc bounds
``muprop`` / ``simple-muprop``              MuProp / the REBAR code's SimpleMuProp
``rebar`` / ``dynamic-rebar`` / ``relax``   REBAR (eta 1, temperature 0.5) / eta and
                                            temperature learned / RELAX surrogate network
``arm`` / ``disarm`` / ``disarm-iw``        ARM / DisARM / local DisARM of L_K (Bernoulli)
``gumbel-softmax[-tau<t>]`` (``concrete``)  relaxed pathwise, temperature t (biased)
``straight-through[-tau<t>]``               straight-through Gumbel (biased)
==========================================  ===============================================

``reproduce_original=True`` (ovis's one compatibility switch; also for the relaxed latents of
``ovis.models``) reproduces the original code at HEAD (d119252) where it differs: every
``ovis-S`` number is a fraction of iw (``ovis-S50`` = 50 iw auxiliary particles), unknown
tokens in a TVO id are ignored (the original ``tvo-S5-beta3`` is a 2-partition TVO), and
OVIS~ does not divide its log Z_[-k] correction by 1 - alpha. Its earlier names
``head_compat`` (here), ``head_aux_scaling`` and ``legacy_renyi`` (estimator arguments) are
still accepted.

``describe_estimator_id(id) -> EstimatorId`` gives what the same parse found, for reports:
the family, the parameters as typed values (``ovis-S2`` has ``S=2`` auxiliary particles,
``ovis-S2.0`` has ``S_per_K=2.0``, i.e. 2K), a display label and ``key``, the canonical id that
groups runs (``Pathwise`` and ``pathwise``, ``ovis-gamma1`` and ``ovis-gamma1.0`` share one).

Adding an estimator: a row in ``_EXACT`` (and, optionally, its display name in ``_LABELS``);
an id with numeric parameters gets a parser in ``_FAMILY_PARSERS``.
"""
import difflib
import re
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple, Type, Union

from .antithetic import Antithetic
from .base import GradientEstimator
from .baselines import NVIL, ReinforceLeaveOneOut
from .muprop import MuProp
from .rebar import REBAR
from .relaxed import Relaxed
from .ovis import OvisAsymptotic, OvisMonteCarlo
from .pathwise import DReG, Pathwise, PathwiseIWAE, PathwiseVAE, StickingTheLanding
from .score_function import Reinforce, ReinforceBaseline
from .tvo import BETA_MIN_RULES, INTEGRATIONS, ThermodynamicVariationalObjective
from .vimco import VIMCO
from .wake_sleep import WakeSleep, WakeWake

VALID_FORMS = ("pathwise", "pathwise-vae", "pathwise-iwae", "stl", "dreg", "wake-wake", "wake-sleep",
               "reinforce", "reinforce-baseline", "vimco-arithmetic", "vimco-geometric",
               "ovis-S<int or decimal>[-exclusive]", "ovis-gamma<g>[-arithmetic|-geometric]",
               "tvo[-part<n>][-beta<b>][-config1|-config2][-left|-right|-trapz]",
               "nvil", "reinforce-loo", "muprop", "simple-muprop", "rebar", "dynamic-rebar", "relax", "arm",
               "disarm", "disarm-iw", "gumbel-softmax[-tau<t>]", "concrete[-tau<t>]", "straight-through[-tau<t>]")

# One identifier of every form (documentation, tests and the check command).
EXAMPLE_IDS = ("pathwise", "pathwise-vae", "pathwise-iwae", "stl", "dreg", "wake-wake", "wake-sleep",
               "reinforce", "reinforce-baseline", "vimco-arithmetic", "vimco-geometric",
               "ovis-S1", "ovis-S0.5", "ovis-S2-exclusive", "ovis-gamma0", "ovis-gamma1",
               "ovis-gamma1-arithmetic", "ovis-gamma0.5-geometric", "tvo", "tvo-part1",
               "tvo-part5-beta2-trapz", "tvo-part2-config1", "nvil", "reinforce-loo", "muprop", "simple-muprop",
               "rebar", "dynamic-rebar", "relax", "arm", "disarm", "disarm-iw", "gumbel-softmax",
               "gumbel-softmax-tau0.3", "concrete", "straight-through")

_EXACT: Dict[str, Tuple[Type[GradientEstimator], Dict]] = {
    "pathwise": (Pathwise, {}),
    "Pathwise": (Pathwise, {}),
    "pathwise-vae": (PathwiseVAE, {}),
    "pathwise-iwae": (PathwiseIWAE, {}),
    "stl": (StickingTheLanding, {}),
    "dreg": (DReG, {}),
    "wake-wake": (WakeWake, {}),
    "wake-sleep": (WakeSleep, {}),
    "reinforce": (Reinforce, {}),
    "reinforce-baseline": (ReinforceBaseline, {}),
    "vimco-arithmetic": (VIMCO, {"mode": "arithmetic"}),
    "vimco-geometric": (VIMCO, {"mode": "geometric"}),
    "nvil": (NVIL, {}),
    "reinforce-loo": (ReinforceLeaveOneOut, {}),
    "muprop": (MuProp, {"first_order": True}),
    "simple-muprop": (MuProp, {"first_order": False}),
    "rebar": (REBAR, {"learn": False}),
    "dynamic-rebar": (REBAR, {"learn": True}),
    "relax": (REBAR, {"learn": True, "surrogate_hdim": 64}),
    "arm": (Antithetic, {"mode": "arm"}),
    "disarm": (Antithetic, {"mode": "disarm"}),
    "disarm-iw": (Antithetic, {"mode": "disarm-iw"}),
}
# Display names of the ids in ``_EXACT`` (plain text; the id itself when absent).
_LABELS: Dict[str, str] = {
    "pathwise-vae": "VAE",
    "pathwise-iwae": "IWAE",
    "stl": "IWAE-STL",
    "dreg": "IWAE-DReG",
    "wake-wake": "RWS (wake-wake)",
    "wake-sleep": "RWS (wake-sleep)",
    "reinforce": "Reinforce",
    "reinforce-baseline": "Reinforce (baseline)",
    "vimco-arithmetic": "VIMCO",
    "vimco-geometric": "VIMCO (geom.)",
    "nvil": "NVIL",
    "reinforce-loo": "Reinforce (leave-one-out)",
    "muprop": "MuProp",
    "simple-muprop": "SimpleMuProp",
    "rebar": "REBAR",
    "dynamic-rebar": "dynamic REBAR",
    "relax": "RELAX",
    "arm": "ARM",
    "disarm": "DisARM",
    "disarm-iw": "DisARM (IW)",
}
_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)"
_OVIS_MC = re.compile(rf"ovis-S{_NUMBER}(-exclusive)?")
_GAMMA = re.compile(rf"gamma{_NUMBER}")
_RELAXED = re.compile(rf"(gumbel-softmax|concrete|straight-through)(?:-tau{_NUMBER})?")


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


def _invalid(estimator_id, reason: str = "") -> ValueError:
    forms = "\n  ".join(VALID_FORMS)
    reason = f" ({reason})" if reason else ""
    return ValueError(f"unknown estimator id {estimator_id!r}{reason}; valid forms:\n  {forms}")


def _closest_ids(estimator_id) -> Tuple[str, ...]:
    """What the user probably meant: the id with spaces, underscores and case normalised, if that
    parses; else example ids that extend it (``vimco``), reorder its words (``rebar-dynamic``) or
    are close to it (``difflib``); empty for a non-string."""
    if not isinstance(estimator_id, str):
        return ()
    text = estimator_id.strip().replace("_", "-")
    for candidate in dict.fromkeys((text, text.lower(), re.sub(r"^ovis-s", "ovis-S", text.lower()))):
        if candidate != estimator_id:
            try:
                _parse_id(candidate, False)
                return (candidate,)
            except ValueError:
                pass
    text = text.lower()
    related = [e for e in EXAMPLE_IDS if e.startswith(text + "-") or e.endswith("-" + text)
               or sorted(e.split("-")) == sorted(text.split("-"))]
    return tuple(related[:2]) or tuple(difflib.get_close_matches(text, EXAMPLE_IDS, n=2, cutoff=0.6))


def _number(text: str):
    """``"50"`` -> 50 (int), ``"0.3"`` -> 0.3 (float)."""
    return float(text) if "." in text else int(text)


def _text(value: Union[int, float]) -> str:
    """A parameter as written in a canonical id: ``1.0`` -> ``1``, ``0.25`` -> ``0.25``."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


Parsed = Tuple[Type[GradientEstimator], Dict, EstimatorId]


def _parse_ovis(estimator_id: str, reproduce_original: bool) -> Parsed:
    match = _OVIS_MC.fullmatch(estimator_id)
    if match:
        aux = _number(match.group(1))
        exclusive = match.group(2) is not None
        config = {"iw_aux": aux, "exclusive": exclusive}
        if reproduce_original:
            config["reproduce_original"] = True
        fraction = reproduce_original or isinstance(aux, float)  # a fraction of K, else a number of particles
        parameter = ("S_per_K", float(aux)) if fraction else ("S", aux)
        budget = ("", "") if exclusive else (" of K", "")
        suffix = "-exclusive" if exclusive else ""
        written = repr(float(aux)) if fraction else str(aux)  # ovis-S2.0 stays apart from ovis-S2
        label = f"OVIS-MC (S={_text(aux)}{'K' if fraction else ''}{budget[0]})"
        return OvisMonteCarlo, config, EstimatorId(estimator_id, "ovis-S" + suffix, (parameter,), label,
                                                   f"ovis-S{written}{suffix}")
    tokens = estimator_id.split("-")[1:]
    gammas = [m for m in map(_GAMMA.fullmatch, tokens) if m]
    modes = [t for t in tokens if t in ("arithmetic", "geometric")]
    if len(gammas) != 1 or len(modes) > 1 or len(gammas) + len(modes) != len(tokens):
        raise _invalid(estimator_id, "an ovis id is ovis-S<S>[-exclusive] or ovis-gamma<g>[-arithmetic|-geometric]")
    gamma = float(gammas[0].group(1))
    config = {"gamma": gamma, "leave_one_out": modes[0] if modes else "clipped"}
    if reproduce_original:
        config["reproduce_original"] = True
    mode = f"-{modes[0]}" if modes else ""
    label = f"OVIS~ (gamma={_text(gamma)}{', ' + modes[0] if modes else ''})"
    return OvisAsymptotic, config, EstimatorId(estimator_id, "ovis-gamma" + mode, (("gamma", gamma),), label,
                                               f"ovis-gamma{_text(gamma)}{mode}")


def _tvo_config(estimator_id: str, tokens, reproduce_original: bool) -> Tuple[Dict, int]:
    """The TVO's config and the ``beta<b>`` number b (beta_min = 10^-b)."""
    config = {"partitions": 2, "log_beta_min": -10.0, "beta_min_rule": None, "integration": "left"}
    beta = 10
    if reproduce_original:  # the original's rules: substring tests, first integer, unknown tokens ignored
        for token in tokens:
            number = re.search(r"\d+", token)
            if "part" in token and number:
                config["partitions"] = int(number.group())
            elif "beta" in token and number:
                beta = int(number.group())
            elif token in BETA_MIN_RULES:
                config["beta_min_rule"] = token
        config["integration"] = next((t for t in tokens if t in INTEGRATIONS), "left")
    else:
        seen = set()
        for token in tokens:
            match = re.fullmatch(r"(part|beta)(\d+)", token)
            kind = (match.group(1) if match else "integration" if token in INTEGRATIONS
                    else "beta_min_rule" if token in BETA_MIN_RULES else None)
            if kind is None:
                raise _invalid(estimator_id, f"unknown tvo token {token!r}: expected part<n>, beta<b>, config1, "
                                             f"config2, left, right or trapz (the original code ignored unknown "
                                             f"tokens: reproduce_original=True does the same)")
            if kind in seen:
                raise _invalid(estimator_id, f"more than one {kind} token")
            seen.add(kind)
            if kind == "part":
                config["partitions"] = int(match.group(2))
            elif kind == "beta":
                beta = int(match.group(2))
            else:
                config[kind] = token
    config["log_beta_min"] = -float(beta)
    return config, beta


def _parse_tvo(estimator_id: str, reproduce_original: bool) -> Parsed:
    config, beta = _tvo_config(estimator_id, estimator_id.split("-")[1:], reproduce_original)
    parts = config["partitions"]
    if parts < 1:
        raise _invalid(estimator_id, "the TVO needs at least one partition")
    words = [w for w in (config["beta_min_rule"], config["integration"]) if w not in (None, "left")]
    family = "-".join(["tvo"] + words)
    details = ([f"{parts} part."] if parts != 2 else []) + ([f"beta_min=1e-{beta}"] if beta != 10 else []) + words
    key = "-".join(["tvo"] + ([f"part{parts}"] if parts != 2 else []) + ([f"beta{beta}"] if beta != 10 else [])
                   + words)
    label = "TVO" + (f" ({', '.join(details)})" if details else "")
    return (ThermodynamicVariationalObjective, config,
            EstimatorId(estimator_id, family, (("part", parts), ("beta", beta)), label, key))


def _parse_relaxed(estimator_id: str, reproduce_original: bool) -> Parsed:
    """``gumbel-softmax[-tau<t>]`` (alias ``concrete``), ``straight-through[-tau<t>]``."""
    match = _RELAXED.fullmatch(estimator_id)
    if not match:
        raise _invalid(estimator_id)
    temperature = None if match.group(2) is None else float(match.group(2))
    if temperature is not None and temperature <= 0:
        raise _invalid(estimator_id, "the temperature tau<t> must be > 0")
    straight_through = match.group(1) == "straight-through"
    family = "straight-through" if straight_through else "gumbel-softmax"
    suffix = "" if temperature is None else f"-tau{_text(temperature)}"
    label = ("straight-through" if straight_through else "Gumbel-softmax") + (
        "" if temperature is None else f" (tau={_text(temperature)})")
    parameters = () if temperature is None else (("tau", temperature),)
    return (Relaxed, {"temperature": temperature, "straight_through": straight_through},
            EstimatorId(estimator_id, family, parameters, label, family + suffix))


def _parse_exact(estimator_id: str) -> Parsed:
    cls, config = _EXACT[estimator_id]
    key = next(name for name, row in _EXACT.items() if row == (cls, config))  # the first spelling of an alias
    return cls, dict(config), EstimatorId(estimator_id, key, (), _LABELS.get(key, key), key)


# Ids with numeric parameters: parser by first token.
_FAMILY_PARSERS: Dict[str, Callable[[str, bool], Parsed]] = {
    "ovis": _parse_ovis, "tvo": _parse_tvo, "gumbel": _parse_relaxed, "concrete": _parse_relaxed,
    "straight": _parse_relaxed}


def _parse(estimator_id: str, reproduce_original: bool) -> Parsed:
    """``_parse_id``; its error names the ids probably meant (``_closest_ids``)."""
    try:
        return _parse_id(estimator_id, reproduce_original)
    except ValueError as error:
        close = _closest_ids(estimator_id)
        if not close:
            raise
        hint = f"; did you mean {' or '.join(map(repr, close))}?; valid forms:"
        raise ValueError(str(error).replace("; valid forms:", hint, 1)) from None


def _parse_id(estimator_id: str, reproduce_original: bool) -> Parsed:
    if not isinstance(estimator_id, str):
        raise _invalid(estimator_id, "expected a string")
    if estimator_id in _EXACT:
        return _parse_exact(estimator_id)
    parser = _FAMILY_PARSERS.get(estimator_id.split("-")[0])
    if parser is None:
        raise _invalid(estimator_id)
    return parser(estimator_id, reproduce_original)


def parse_estimator_id(estimator_id: str, reproduce_original: bool = False,
                       head_compat: Optional[bool] = None) -> Tuple[Type[GradientEstimator], Dict]:
    """Map an estimator identifier to ``(EstimatorClass, config)``; build the estimator with
    ``EstimatorClass(mc=..., iw=..., **config)``. Raises ``ValueError`` listing the valid forms
    for anything else. See the module docstring for the identifiers and ``reproduce_original``
    (``head_compat``: its earlier name)."""
    if head_compat is not None:
        reproduce_original = head_compat
    cls, config, _ = _parse(estimator_id, reproduce_original)
    return cls, config


def describe_estimator_id(estimator_id: str, reproduce_original: bool = False) -> EstimatorId:
    """The structured description of an identifier (family, typed parameters, label, canonical
    key) from the same parse as ``parse_estimator_id``; the same ``ValueError`` for bad ids."""
    return _parse(estimator_id, reproduce_original)[2]
