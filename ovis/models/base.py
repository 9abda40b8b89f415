"""The interface every model follows so that any estimator can train it.

Estimators call ``forward`` once per step for all particles. A model that declares
``accepts_particles`` receives ``x [bs, *D]`` once with ``particles=n`` and returns ``bs * n``
rows; any other model receives ``x`` repeated ``n`` times along the batch axis. Below, ``rows``
is the leading batch size of the outputs. See docs/DESIGN.md, section 1b.
"""
from typing import Dict, Optional, Tuple

from torch import Tensor, nn
from torch.distributions import Distribution


class TemplateModel(nn.Module):
    """Base class of latent variable models p(x, z) = p(x|z) p(z) with an inference network q(z|x).

    ``forward(x, reparam=False, **kwargs)`` returns a dict:

    * ``px``: distribution p(x|z); ``px.log_prob(x)`` has shape ``[rows, ...]`` and the
      estimator sums every dimension after the first.
    * ``z``: list of latent samples, one tensor ``[rows, ...]`` per stochastic layer
      (top layer first). ``reparam=True`` samples with ``rsample`` (pathwise gradients),
      otherwise with ``sample`` (no gradient through z).
    * ``qz``: list of distributions q(z_g | x, ...), same length and order as ``z``.
    * ``pz``: list of prior / conditional prior distributions p(z_g | ...), same order.
    * ``diagnostics`` (optional): dict ``name -> Tensor`` of shape ``[rows]`` or scalar,
      named ``group/key`` (e.g. ``gmm/posterior_distance``); estimators average them per data point.

    Keyword arguments the estimator forwards (``alpha``, ``beta``, ``tau``, ...) must be
    accepted and may be ignored.

    ``forward(x, z=[...])`` evaluates ``qz``, ``pz`` and ``px`` at the given latents (top layer
    first) instead of sampling them.

    Extensions (docs/DESIGN.md, section 1b), declared by class attributes:

    * ``accepts_sampler = True``: ``forward(x, sampler=...)`` draws every latent group through
      ``sampler(group, q) -> z`` (``ovis.models.sampling``), in sampling order, and uses what it
      returns downstream; log-densities must accept relaxed values in [0, 1] for Bernoulli
      latents. Needed by the estimators that control the noise of each draw (ARM, DisARM,
      REBAR, RELAX). ``reparam=True`` and ``z=`` are shorthands for ``Sample(True)``, ``Given(z)``.
    * ``accepts_particles = True``: ``forward(x, particles=n)`` with ``x [bs, *D]`` given once
      returns ``rows = bs * n`` rows, data point slowest; what depends on ``x`` alone is computed
      once per data point.
    * ``inference_network_prefixes``: the parameter-name prefixes of q's parameters (what the
      gradient analysis looks at by default).

    ``sample_from_prior(n, **kwargs)`` returns ``px``, ``z`` and ``pz`` for n prior samples.
    Models that support the sleep phase of reweighted wake-sleep also implement
    ``infer(x, z=None, **kwargs) -> [q(z_g | ...)]``: the inference distributions of every
    layer given x, evaluated at the given latents ``z`` for hierarchical q (the sleep phase
    calls ``sample_from_prior(n)``, then ``px.sample()``, then ``infer(x, z=z)``).
    """

    accepts_sampler = False
    accepts_particles = False
    inference_network_prefixes: Tuple[str, ...] = ("inference_network.",)

    def forward(self, x: Tensor, reparam: bool = False, **kwargs) -> Dict:
        # Interface method: every model defines its own generative and inference passes.
        raise NotImplementedError(f"{type(self).__name__} must define forward(x, reparam=False, **kwargs) "
                                  f"returning px, z, qz and pz (see TemplateModel)")

    def sample_from_prior(self, n: int, **kwargs) -> Dict:
        # Optional for users' models: only prior-sample images and the sleep phase need it.
        raise NotImplementedError(f"{type(self).__name__} does not define sample_from_prior(n); it is needed "
                                  f"for prior samples and the wake-sleep estimator")

    @property
    def supports_reparam(self) -> bool:
        """Whether every latent layer can be sampled with ``rsample`` (pathwise estimators)."""
        return False

    # "gaussian", "bernoulli" or "categorical": estimators refuse types outside their latent_types
    # before any work (None: not declared, not checked)
    latent_type: Optional[str] = None

    @staticmethod
    def sample(dist: Distribution, reparam: bool) -> Tensor:
        """Draw one sample, pathwise (``rsample``) or not (``sample``)."""
        return dist.rsample() if reparam else dist.sample()
