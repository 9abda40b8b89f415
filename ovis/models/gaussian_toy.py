"""Linear Gaussian model of Rainforth et al. 2018, "Tighter variational bounds are not
necessarily better" (section 4), with its closed forms.

    p(z) = N(mu, I_D),  p(x | z) = N(z, I_D)  =>  p(x) = N(mu, 2 I_D),  p(z | x) = N((x + mu) / 2, I_D / 2)
    q(z | x) = N(x A + b, q_std^2 I_D)

Given a data set with mean ``x_mean`` the maximum-likelihood prior mean is ``mu* = x_mean`` and
the posterior mean is matched by ``A* = I / 2``, ``b* = mu* / 2`` (this zeroes the ELBO
gradient for any fixed ``q_std``). ``q_std`` defaults to 2/3, the value behind the published
OVIS figures; Rainforth et al. state a variance of 2/3 (``q_std = sqrt(2/3)``).
"""
import math
from typing import Dict, Optional, Sequence

import torch
from torch import Tensor, nn
from torch.distributions import Normal

from .base import TemplateModel
from .sampling import LatentSampler, check_particles, expand_to_particles, resolve_sampler

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


class GaussianToyModel(TemplateModel):
    """Args: ``x_shape = (D,)``; ``x_mean``: data mean ``[D]`` (defines the optimum);
    ``q_std``: fixed standard deviation of q. Parameters ``A [D, D]``, ``b [D]``, ``mu [D]``
    start i.i.d. U[1.5, 2.5] from the global RNG.

    Diagnostics (scalars): ``gaussian_toy/distance_A`` = ||A - A*||_F, ``distance_b`` = ||b - b*||,
    ``distance_mu`` = ||mu - mu*||, ``distance_phi`` = ||(A, b) - (A*, b*)||: Euclidean distances
    (not squared, not averaged), which the original code called ``mse_A``, ``mse_b``...
    """

    def __init__(self, x_shape: Sequence[int], x_mean: Optional[Tensor] = None, q_std: float = 2 / 3):
        super().__init__()
        if len(x_shape) != 1:
            raise ValueError(f"gaussian-toy expects flat data points of shape (D,), got x_shape={tuple(x_shape)}")
        if x_mean is None:
            raise ValueError("gaussian-toy needs x_mean (the data mean [D]) to define its optimal parameters")
        if not q_std > 0:
            raise ValueError(f"q_std must be > 0, got {q_std}")
        D = int(x_shape[0])
        optimal_mu = torch.as_tensor(x_mean, dtype=torch.float32).flatten().clone()
        if optimal_mu.numel() != D:
            raise ValueError(f"x_mean has {optimal_mu.numel()} values, expected D={D}")
        self.D = D
        self.A = nn.Parameter(torch.rand(D, D) + 1.5)  # [D, D]
        self.b = nn.Parameter(torch.rand(D) + 1.5)  # [D]
        self.mu = nn.Parameter(torch.rand(D) + 1.5)  # [D]
        self.register_buffer("q_std", torch.tensor(float(q_std)))
        self.register_buffer("optimal_A", 0.5 * torch.eye(D))
        self.register_buffer("optimal_b", 0.5 * optimal_mu)
        self.register_buffer("optimal_mu", optimal_mu)

    latent_type = "gaussian"

    @property
    def supports_reparam(self) -> bool:
        return True

    # --- model ------------------------------------------------------------------------------
    def q(self, x: Tensor) -> Normal:
        """q(z | x): ``x [rows, D]`` -> Normal of batch shape ``[rows, D]``."""
        return Normal(x @ self.A + self.b, self.q_std.expand(x.shape[0], self.D), validate_args=False)

    def prior(self, rows: int) -> Normal:
        return Normal(self.mu.expand(rows, self.D), torch.ones_like(self.mu).expand(rows, self.D),
                      validate_args=False)

    def likelihood(self, z: Tensor) -> Normal:
        return Normal(z, torch.ones_like(z), validate_args=False)

    accepts_sampler = True
    accepts_particles = True
    inference_network_prefixes = ("A", "b")

    def forward(self, x: Tensor, reparam: bool = False, z: Optional[list] = None,
                sampler: Optional[LatentSampler] = None, particles: Optional[int] = None, **kwargs) -> Dict:
        """``x``: ``[rows, D]``, or ``[bs, D]`` with ``particles`` (rows = bs * particles);
        ``z``: optional given latent ``[z [rows, D]]``; ``sampler``: see ``ovis.models.sampling``."""
        check_particles(particles)
        loc = expand_to_particles(x @ self.A + self.b, particles)  # [rows, D]
        qz = Normal(loc, self.q_std.expand(loc.shape), validate_args=False)
        z_sample = resolve_sampler(sampler, reparam, z)(0, qz)  # [rows, D]
        return {"px": self.likelihood(z_sample), "z": [z_sample], "qz": [qz],
                "pz": [self.prior(loc.shape[0])], "diagnostics": self.distances_to_optimum()}

    def infer(self, x: Tensor, **kwargs) -> list:
        return [self.q(x)]

    @torch.no_grad()
    def sample_from_prior(self, n: int, **kwargs) -> Dict:
        pz = self.prior(n)
        z = pz.sample()  # [n, D]
        return {"px": self.likelihood(z), "z": [z], "pz": [pz]}

    # --- closed forms -----------------------------------------------------------------------
    def log_marginal(self, x: Tensor) -> Tensor:
        """log p(x) = log N(x; mu, 2 I), ``[rows]``."""
        return Normal(self.mu, math.sqrt(2.0), validate_args=False).log_prob(x).sum(-1)

    def posterior(self, x: Tensor) -> Normal:
        """Exact p(z | x) = N((x + mu) / 2, I / 2), batch shape ``[rows, D]``."""
        return Normal((x + self.mu) / 2, torch.full_like(x, math.sqrt(0.5)), validate_args=False)

    def elbo(self, x: Tensor) -> Tensor:
        """Exact ELBO E_q[log p(x, z) - log q(z | x)], ``[rows]`` (differentiable)."""
        m = x @ self.A + self.b  # [rows, D]
        var = self.q_std ** 2
        return (-self.D * HALF_LOG_2PI - 0.5 * (x - m).pow(2).sum(-1) - 0.5 * (m - self.mu).pow(2).sum(-1)
                - self.D * var + 0.5 * self.D + self.D * self.q_std.log())

    @torch.no_grad()
    def distances_to_optimum(self) -> Dict[str, Tensor]:
        dA = (self.A - self.optimal_A).pow(2).sum()
        db = (self.b - self.optimal_b).pow(2).sum()
        return {"gaussian_toy/distance_A": dA.sqrt(), "gaussian_toy/distance_b": db.sqrt(),
                "gaussian_toy/distance_mu": (self.mu - self.optimal_mu).norm(),
                "gaussian_toy/distance_phi": (dA + db).sqrt()}

    @torch.no_grad()
    def set_optimum(self) -> None:
        """Copy (never alias) the optimal values into ``A``, ``b``, ``mu``."""
        self.A.copy_(self.optimal_A)
        self.b.copy_(self.optimal_b)
        self.mu.copy_(self.optimal_mu)

    @torch.no_grad()
    def perturb(self, epsilon: float, generator: Optional[torch.Generator] = None) -> None:
        """Add i.i.d. N(0, epsilon^2) noise to ``A``, ``b`` and ``mu`` in place; the stored
        optimum is untouched."""
        for param in (self.A, self.b, self.mu):
            noise = torch.randn(param.shape, generator=generator, dtype=param.dtype)
            param.add_(epsilon * noise.to(param.device))
