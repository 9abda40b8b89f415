"""Estimator identifiers: ``parse_estimator_id("ovis-gamma1") -> (OvisAsymptotic, {"gamma": 1.0, ...})``.

The class is then built with ``Estimator(mc=..., iw=..., **config)``. Identifiers (SPEC 2.2):

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
"""
import re
from typing import Dict, Optional, Tuple, Type

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
_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)"
_OVIS_MC = re.compile(rf"ovis-S{_NUMBER}(-exclusive)?")
_GAMMA = re.compile(rf"gamma{_NUMBER}")
_RELAXED = re.compile(rf"(gumbel-softmax|concrete|straight-through)(?:-tau{_NUMBER})?")


def _invalid(estimator_id, reason: str = "") -> ValueError:
    forms = "\n  ".join(VALID_FORMS)
    reason = f" ({reason})" if reason else ""
    return ValueError(f"unknown estimator id {estimator_id!r}{reason}; valid forms:\n  {forms}")


def _number(text: str):
    """``"50"`` -> 50 (int), ``"0.3"`` -> 0.3 (float)."""
    return float(text) if "." in text else int(text)


def _parse_ovis(estimator_id: str, reproduce_original: bool) -> Tuple[Type[GradientEstimator], Dict]:
    match = _OVIS_MC.fullmatch(estimator_id)
    if match:
        config = {"iw_aux": _number(match.group(1)), "exclusive": match.group(2) is not None}
        if reproduce_original:
            config["reproduce_original"] = True
        return OvisMonteCarlo, config
    tokens = estimator_id.split("-")[1:]
    gammas = [m for m in map(_GAMMA.fullmatch, tokens) if m]
    modes = [t for t in tokens if t in ("arithmetic", "geometric")]
    if len(gammas) != 1 or len(modes) > 1 or len(gammas) + len(modes) != len(tokens):
        raise _invalid(estimator_id, "an ovis id is ovis-S<S>[-exclusive] or ovis-gamma<g>[-arithmetic|-geometric]")
    config = {"gamma": float(gammas[0].group(1)), "leave_one_out": modes[0] if modes else "clipped"}
    if reproduce_original:
        config["reproduce_original"] = True
    return OvisAsymptotic, config


def _parse_tvo(estimator_id: str, reproduce_original: bool) -> Tuple[Type[GradientEstimator], Dict]:
    config = {"partitions": 2, "log_beta_min": -10.0, "beta_min_rule": None, "integration": "left"}
    tokens = estimator_id.split("-")[1:]
    if reproduce_original:  # the original's rules: substring tests, first integer, unknown tokens ignored
        for token in tokens:
            number = re.search(r"\d+", token)
            if "part" in token and number:
                config["partitions"] = int(number.group())
            elif "beta" in token and number:
                config["log_beta_min"] = -float(number.group())
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
                config["log_beta_min"] = -float(match.group(2))
            else:
                config[kind] = token
    if config["partitions"] < 1:
        raise _invalid(estimator_id, "the TVO needs at least one partition")
    return ThermodynamicVariationalObjective, config


def parse_estimator_id(estimator_id: str, reproduce_original: bool = False,
                       head_compat: Optional[bool] = None) -> Tuple[Type[GradientEstimator], Dict]:
    """Map an estimator identifier to ``(EstimatorClass, config)``; build the estimator with
    ``EstimatorClass(mc=..., iw=..., **config)``. Raises ``ValueError`` listing the valid forms
    for anything else. See the module docstring for the identifiers and ``reproduce_original``
    (``head_compat``: its earlier name)."""
    if head_compat is not None:
        reproduce_original = head_compat
    if not isinstance(estimator_id, str):
        raise _invalid(estimator_id, "expected a string")
    if estimator_id in _EXACT:
        cls, config = _EXACT[estimator_id]
        return cls, dict(config)
    if estimator_id.startswith("ovis-"):
        return _parse_ovis(estimator_id, reproduce_original)
    if estimator_id == "tvo" or estimator_id.startswith("tvo-"):
        return _parse_tvo(estimator_id, reproduce_original)
    match = _RELAXED.fullmatch(estimator_id)
    if match:
        temperature = None if match.group(2) is None else float(match.group(2))
        if temperature is not None and temperature <= 0:
            raise _invalid(estimator_id, "the temperature tau<t> must be > 0")
        return Relaxed, {"temperature": temperature, "straight_through": match.group(1) == "straight-through"}
    raise _invalid(estimator_id)
