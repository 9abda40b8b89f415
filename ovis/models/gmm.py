"""One-dimensional Gaussian mixture model of Le et al. 2019, "Revisiting reweighted
wake-sleep for models with stochastic control flow".

    p_theta(z = c) = softmax(theta)_c,   p(x | z = c) = N(x; 10 c, 5^2),   c = 0 .. C-1
    q_phi(z | x) = Categorical(softmax(eta_phi(x))),  eta_phi: Linear(1, hdim) - tanh - Linear(hdim, C)

The data come from the true model theta*_c = log(5 + c) (pi*_c proportional to 5 + c); its
exact posterior p*(c | x) = softmax_c(theta*_c + log N(x; 10 c, 25)) gives the diagnostics
``gmm/prior_distance`` = ||softmax(theta) - pi*||_2 (scalar) and ``gmm/posterior_distance`` =
||q_phi(. | x) - p*(. | x)||_2 per row (Euclidean distances, not squared; the original code
called them ``gmm/prior_mse`` and ``gmm/posterior_mse``).
"""
from typing import Dict, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Categorical, Normal

from .base import TemplateModel
from .sampling import LatentSampler, check_particles, expand_to_particles, resolve_sampler

MEAN_SPACING = 10.0
COMPONENT_STD = 5.0


def true_logits(n_clusters: int) -> Tensor:
    """theta*_c = log(5 + c), ``[C]``."""
    return torch.log(5.0 + torch.arange(n_clusters, dtype=torch.float32))


def component_means(n_clusters: int) -> Tensor:
    """10 c, ``[C]``."""
    return MEAN_SPACING * torch.arange(n_clusters, dtype=torch.float32)


def mixture_log_joint(x: Tensor, prior_logits: Tensor, means: Tensor) -> Tensor:
    """log p(x, z = c) for every c: ``x [rows, 1]``, ``prior_logits [C]``, component ``means [C]``
    -> ``[rows, C]``."""
    return F.log_softmax(prior_logits, -1) + Normal(means, COMPONENT_STD, validate_args=False).log_prob(x)


def sample_mixture(n: int, prior_logits: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
    """``n`` draws of x from the mixture with prior logits ``[C]`` -> ``[n, 1]``."""
    probs = F.softmax(prior_logits.detach().cpu(), -1)
    clusters = torch.multinomial(probs, n, replacement=True, generator=generator)  # [n]
    noise = torch.randn(n, generator=generator)  # [n]
    x = MEAN_SPACING * clusters.float() + COMPONENT_STD * noise
    return x.unsqueeze(-1)


class GaussianMixtureModel(TemplateModel):
    """Args: ``x_shape = (1,)``; ``N``: number of clusters C; ``hdim``: width of q's hidden
    layer. Parameters: ``log_theta [C]`` (prior logits, start at 0) and ``phi.*``."""

    latent_type = "categorical"

    def __init__(self, x_shape: Sequence[int] = (1,), N: int = 20, hdim: int = 16):
        super().__init__()
        if tuple(x_shape) != (1,):
            raise ValueError(f"gmm models scalar data, x_shape must be (1,), got {tuple(x_shape)}")
        self.n_clusters = N
        self.log_theta = nn.Parameter(torch.zeros(N))  # [C]
        self.phi = nn.Sequential(nn.Linear(1, hdim), nn.Tanh(), nn.Linear(hdim, N))
        self.register_buffer("true_logits", true_logits(N))  # [C]
        self.register_buffer("means", component_means(N))  # [C]

    def q(self, x: Tensor) -> Categorical:
        return Categorical(logits=self.phi(x), validate_args=False)  # batch [rows]

    def prior(self, rows: int) -> Categorical:
        return Categorical(logits=self.log_theta.expand(rows, self.n_clusters), validate_args=False)

    def likelihood(self, z: Tensor) -> Normal:
        loc = self.means[z].unsqueeze(-1)  # [rows, 1]
        return Normal(loc, torch.full_like(loc, COMPONENT_STD), validate_args=False)

    accepts_sampler = True
    accepts_particles = True
    inference_network_prefixes = ("phi.",)

    def forward(self, x: Tensor, reparam: bool = False, z: Optional[list] = None,
                sampler: Optional[LatentSampler] = None, particles: Optional[int] = None, **kwargs) -> Dict:
        """``x``: ``[rows, 1]``, or ``[bs, 1]`` with ``particles`` (rows = bs * particles);
        ``z``: optional given cluster indices ``[z [rows]]``; ``sampler``: see ``ovis.models.sampling``."""
        if reparam:
            raise ValueError("gmm has a discrete latent: no pathwise (reparam=True) samples")
        check_particles(particles)
        q_once = self.q(x)  # batch [bs or rows]
        qz = Categorical(logits=expand_to_particles(q_once.logits, particles), validate_args=False)  # [rows]
        z_sample = resolve_sampler(sampler, False, z)(0, qz)  # [rows]
        # diagnostics once per data point: the estimator averages them per data point anyway
        return {"px": self.likelihood(z_sample), "z": [z_sample], "qz": [qz],
                "pz": [self.prior(qz.batch_shape[0])], "diagnostics": self._diagnostics(x, q_once)}

    def infer(self, x: Tensor, **kwargs) -> list:
        return [self.q(x)]

    @torch.no_grad()
    def sample_from_prior(self, n: int, **kwargs) -> Dict:
        pz = self.prior(n)
        z = pz.sample()  # [n]
        return {"px": self.likelihood(z), "z": [z], "pz": [pz]}

    def true_posterior(self, x: Tensor) -> Tensor:
        """p*(c | x) under the data-generating model, ``[rows, C]`` (rows sum to 1)."""
        return F.softmax(mixture_log_joint(x, self.true_logits, self.means), -1)

    def posterior(self, x: Tensor) -> Tensor:
        """p_theta(c | x) under the current prior, ``[rows, C]``."""
        return F.softmax(mixture_log_joint(x, self.log_theta, self.means), -1)

    def log_marginal(self, x: Tensor) -> Tensor:
        """log p_theta(x), ``[rows]``."""
        return mixture_log_joint(x, self.log_theta, self.means).logsumexp(-1)

    @torch.no_grad()
    def _diagnostics(self, x: Tensor, qz: Categorical) -> Dict[str, Tensor]:
        prior_distance = (F.softmax(self.log_theta, -1) - F.softmax(self.true_logits, -1)).norm()
        posterior_distance = (qz.probs - self.true_posterior(x)).norm(dim=-1)  # [rows]
        return {"gmm/prior_distance": prior_distance, "gmm/posterior_distance": posterior_distance}
