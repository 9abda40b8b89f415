"""The interface every model follows so that any estimator can train it.

A model never knows about particles: estimators repeat each data point ``mc * iw``
times along the batch axis and call ``forward`` once on the expanded batch.
Below, ``rows`` is the leading (expanded) batch size of whatever ``x`` the model is given.
"""
from typing import Dict, List, Optional

import torch
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
      named ``group/key`` (e.g. ``gmm/posterior_mse``); estimators average them per data point.

    Keyword arguments the estimator forwards (``alpha``, ``beta``, ``tau``, ...) must be
    accepted and may be ignored.

    ``forward(x, z=[...])`` evaluates ``qz``, ``pz`` and ``px`` at the given latents (top layer
    first) instead of sampling them.

    ``sample_from_prior(n, **kwargs)`` returns ``px``, ``z`` and ``pz`` for n prior samples.
    Models that support the sleep phase of reweighted wake-sleep also implement
    ``infer(x, z=None, **kwargs) -> [q(z_g | ...)]``: the inference distributions of every
    layer given x, evaluated at the given latents ``z`` for hierarchical q (the sleep phase
    calls ``sample_from_prior(n)``, then ``px.sample()``, then ``infer(x, z=z)``).
    """

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

    @staticmethod
    def sample(dist: Distribution, reparam: bool) -> Tensor:
        """Draw one sample, pathwise (``rsample``) or not (``sample``)."""
        return dist.rsample() if reparam else dist.sample()
