"""Latent distributions used by the models and the parametrisations that build them.

Every distribution is a ``torch.distributions.Distribution`` built with ``validate_args=False``
(argument checks would cost time on every training step). A ``LatentFamily`` turns the raw
output of a network, ``[rows, N * n_params]``, into a distribution over ``N`` latent units and
flattens samples back into network inputs.
"""
from typing import Dict, Type

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Bernoulli, Distribution, Normal, constraints

# Temperature of the straight-through Gumbel-softmax used when tau = 0 (SPEC 3.1).
STRAIGHT_THROUGH_TEMPERATURE = 0.5


class BernoulliLogits(Bernoulli):
    """``torch.distributions.Bernoulli`` parametrised by ``logits``, tuned for training speed.

    The constructor skips ``broadcast_all`` (a single parameter needs no broadcasting),
    ``sample`` compares uniforms with the probabilities (``torch.bernoulli`` is ~4x slower
    on CPU) and ``log_prob`` is ``-binary_cross_entropy_with_logits`` without broadcasting
    checks: ``value`` must have the shape of ``logits``.
    """

    def __init__(self, logits: Tensor):
        self.logits = self._param = logits
        Distribution.__init__(self, logits.shape, validate_args=False)

    def sample(self, sample_shape=torch.Size()) -> Tensor:
        shape = self._extended_shape(sample_shape)
        with torch.no_grad():
            uniforms = torch.rand(shape, dtype=self.logits.dtype, device=self.logits.device)
            return (uniforms < self.probs.expand(shape)).to(self.logits.dtype)

    def log_prob(self, value: Tensor) -> Tensor:
        # the weight -1 negates inside the kernel: a pass less forward and backward than ``-bce``
        minus_one = torch.full((), -1.0, dtype=self.logits.dtype, device=self.logits.device)
        return F.binary_cross_entropy_with_logits(self.logits, value, weight=minus_one, reduction="none")


class GumbelSoftmaxCategorical(Distribution):
    """Categorical over the last axis with one-hot samples and Gumbel-softmax ``rsample``.

    Jang et al. 2017 / Maddison et al. 2017. ``logits``: ``[*batch, C]`` (normalised to
    log-probabilities here). Samples are one-hot vectors ``[*batch, C]``.

    * ``sample()``: exact one-hot draw (Gumbel-max), no gradient.
    * ``rsample()``: ``tau == 0`` -> straight-through estimator (hard one-hot forward,
      gradient of the soft sample at temperature 0.5); ``tau > 0`` -> relaxed soft sample
      at temperature ``tau``.
    * ``log_prob(v) = sum_c v_c log pi_c`` -> ``[*batch]``; for one-hot ``v`` this is the
      exact categorical log-probability, for relaxed samples it is the usual surrogate.
    """

    arg_constraints = {"logits": constraints.real_vector}
    support = constraints.one_hot
    has_rsample = True

    def __init__(self, logits: Tensor, tau: float = 0.0, validate_args=False):
        if tau < 0:
            raise ValueError(f"Gumbel-softmax temperature tau must be >= 0, got {tau}")
        self.logits = logits - logits.logsumexp(-1, keepdim=True)  # [*batch, C]
        self.tau = float(tau)
        super().__init__(batch_shape=logits.shape[:-1], event_shape=logits.shape[-1:],
                         validate_args=False)

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
    once flattened (1, or C for one-hot categorical). Subclasses define ``distribution``.
    """

    n_params: int = 1
    unit_size: int = 1
    reparameterisable: bool = False

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

    n_params = 2
    reparameterisable = True

    def distribution(self, params: Tensor, tau: float = 0.0) -> Distribution:
        mean, log_std = params.unbind(-1)  # one backward node for both (indexing allocates a gradient each)
        return Normal(mean, log_std.exp(), validate_args=False)


class BernoulliFamily(LatentFamily):
    """Independent Bernoulli units from logits (no pathwise gradient)."""

    n_params = 1

    def distribution(self, params: Tensor, tau: float = 0.0) -> Distribution:
        return BernoulliLogits(params.squeeze(-1))  # a view: its gradient is a reshape, not a copy


class CategoricalFamily(LatentFamily):
    """One-hot categorical units with ``n_categories`` classes (Gumbel-softmax ``rsample``)."""

    reparameterisable = True

    def __init__(self, n_categories: int):
        self.n_params = n_categories
        self.unit_size = n_categories

    def distribution(self, params: Tensor, tau: float = 0.0) -> Distribution:
        return GumbelSoftmaxCategorical(params, tau=tau)


LATENT_FAMILIES: Dict[str, Type[LatentFamily]] = {
    "normal": NormalFamily,
    "bernoulli": BernoulliFamily,
    "categorical": CategoricalFamily,
}


def latent_family(prior: str, n_categories: int) -> LatentFamily:
    """Family by name (``normal``, ``bernoulli``, ``categorical``)."""
    if prior == "categorical":
        return CategoricalFamily(n_categories)
    if prior not in LATENT_FAMILIES:
        raise ValueError(f"prior={prior!r} is not a latent family; allowed: {sorted(LATENT_FAMILIES)}")
    return LATENT_FAMILIES[prior]()


def bernoulli_logit_bias(mean: Tensor, clip: float = 1e-4) -> Tensor:
    """``logit(clip(mean, clip, 1 - clip))``: the output bias that makes an untrained decoder
    predict the data mean (Burda et al. 2016; SPEC 3.2)."""
    mean = mean.clamp(clip, 1.0 - clip)
    return mean.log() - (-mean).log1p()

