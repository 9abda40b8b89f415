"""Relaxed (biased) pathwise estimators for discrete latents: the Concrete / Gumbel-softmax
relaxation (Maddison, Mnih & Teh, 2017; Jang, Gu & Poole, 2017) and the straight-through
Gumbel estimator (Bengio et al., 2013; Jang et al., 2017).

``gumbel-softmax`` (alias ``concrete``): every latent is replaced by its relaxation at
temperature ``lam`` (Bernoulli: ``sigmoid((a + logit u) / lam)``, categorical: the Gumbel-softmax
sample) and the model evaluates its log-densities at the relaxed values (Bernoulli:
``z log p + (1 - z) log(1 - p)``); the loss is ``-L`` of the relaxed particles, differentiated
along the path. Biased for the gradient of L_K for any ``lam > 0``; the bias vanishes as
``lam -> 0`` (the variance grows). ``straight-through``: the hard sample forward, the gradient of
the relaxation backward; biased at every temperature.

Temperature: the id's ``-tau<t>`` if given, else the runtime ``tau`` if > 0, else 0.5.
"""
import re
from typing import Dict, Optional, Tuple

from torch import Tensor, nn

from .particles import Particles, RuntimeOptions, iw_bound
from .controlled import ControlledNoiseEstimator
from .relaxations import RelaxedSampler
from .registry import EstimatorFamily, EstimatorId, Parsed, Style, invalid, number_text

DEFAULT_TEMPERATURE = 0.5


class Relaxed(ControlledNoiseEstimator):
    """Concrete / Gumbel-softmax (``straight_through=False``) or straight-through Gumbel
    (module docstring). One model evaluation per step; the model must draw its latents through the
    relaxing sampler, so the estimator cannot run from log-densities alone (``needs_model``)."""
    latent_types = frozenset({"bernoulli", "categorical"})
    unbiased_for = "biased"  # the bias vanishes as the temperature goes to 0
    noise_quadrature_nodes = 32  # smooth in the noise, steep at low temperatures

    def model_evaluations(self, latent_size: Optional[int] = None) -> int:
        return self.mc * self.iw

    def __init__(self, mc: int = 1, iw: int = 1, temperature: Optional[float] = None,
                 straight_through: bool = False, **options):
        super().__init__(mc, iw, **options)
        if temperature is not None and not temperature > 0:
            raise ValueError(f"temperature={temperature!r}: the relaxation temperature must be > 0")
        self.temperature, self.straight_through = temperature, bool(straight_through)

    def probe_sampler(self):
        return RelaxedSampler(DEFAULT_TEMPERATURE, straight_through=self.straight_through)

    def sample(self, model: nn.Module, x: Tensor, options: RuntimeOptions) -> Particles:
        temperature = self.temperature or options.tau or DEFAULT_TEMPERATURE
        noise = None if self._fixed is None else self._fixed["u"]
        return self.evaluate(model, x, RelaxedSampler(temperature, noise, self.straight_through), options)

    def surrogate(self, model: nn.Module, x: Tensor, particles: Particles,
                  options: RuntimeOptions) -> Tuple[Tensor, Dict[str, Tensor]]:
        return -iw_bound(particles.log_weights(options), options.alpha).mean(1), {}

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, temperature={self.temperature}, straight_through={self.straight_through}"


_RELAXED = re.compile(r"(gumbel-softmax|concrete|straight-through)(?:-tau(\d+(?:\.\d*)?|\.\d+))?")


def parse_relaxed_id(estimator_id: str, reproduce_original: bool) -> Parsed:
    """``gumbel-softmax[-tau<t>]`` (alias ``concrete``), ``straight-through[-tau<t>]``."""
    match = _RELAXED.fullmatch(estimator_id)
    if not match:
        raise invalid(estimator_id)
    temperature = None if match.group(2) is None else float(match.group(2))
    if temperature is not None and temperature <= 0:
        raise invalid(estimator_id, "the temperature tau<t> must be > 0")
    straight_through = match.group(1) == "straight-through"
    family = "straight-through" if straight_through else "gumbel-softmax"
    suffix = "" if temperature is None else f"-tau{number_text(temperature)}"
    label = ("straight-through" if straight_through else "Gumbel-softmax") + (
        "" if temperature is None else f" (tau={number_text(temperature)})")
    parameters = () if temperature is None else (("tau", temperature),)
    return (Relaxed, {"temperature": temperature, "straight_through": straight_through},
            EstimatorId(estimator_id, family, parameters, label, family + suffix))


def relaxed_style(description: EstimatorId) -> Style:
    """Cyan (Gumbel-softmax) or dark teal (straight-through); lower temperatures darker."""
    tau = description.parameter("tau")
    straight_through = description.family == "straight-through"
    shade = 0.0 if tau is None else min(max(0.5 - float(tau), -0.4), 0.4)
    return Style("#0b6e7a" if straight_through else "#17becf", (9, int(straight_through), 0, tau or 0.0),
                 shade=shade)


FAMILIES = (EstimatorFamily(
    name="relaxed", grammar="gumbel-softmax[-tau<t>] | concrete[-tau<t>] | straight-through[-tau<t>]",
    parse=parse_relaxed_id, prefixes=("gumbel", "concrete", "straight"), label="relaxed", style=relaxed_style,
    examples=("gumbel-softmax", "gumbel-softmax-tau0.3", "concrete", "straight-through"),
    table=(
        (
            "`gumbel-softmax[-tau<t>]` (`concrete`), `straight-through[-tau<t>]`",
            "relaxed / straight-through pathwise gradients",
            "biased; the bias shrinks with τ",
        ),
    )),)
