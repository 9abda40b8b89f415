"""Latent distributions used by the models and the parametrisations that build them.

Every distribution is a ``torch.distributions.Distribution`` built with ``validate_args=False``
(argument checks would cost time on every training step). A ``LatentFamily`` turns the raw
output of a network, ``[rows, N * n_params]``, into a distribution over ``N`` latent units and
flattens samples back into network inputs.

Relaxed latents (temperature ``tau``) use torch's distributions, which keep the
``Distribution`` contract (``expand``, ``support``, ``log_prob`` a density of the samples drawn):

* categorical, ``tau = 0``: ``OneHotCategoricalLogits``, torch's
  ``OneHotCategoricalStraightThrough`` (one-hot samples; ``rsample`` passes the gradient of the
  probabilities straight through) without its hidden argument check;
* categorical, ``tau > 0``: ``RelaxedOneHotCategorical`` (Gumbel-softmax / Concrete; Jang et al.
  2017, Maddison et al. 2017): samples on the simplex, ``log_prob`` their density;
* Bernoulli, ``tau > 0``: ``RelaxedBernoulli`` (binary Concrete), samples in (0, 1);
  ``tau = 0``: ``BernoulliLogits`` (no ``rsample``).

``reproduce_original=True`` (the compatibility switch of ``ovis``, as in
``ovis.estimators.config.parse_estimator_id``) restores the original code's distributions
as follows: a categorical whose ``sample`` is always one-hot, whose ``rsample`` is the
straight-through Gumbel-softmax at temperature 0.5 when ``tau = 0`` (else the relaxed sample at
``tau``) and whose ``log_prob(v) = sum_c v_c log pi_c`` is applied to relaxed samples too (not
a density); Bernoulli latents ignore ``tau``.
"""
import math
from typing import Dict, Type

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import (Bernoulli, Categorical, Distribution, Normal, OneHotCategoricalStraightThrough,
                                 RelaxedBernoulli, RelaxedOneHotCategorical, constraints)

# Temperature of the original's straight-through Gumbel-softmax when tau = 0.
STRAIGHT_THROUGH_TEMPERATURE = 0.5


def distinct_rows(values: Tensor) -> Tensor:
    """``values[:1]`` when ``values`` repeats one row along its first dimension (an expanded
    prior parameter, stride 0), else ``values``: element-wise work on it then broadcasts."""
    return values[:1] if values.dim() > 1 and values.stride(0) == 0 else values


class BernoulliLogDensity(torch.autograd.Function):
    """``log p(v) = v * logits - softplus(logits)`` element-wise: the Bernoulli log-probability
    of ``v`` in {0, 1} (for relaxed values in [0, 1], the expression the relaxed estimators
    differentiate), in one forward and one backward pass over the values::

        d/d logits = g (v - sigmoid(logits)),     d/d v = g logits

    ``probs``: ``sigmoid(logits)`` when it was already computed (the sampler's), reused by the
    backward pass; None: recomputed there. A backward pass that is itself differentiated
    (``create_graph=True``) recomputes everything from the saved inputs with recorded operations,
    so that second derivatives are exact. Logits expanded along their first dimension (a
    shared prior) get their softplus once per distinct row. The same maths as
    ``-binary_cross_entropy_with_logits``, with fewer passes; ``benchmarks/log_density_step.py``
    times training steps with it and with torch's ``Bernoulli.log_prob`` (``benchmarks/results.md``).
    """

    @staticmethod
    def forward(ctx, logits: Tensor, value: Tensor, probs) -> Tensor:
        ctx.save_for_backward(logits, value, probs)
        softplus = F.softplus(distinct_rows(logits))  # [rows or 1, ...]
        if softplus.shape == logits.shape:
            return softplus.addcmul_(value, logits, value=-1).neg_()  # [rows, ...]: in place, no allocation
        return torch.addcmul(softplus, value, logits, value=-1).neg_()  # [rows, ...]

    @staticmethod
    def backward(ctx, grad: Tensor):
        logits, value, probs = ctx.saved_tensors
        grad_logits = grad_value = None
        if ctx.needs_input_grad[0] and torch.is_grad_enabled():
            # create_graph: this gradient is differentiated again (REBAR, RELAX): recorded ops only
            grad_logits = (value - torch.sigmoid(distinct_rows(logits))) * grad  # [rows, ...]
        elif ctx.needs_input_grad[0]:
            if probs is None:
                probs = torch.sigmoid(distinct_rows(logits))  # [rows or 1, ...]
                reuse = probs.shape == value.shape  # a fresh tensor of the result's shape: write into it
                grad_logits = torch.sub(value, probs, out=probs if reuse else None)  # [rows, ...]
            else:
                grad_logits = torch.sub(value, probs)  # [rows, ...]
            grad_logits.mul_(grad)
        if ctx.needs_input_grad[1]:
            grad_value = grad * logits  # [rows, ...]
        return grad_logits, grad_value, None


class BernoulliLogits(Bernoulli):
    """``torch.distributions.Bernoulli`` parametrised by ``logits``, tuned for training speed.

    The constructor skips ``broadcast_all`` (a single parameter needs no broadcasting),
    ``sample`` compares uniforms with the probabilities into a float tensor (one pass, no
    boolean intermediate) and ``log_prob`` is ``BernoulliLogDensity`` (reusing the sampler's
    probabilities) without broadcasting checks: ``value`` must have the shape of ``logits``.
    ``benchmarks/bernoulli_sampling.py`` times sampling against ``Bernoulli(logits=...).sample()``
    (``benchmarks/results.md``).
    """

    def __init__(self, logits: Tensor):
        self.logits = self._param = logits
        Distribution.__init__(self, logits.shape, validate_args=False)

    def expand(self, batch_shape, _instance=None) -> "BernoulliLogits":
        return BernoulliLogits(self.logits.expand(torch.Size(batch_shape)))

    def sample(self, sample_shape=torch.Size()) -> Tensor:
        shape = self._extended_shape(sample_shape)
        with torch.no_grad():
            uniforms = torch.rand(shape, dtype=self.logits.dtype, device=self.logits.device)
            return torch.lt(uniforms, self.probs.expand(shape), out=uniforms)  # [*shape]: 1. where u < p

    def log_prob(self, value: Tensor) -> Tensor:
        probs = self.__dict__.get("probs")  # torch's lazy property, set once sampled
        probs = None if probs is None or probs.shape != value.shape else probs.detach()
        return BernoulliLogDensity.apply(self.logits, value, probs)


HALF_LOG_TWO_PI = 0.5 * math.log(2 * math.pi)


class NormalLogDensity(torch.autograd.Function):
    """``log N(v; loc, exp(log_scale)) = -d^2 / 2 - log_scale - log(2 pi) / 2`` element-wise, with
    ``d = (v - loc) / scale``, in one forward pass and one backward pass per gradient::

        d/d loc = g d / scale = -d/d v,     d/d log_scale = g (d^2 - 1)

    ``scale = exp(log_scale)`` is given (the sampler's) and gets no gradient here: the
    gradient of the scale reaches ``log_scale``. A backward pass that is itself differentiated
    (``create_graph=True``) recomputes from the saved inputs with recorded operations. Same maths as
    ``Normal.log_prob`` (whose graph has seven nodes over the values); ``benchmarks/log_density_step.py``
    times training steps with each (``benchmarks/results.md``).
    """

    @staticmethod
    def forward(ctx, value: Tensor, loc: Tensor, log_scale: Tensor, scale: Tensor) -> Tensor:
        standardised = torch.sub(value, loc).div_(scale)  # [rows, ...]
        ctx.save_for_backward(value, loc, log_scale, scale, standardised)
        constant = torch.sub(-HALF_LOG_TWO_PI, distinct_rows(log_scale))  # [rows or 1, ...]
        return torch.addcmul(constant, standardised, standardised, value=-0.5)  # [rows, ...]

    @staticmethod
    def backward(ctx, grad: Tensor):
        value, loc, log_scale, scale, standardised = ctx.saved_tensors
        grad_value = grad_loc = grad_log_scale = None
        if torch.is_grad_enabled():  # create_graph: recompute with recorded operations (exact 2nd derivatives)
            scale = log_scale.exp()  # [rows, ...]
            standardised = (value - loc) / scale  # [rows, ...]
            grad_loc = standardised / scale * grad  # [rows, ...]
            grad_log_scale = (standardised * standardised - 1) * grad  # [rows, ...]
        else:
            if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
                grad_loc = torch.div(standardised, scale).mul_(grad)  # [rows, ...]
            if ctx.needs_input_grad[2]:
                grad_log_scale = torch.mul(standardised, standardised).sub_(1).mul_(grad)  # [rows, ...]
        grad_value = -grad_loc if ctx.needs_input_grad[0] else None
        return (grad_value, grad_loc if ctx.needs_input_grad[1] else None,
                grad_log_scale if ctx.needs_input_grad[2] else None, None)


class NormalLogScale(Normal):
    """``torch.distributions.Normal`` parametrised by ``loc`` and ``log_scale`` (same shape), tuned
    for training speed: no broadcasting checks, ``rsample`` is one ``addcmul`` over the standard
    normal draws (torch's own, same random stream), ``log_prob`` is ``NormalLogDensity``."""

    def __init__(self, loc: Tensor, log_scale: Tensor):
        self.loc, self.log_scale = loc, log_scale
        self.scale = log_scale.exp() if log_scale.dim() == 0 else distinct_rows(log_scale).exp().expand_as(log_scale)
        Distribution.__init__(self, loc.shape, validate_args=False)

    def expand(self, batch_shape, _instance=None) -> "NormalLogScale":
        shape = torch.Size(batch_shape)
        return NormalLogScale(self.loc.expand(shape), self.log_scale.expand(shape))

    def rsample(self, sample_shape=torch.Size()) -> Tensor:
        shape = self._extended_shape(sample_shape)
        noise = torch.empty(shape, dtype=self.loc.dtype, device=self.loc.device).normal_()  # [*shape]
        return torch.addcmul(self.loc.expand(shape), noise, self.scale.expand(shape))  # [*shape]

    def log_prob(self, value: Tensor) -> Tensor:
        return NormalLogDensity.apply(value, self.loc, self.log_scale, self.scale)


class OneHotCategoricalLogits(OneHotCategoricalStraightThrough):
    """``torch.distributions.OneHotCategoricalStraightThrough(logits=...)`` whose inner
    ``Categorical`` skips argument validation too: torch's constructor builds it with the global
    default (on unless Python runs with ``-O``), whose check of the logits reads a boolean back
    from the device, a host synchronisation on every construction on a GPU (found by
    ``tests/test_device_placement.py``, which runs every model on the ``meta`` device)."""

    def __init__(self, logits: Tensor):
        self._categorical = Categorical(logits=logits, validate_args=False)
        Distribution.__init__(self, logits.shape[:-1], logits.shape[-1:], validate_args=False)

    def expand(self, batch_shape, _instance=None) -> "OneHotCategoricalLogits":
        return OneHotCategoricalLogits(self.logits.expand(torch.Size(batch_shape) + self.event_shape))


class GumbelSoftmaxCategorical(Distribution):
    """The original code's categorical (``reproduce_original=True``) over the last axis.

    ``logits``: ``[*batch, C]`` (normalised to log-probabilities here). ``sample()``: exact
    one-hot draw (Gumbel-max), no gradient. ``rsample()``: ``tau == 0`` -> straight-through
    Gumbel-softmax (hard one-hot forward, gradient of the soft sample at temperature 0.5);
    ``tau > 0`` -> relaxed soft sample at temperature ``tau``. ``log_prob(v) = sum_c v_c log pi_c``
    -> ``[*batch]``: the exact log-probability of a one-hot ``v``, a surrogate (not a density)
    for relaxed samples.
    """

    arg_constraints = {"logits": constraints.real_vector}
    has_rsample = True

    def __init__(self, logits: Tensor, tau: float = 0.0, validate_args=False):
        if tau < 0:
            raise ValueError(f"Gumbel-softmax temperature tau must be >= 0, got {tau}")
        self.logits = logits - logits.logsumexp(-1, keepdim=True)  # [*batch, C]
        self.tau = float(tau)
        super().__init__(batch_shape=logits.shape[:-1], event_shape=logits.shape[-1:],
                         validate_args=False)

    @property
    def support(self):
        """One-hot vectors; the simplex when ``rsample`` relaxes (``tau > 0``)."""
        return constraints.one_hot if self.tau == 0 else constraints.simplex

    def expand(self, batch_shape, _instance=None) -> "GumbelSoftmaxCategorical":
        return GumbelSoftmaxCategorical(self.logits.expand(torch.Size(batch_shape) + self.event_shape), self.tau)

    @property
    def probs(self) -> Tensor:
        return self.logits.exp()

    @property
    def mean(self) -> Tensor:
        return self.probs

    def sample(self, sample_shape=torch.Size()) -> Tensor:
        with torch.no_grad():
            return self._gumbel_softmax(sample_shape, STRAIGHT_THROUGH_TEMPERATURE, hard=True)

    def rsample(self, sample_shape=torch.Size()) -> Tensor:
        if self.tau == 0:
            return self._gumbel_softmax(sample_shape, STRAIGHT_THROUGH_TEMPERATURE, hard=True)
        return self._gumbel_softmax(sample_shape, self.tau, hard=False)

    def _gumbel_softmax(self, sample_shape, temperature: float, hard: bool) -> Tensor:
        logits = self.logits.expand(torch.Size(sample_shape) + self.logits.shape)
        return F.gumbel_softmax(logits, tau=temperature, hard=hard, dim=-1)

    def log_prob(self, value: Tensor) -> Tensor:
        return (value * self.logits).sum(-1)

    def entropy(self) -> Tensor:
        return -(self.probs * self.logits).sum(-1)


class LatentFamily:
    """How a layer of ``N`` latent units is parametrised by a network output.

    ``n_params``: number of network outputs per unit; ``unit_size``: size of one unit's sample
    once flattened (1, or C for one-hot categorical); ``parameter_major``: the family works on
    each parameter separately (location, log scale), so a layer hands it ``params`` whose
    units of one parameter are contiguous (same values, another memory layout; the network's
    output order is unchanged). Subclasses define ``distribution``.
    """

    n_params: int = 1
    unit_size: int = 1
    reparameterisable: bool = False
    latent_type = ""  # "gaussian", "bernoulli" or "categorical" (estimators' latent_types)
    parameter_major: bool = False

    def __init__(self, reproduce_original: bool = False):
        self.reproduce_original = bool(reproduce_original)

    def distribution(self, params: Tensor, tau: float = 0.0) -> Distribution:
        """``params``: ``[rows, N, n_params]`` -> distribution of batch shape ``[rows, N]``."""
        # Interface method: each latent family (normal, Bernoulli, categorical) builds its own.
        raise NotImplementedError(f"latent family {type(self).__name__} must define distribution(params, tau)")

    def flatten(self, z: Tensor) -> Tensor:
        """Sample ``[rows, N(, C)]`` -> network input ``[rows, N * unit_size]``."""
        return z.flatten(1)

    def uninformative_params(self, n_units: int) -> Tensor:
        """Parameters ``[n_units, n_params]`` of the standard prior N(0, 1), Bernoulli(1/2)
        or uniform categorical: all zeros in every parametrisation below."""
        return torch.zeros(n_units, self.n_params)


class NormalFamily(LatentFamily):
    """Diagonal Gaussian from (mean, log standard deviation)."""
    latent_type = "gaussian"

    n_params = 2
    reparameterisable = True
    parameter_major = True

    def distribution(self, params: Tensor, tau: float = 0.0) -> Distribution:
        mean, log_std = params.unbind(-1)  # one backward node for both (indexing allocates a gradient each)
        return NormalLogScale(mean, log_std)


class BernoulliFamily(LatentFamily):
    """Independent Bernoulli units from logits (no pathwise gradient); relaxed when ``tau > 0``."""
    latent_type = "bernoulli"

    n_params = 1

    def distribution(self, params: Tensor, tau: float = 0.0) -> Distribution:
        logits = params.squeeze(-1)  # [rows, N]: a view, its gradient is a reshape, not a copy
        if tau > 0 and not self.reproduce_original:
            return RelaxedBernoulli(logits.new_tensor(tau), logits=logits, validate_args=False)
        return BernoulliLogits(logits)


class CategoricalFamily(LatentFamily):
    """One-hot categorical units with ``n_categories`` classes: straight-through ``rsample`` when
    ``tau = 0``, relaxed (Gumbel-softmax) samples when ``tau > 0``."""
    latent_type = "categorical"

    reparameterisable = True

    def __init__(self, n_categories: int, reproduce_original: bool = False):
        super().__init__(reproduce_original)
        self.n_params = n_categories
        self.unit_size = n_categories

    def distribution(self, params: Tensor, tau: float = 0.0) -> Distribution:
        """``params``: logits ``[rows, N, C]``."""
        if self.reproduce_original:
            return GumbelSoftmaxCategorical(params, tau=tau)
        if tau < 0:
            raise ValueError(f"relaxation temperature tau must be >= 0, got {tau}")
        if tau == 0:
            return OneHotCategoricalLogits(params)
        return RelaxedOneHotCategorical(params.new_tensor(tau), logits=params, validate_args=False)


LATENT_FAMILIES: Dict[str, Type[LatentFamily]] = {
    "normal": NormalFamily,
    "bernoulli": BernoulliFamily,
    "categorical": CategoricalFamily,
}


def latent_family(prior: str, n_categories: int, reproduce_original: bool = False) -> LatentFamily:
    """Family by name (``normal``, ``bernoulli``, ``categorical``); ``reproduce_original``: the
    original code's relaxed distributions (module docstring)."""
    if prior == "categorical":
        return CategoricalFamily(n_categories, reproduce_original)
    if prior not in LATENT_FAMILIES:
        raise ValueError(f"prior={prior!r} is not a latent family; allowed: {sorted(LATENT_FAMILIES)}")
    return LATENT_FAMILIES[prior](reproduce_original)


def bernoulli_logit_bias(mean: Tensor, clip: float = 1e-4) -> Tensor:
    """``logit(clip(mean, clip, 1 - clip))``: the output bias that makes an untrained decoder
    predict the data mean (Burda et al. 2016)."""
    mean = mean.clamp(clip, 1.0 - clip)
    return mean.log() - (-mean).log1p()

