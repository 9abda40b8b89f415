"""Small models with exact answers, for the estimator tests and ``python -m ovis.apps.check``.

* ``EnumerableModel``: a sigmoid belief network with a handful of binary latents. Every latent
  configuration, and every K-tuple of configurations, can be enumerated: the exact L_K, its
  gradient, and the exact mean and variance of any estimator's gradient (``enumerate_estimator``).
* ``LinearGaussianModel``: p(z) = N(mu, I), p(x|z) = N(z, I), q(z|x) = N(x A + b, diag(sigma^2)),
  with a closed-form log p(x), posterior and ELBO; supports pathwise estimators.

Both follow ``TemplateModel`` and add two test facilities:

* ``per_datum_parameters(bs)``: every parameter is replaced by ``bs`` independent copies
  ``[bs, *shape]``; the rows of data point b use copy b, so one backward pass of ``loss.sum()``
  leaves the gradient of each ``loss[b]`` alone in ``copy.grad[b]`` (independent gradient
  samples from one vectorised call);
* fixed randomness (``EnumerableModel.fixed_latents``, ``LinearGaussianModel.fixed_noise``):
  the next forward passes use the given latents / standard normal noise instead of sampling.
"""
import itertools
import math
from contextlib import contextmanager
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn
from torch.distributions import Bernoulli, Independent, Normal

from ovis.models.base import TemplateModel
from ovis.models.sampling import LatentSampler, resolve_sampler


def _affine(weight: Tensor, inputs: Tensor, bias: Tensor) -> Tensor:
    """``weight [out, in] or [rows, out, in]``, ``inputs [rows, in]`` -> ``[rows, out]``."""
    return (weight @ inputs.unsqueeze(-1)).squeeze(-1) + bias


class _TestModel(TemplateModel):
    """Parameter access that honours ``per_datum_parameters``."""

    def __init__(self):
        super().__init__()
        self._datum_parameters: Optional[Dict[str, Tensor]] = None

    @contextmanager
    def per_datum_parameters(self, bs: int) -> Iterator[Dict[str, Tensor]]:
        """Yield ``{name: Tensor [bs, *shape]}``, leaf copies of every parameter (see module docstring).
        Rows are mapped to data points in order: ``rows = bs * n``, rows ``b*n .. b*n + n-1`` use copy b."""
        copies = {name: p.detach().unsqueeze(0).repeat(bs, *([1] * p.dim())).requires_grad_()
                  for name, p in self.named_parameters()}
        self._datum_parameters = copies
        try:
            yield copies
        finally:
            self._datum_parameters = None

    def param(self, name: str, rows: int) -> Tensor:
        """Parameter ``name``: ``[*shape]``, or ``[rows, *shape]`` inside ``per_datum_parameters``."""
        if self._datum_parameters is None:
            owner, attribute = name.rsplit(".", 1)
            return getattr(self.get_submodule(owner), attribute)  # (also a plain tensor under torch.func)
        copies = self._datum_parameters[name]
        if rows % copies.shape[0]:
            raise ValueError(f"{rows} rows cannot be split among {copies.shape[0]} per-datum parameter copies")
        return copies.repeat_interleave(rows // copies.shape[0], dim=0)


class _KeptDraws(LatentSampler):
    """The fixed latents handed to a drawing sampler's ``keep(group, z)`` in place of its draws."""

    def __init__(self, fixed: List[Tensor], keep):
        self.fixed, self.keep = fixed, keep

    def __call__(self, group: int, q) -> Tensor:
        return self.keep(group, self.fixed[group])


class EnumerableModel(_TestModel):
    """Sigmoid belief network with layers of binary units, top layer first (``z_dims``).

    Generative:  p(z_0) = Bernoulli(sigmoid(a)),  p(z_i | z_{i-1}) = Bernoulli(sigmoid(W_i (2 z_{i-1} - 1) + c_i)),
                 p(x | z_last) = Bernoulli(sigmoid(W_x (2 z_last - 1) + c_x)).
    Inference:   q(z_last | x) = Bernoulli(sigmoid(U_last (2 x - 1) + e_last)),
                 q(z_i | z_{i+1}) = Bernoulli(sigmoid(U_i (2 z_{i+1} - 1) + e_i))   (sampled bottom-up).

    ``2^sum(z_dims)`` joint latent states; parameters ``generative_model.*`` and
    ``inference_network.*`` drawn N(0, ``scale``^2) from ``seed``. Each forward pass also
    returns the diagnostic ``testing/latent_mean`` (mean of all latent units, per row).
    """

    latent_type = "bernoulli"

    def __init__(self, x_dim: int = 3, z_dims: Sequence[int] = (2,), scale: float = 1.0, seed: int = 0):
        super().__init__()
        if x_dim < 1 or not z_dims or min(z_dims) < 1:
            raise ValueError(f"x_dim={x_dim}, z_dims={tuple(z_dims)}: expected positive sizes and >= 1 layer")
        self.x_dim, self.z_dims = int(x_dim), tuple(int(d) for d in z_dims)
        generator = torch.Generator().manual_seed(seed)

        def init(*shape):
            return nn.Parameter(scale * torch.randn(*shape, generator=generator))

        L = len(self.z_dims)
        self.generative_model = nn.ParameterDict({"prior_logits": init(self.z_dims[0])})
        for i in range(1, L):
            self.generative_model[f"weight_{i}"] = init(self.z_dims[i], self.z_dims[i - 1])
            self.generative_model[f"bias_{i}"] = init(self.z_dims[i])
        self.generative_model["weight_x"] = init(x_dim, self.z_dims[-1])
        self.generative_model["bias_x"] = init(x_dim)
        self.inference_network = nn.ParameterDict()
        for i in range(L):
            inputs = x_dim if i == L - 1 else self.z_dims[i + 1]
            self.inference_network[f"weight_{i}"] = init(self.z_dims[i], inputs)
            self.inference_network[f"bias_{i}"] = init(self.z_dims[i])
        self._fixed_latents: Optional[List[Tensor]] = None

    @contextmanager
    def fixed_latents(self, z: List[Tensor]):
        """Forward passes inside the context use the latents ``z`` (list, top first, ``[rows, d_g]``)."""
        if len(z) != len(self.z_dims):
            raise ValueError(f"expected {len(self.z_dims)} latent layers, got {len(z)}")
        self._fixed_latents = list(z)
        try:
            yield
        finally:
            self._fixed_latents = None

    def _bernoulli(self, module: str, index, inputs: Tensor) -> Bernoulli:
        rows = inputs.shape[0]
        logits = _affine(self.param(f"{module}.weight_{index}", rows), 2 * inputs - 1,
                         self.param(f"{module}.bias_{index}", rows))
        return Bernoulli(logits=logits, validate_args=False)

    def infer(self, x: Tensor, z: Optional[List[Tensor]] = None, **kwargs) -> List[Bernoulli]:
        """``[q(z_0 | z_1), ..., q(z_last | x)]`` (top first) along the given latents ``z``
        (sampled when None)."""
        return self._inference(x, z)[0]

    def _inference(self, x: Tensor, z: Optional[List[Tensor]],
                   sampler: Optional[LatentSampler] = None) -> Tuple[List[Bernoulli], List[Tensor]]:
        sampler = resolve_sampler(sampler, False, z)
        qz, zs, inputs = [], [], x
        for i in reversed(range(len(self.z_dims))):  # bottom-up
            q = self._bernoulli("inference_network", i, inputs)
            inputs = sampler(i, q)
            qz.append(q)
            zs.append(inputs)
        return qz[::-1], zs[::-1]

    def _top_prior(self, rows: int) -> Bernoulli:
        logits = self.param("generative_model.prior_logits", rows).expand(rows, self.z_dims[0])
        return Bernoulli(logits=logits, validate_args=False)

    def _prior(self, z: List[Tensor], rows: int) -> List[Bernoulli]:
        return [self._top_prior(rows)] + [self._bernoulli("generative_model", i, z[i - 1])
                                          for i in range(1, len(self.z_dims))]

    accepts_sampler = True

    def forward(self, x: Tensor, reparam: bool = False, sampler: Optional[LatentSampler] = None, **kwargs) -> Dict:
        """``sampler``: how each latent group is drawn (``ovis.models.sampling``); inside
        ``fixed_latents`` the fixed latents replace samplers that draw (``sampler.draws``), or
        pass through their ``keep(group, z)`` when they define one."""
        if reparam:
            raise ValueError("EnumerableModel has binary latents: no reparameterised samples")
        fixed = self._fixed_latents
        if fixed is not None and getattr(sampler, "draws", True):
            keep = getattr(sampler, "keep", None)  # a drawing sampler that marks its draws (LeafSample)
            sampler = None if keep is None else _KeptDraws(fixed, keep)
            fixed = None if keep is not None else fixed
        elif sampler is not None:
            fixed = None  # a sampler that evaluates (Given, MeanField) wins over the fixed latents
        qz, z = self._inference(x, fixed, sampler)
        return {"px": self._bernoulli("generative_model", "x", z[-1]), "z": z, "qz": qz,
                "pz": self._prior(z, x.shape[0]),
                "diagnostics": {"testing/latent_mean": torch.cat(z, dim=1).mean(1)}}

    @torch.no_grad()
    def sample_from_prior(self, n: int, **kwargs) -> Dict:
        p = self._top_prior(n)
        pz, z = [p], [p.sample()]
        for i in range(1, len(self.z_dims)):
            p = self._bernoulli("generative_model", i, z[-1])
            pz.append(p)
            z.append(p.sample())
        return {"px": self._bernoulli("generative_model", "x", z[-1]), "z": z, "pz": pz}

    # --- enumeration ------------------------------------------------------------------------
    @property
    def n_states(self) -> int:
        return 2 ** sum(self.z_dims)

    def latent_states(self) -> List[Tensor]:
        """All joint latent configurations: per layer ``[n_states, d_g]`` (same dtype as the model)."""
        reference = self.generative_model["bias_x"]
        bits = torch.tensor(list(itertools.product([0.0, 1.0], repeat=sum(self.z_dims))),
                            dtype=reference.dtype, device=reference.device)  # [S, sum(d)]
        return list(torch.split(bits, self.z_dims, dim=1))

    def state_log_densities(self, x: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """``log p(x|z) [bs, S]``, ``log q(z_g|.) [bs, S, G]``, ``log p(z_g|.) [bs, S, G]`` at every
        latent state (differentiable in the parameters)."""
        bs, S = x.shape[0], self.n_states
        x_rows = x.repeat_interleave(S, dim=0)  # [bs * S, D]
        z_rows = [state.repeat(bs, 1) for state in self.latent_states()]  # [bs * S, d_g]
        with self.fixed_latents(z_rows):
            output = self(x_rows)
        log_px = output["px"].log_prob(x_rows).sum(-1).view(bs, S)
        log_qz = torch.stack([q.log_prob(z).sum(-1) for q, z in zip(output["qz"], z_rows)], -1).view(bs, S, -1)
        log_pz = torch.stack([p.log_prob(z).sum(-1) for p, z in zip(output["pz"], z_rows)], -1).view(bs, S, -1)
        return log_px, log_qz, log_pz

    def exact_log_marginal(self, x: Tensor) -> Tensor:
        """``log p(x) [bs]``."""
        log_px, _, log_pz = self.state_log_densities(x)
        return torch.logsumexp(log_px + log_pz.sum(-1), dim=1)

    def exact_posterior(self, x: Tensor) -> Tensor:
        """``p(z | x) [bs, S]`` over ``latent_states()``."""
        log_px, _, log_pz = self.state_log_densities(x)
        return torch.softmax(log_px + log_pz.sum(-1), dim=1)

    def exact_iw_bound(self, x: Tensor, iw: int, alpha: float = 0.0, beta: float = 1.0,
                       freebits: Optional[float] = None) -> Tensor:
        """``E_{z_1..K ~ q}[(logsumexp_k l_k - log K) / (1 - alpha)]`` by enumerating every K-tuple,
        ``[bs]``, differentiable (``l_k`` as in ``ovis.estimators.particles``; K = 1: the ELBO)."""
        log_px, log_qz, log_pz = self.state_log_densities(x)  # [bs, S], [bs, S, G] x 2
        kl = log_qz - log_pz
        if freebits is not None:
            kl = kl.clamp(min=freebits)
        log_weights = (1 - alpha) * (log_px - beta * kl.sum(-1))  # [bs, S]
        tuples = self.tuple_indices(iw)  # [T, K]
        log_prob_tuples = log_qz.sum(-1)[:, tuples].sum(-1)  # [bs, T]
        bounds = (torch.logsumexp(log_weights[:, tuples], dim=-1) - math.log(iw)) / (1 - alpha)  # [bs, T]
        return (log_prob_tuples.exp() * bounds).sum(-1)

    def exact_sleep_objective(self) -> Tensor:
        """``E_{p(x, z)}[log q(z | x)]`` over every binary x and latent state (scalar)."""
        reference = self.generative_model["bias_x"]
        xs = torch.tensor(list(itertools.product([0.0, 1.0], repeat=self.x_dim)),
                          dtype=reference.dtype, device=reference.device)  # [2^D, D]
        log_px, log_qz, log_pz = self.state_log_densities(xs)  # [2^D, S], ...
        return ((log_px + log_pz.sum(-1)).exp() * log_qz.sum(-1)).sum()

    def tuple_indices(self, n: int) -> Tensor:
        """Every n-tuple of latent states as indices ``[S^n, n]`` (first particle slowest)."""
        grids = torch.meshgrid(*[torch.arange(self.n_states, device=self.generative_model["bias_x"].device)] * n,
                               indexing="ij")
        return torch.stack(grids, -1).reshape(-1, n)


def enumerate_estimator(estimator: nn.Module, model: EnumerableModel, x: Tensor,
                        **runtime) -> Tuple[Dict[str, Tensor], Dict[str, Tensor]]:
    """Exact mean and variance of an estimator's gradient (of its ``loss``) for one data point
    ``x [1, D]``, by enumerating every tuple of the ``mc * n`` particles of its forward pass
    (``estimator.layout = (mc, n)``), weighted by its probability under q (for an estimator that
    draws its mc samples together, ``joint_samples``: its ``tuple_probabilities``).

    Returns ``(mean, variance)``: dicts ``parameter name -> [*shape]``. Randomness outside the
    particles (the sleep phase of wake-sleep) is sampled, once per tuple.
    """
    if x.shape[0] != 1:
        raise ValueError(f"enumerate_estimator takes one data point [1, D], got shape {tuple(x.shape)}")
    mc, n = estimator.layout
    particles = mc * n
    tuples = model.tuple_indices(particles)  # [T, P]
    T = tuples.shape[0]
    states = model.latent_states()
    with torch.no_grad():
        _, log_qz, _ = model.state_log_densities(x)  # [1, S, G]
        probability = log_qz.sum(-1)[0, tuples].sum(-1).exp()  # [T]
        if getattr(estimator, "joint_samples", False):  # the mc samples are drawn together (one layer)
            p = torch.sigmoid(model.infer(x)[0].logits)[0]  # [N]
            probability = estimator.tuple_probabilities(p, states[0][tuples].view(T, mc, n, -1))
    z_rows = [state[tuples.reshape(-1)] for state in states]  # [T * P, d_g]
    estimator.check_model(model)  # its probe pass, if any, before the parameters are copied per datum
    with model.per_datum_parameters(T) as copies, model.fixed_latents(z_rows):
        loss, _, _ = estimator(model, x.expand(T, *x.shape[1:]), return_diagnostics=False, **runtime)  # [T]
        loss.sum().backward()
    mean, variance = {}, {}
    for name, copy in copies.items():
        grads = torch.zeros_like(copy) if copy.grad is None else copy.grad  # [T, *shape]
        weights = probability.view(T, *([1] * (grads.dim() - 1)))
        mean[name] = (weights * grads).sum(0)
        variance[name] = (weights * (grads - mean[name]) ** 2).sum(0)
    return mean, variance


def per_datum_gradients(estimator: nn.Module, model: _TestModel, x: Tensor, n: int,
                        **runtime) -> Dict[str, Tensor]:
    """``n`` independent gradient samples of ``estimator`` at the data point ``x [1, *D]`` from one
    vectorised call (``n`` copies of x, one parameter copy each): ``name -> [n, *shape]``."""
    if x.shape[0] != 1:
        raise ValueError(f"per_datum_gradients takes one data point [1, *D], got shape {tuple(x.shape)}")
    estimator.check_model(model)  # its probe pass, if any, before the parameters are copied per datum
    with model.per_datum_parameters(n) as copies:
        loss, _, _ = estimator(model, x.expand(n, *x.shape[1:]), return_diagnostics=False, **runtime)
        loss.sum().backward()
    return {name: torch.zeros_like(copy) if copy.grad is None else copy.grad for name, copy in copies.items()}


class LinearGaussianModel(_TestModel):
    """``p(z) = N(mu, I)``, ``p(x|z) = N(z, I)``, ``q(z|x) = N(x A + b, diag(exp(log_std))^2)`` in
    ``dim`` dimensions (the Gaussian model of Rainforth et al., 2018, with a learned q scale).

    Closed forms: ``p(x) = N(mu, 2I)``, ``p(z|x) = N((x + mu)/2, I/2)`` (so the optimal q has
    ``A = I/2``, ``b = mu/2``, ``std = sqrt(1/2)``), and the ELBO. Parameters
    ``generative_model.mu``, ``inference_network.{A, b, log_std}`` drawn from ``seed``.
    Distributions are ``Independent(Normal)`` (one group).
    """

    latent_type = "gaussian"

    def __init__(self, dim: int = 2, seed: int = 0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.dim = int(dim)
        self.generative_model = nn.ParameterDict({"mu": nn.Parameter(torch.randn(dim, generator=generator))})
        self.inference_network = nn.ParameterDict({
            "A": nn.Parameter(0.5 * torch.eye(dim) + 0.3 * torch.randn(dim, dim, generator=generator)),
            "b": nn.Parameter(0.5 * torch.randn(dim, generator=generator)),
            "log_std": nn.Parameter(math.log(0.8) + 0.2 * torch.randn(dim, generator=generator)),
        })
        self._fixed_noise: Optional[Tensor] = None

    @property
    def supports_reparam(self) -> bool:
        return True

    @contextmanager
    def fixed_noise(self, eps: Tensor):
        """Forward passes inside the context use ``z = loc + std * eps`` with the given ``eps [rows, dim]``."""
        self._fixed_noise = eps
        try:
            yield
        finally:
            self._fixed_noise = None

    def infer(self, x: Tensor, z: Optional[List[Tensor]] = None, **kwargs) -> List[Independent]:
        rows = x.shape[0]
        loc = (x.unsqueeze(-2) @ self.param("inference_network.A", rows)).squeeze(-2) \
            + self.param("inference_network.b", rows)  # [rows, D]
        std = self.param("inference_network.log_std", rows).exp().expand(rows, self.dim)
        return [Independent(Normal(loc, std, validate_args=False), 1, validate_args=False)]

    def _prior(self, rows: int) -> Independent:
        mu = self.param("generative_model.mu", rows).expand(rows, self.dim)
        return Independent(Normal(mu, torch.ones_like(mu), validate_args=False), 1, validate_args=False)

    @staticmethod
    def _likelihood(z: Tensor) -> Independent:
        return Independent(Normal(z, torch.ones_like(z), validate_args=False), 1, validate_args=False)

    accepts_sampler = True

    def forward(self, x: Tensor, reparam: bool = False, sampler: Optional[LatentSampler] = None, **kwargs) -> Dict:
        q = self.infer(x)[0]
        if self._fixed_noise is not None:
            z = q.base_dist.loc + q.base_dist.scale * self._fixed_noise
            z = z if reparam else z.detach()
        else:
            z = resolve_sampler(sampler, reparam)(0, q)
        return {"px": self._likelihood(z), "z": [z], "qz": [q], "pz": [self._prior(x.shape[0])]}

    @torch.no_grad()
    def sample_from_prior(self, n: int, **kwargs) -> Dict:
        pz = self._prior(n)
        z = pz.sample()
        return {"px": self._likelihood(z), "z": [z], "pz": [pz]}

    # --- closed forms -----------------------------------------------------------------------
    def log_marginal(self, x: Tensor) -> Tensor:
        """``log p(x) = log N(x; mu, 2I)``, ``[bs]``."""
        mu = self.generative_model["mu"]
        return Normal(mu, math.sqrt(2.0) * torch.ones_like(mu)).log_prob(x).sum(-1)

    def quadrature_iw_bound(self, x: Tensor, iw: int, nodes: int = 24) -> Tensor:
        """``L_K = E[log (1/K) sum_k p(x, z_k) / q(z_k|x)]``, ``[bs]`` (differentiable), with ``z_k = loc +
        std * eps_k``, by Gauss-Hermite quadrature over the ``K * dim`` standard normal noises
        (``nodes`` per noise, a tensor-product grid of ``nodes ** (K * dim)`` points): exact for K = 1
        (the ELBO) to float64 precision and the reference gradient of L_K for K > 1."""
        from numpy.polynomial.hermite_e import hermegauss

        points, weights = (torch.as_tensor(a, dtype=x.dtype) for a in hermegauss(nodes))  # [nodes]
        weights = weights / math.sqrt(2 * math.pi)  # expectations under N(0, 1)
        grid = torch.cartesian_prod(*[points] * (iw * self.dim)).reshape(-1, iw, self.dim)  # [G, K, D]
        grid_weights = torch.cartesian_prod(*[weights] * (iw * self.dim)).reshape(-1, iw * self.dim).prod(-1)  # [G]
        q = self.infer(x)[0].base_dist
        z = q.loc[:, None, None] + q.scale[:, None, None] * grid  # [bs, G, K, D]
        mu = self.generative_model["mu"]
        log_joint = (Normal(mu, torch.ones_like(mu)).log_prob(z) + Normal(z, torch.ones_like(z)).log_prob(
            x[:, None, None])).sum(-1)  # [bs, G, K]
        log_q = Normal(q.loc[:, None, None], q.scale[:, None, None]).log_prob(z).sum(-1)  # [bs, G, K]
        log_mean_weight = (log_joint - log_q).logsumexp(-1) - math.log(iw)  # [bs, G]
        return (log_mean_weight * grid_weights).sum(-1)

    def elbo(self, x: Tensor) -> Tensor:
        """Exact ``E_q[log p(x, z) - log q(z|x)]``, ``[bs]`` (differentiable)."""
        q = self.infer(x)[0].base_dist
        m, var = q.loc, q.scale ** 2  # [bs, D]
        mu = self.generative_model["mu"]
        log_2pi = math.log(2 * math.pi)
        expected_log_joint = -log_2pi - 0.5 * ((x - m) ** 2 + (m - mu) ** 2 + 2 * var)  # [bs, D]
        entropy = 0.5 * (log_2pi + 1 + torch.log(var))
        return (expected_log_joint + entropy).sum(-1)

    @torch.no_grad()
    def set_optimal_inference(self) -> None:
        """Set q to the exact posterior: ``A = I/2``, ``b = mu/2``, ``std = sqrt(1/2)`` (copies, not aliases)."""
        self.inference_network["A"].copy_(0.5 * torch.eye(self.dim))
        self.inference_network["b"].copy_(0.5 * self.generative_model["mu"])
        self.inference_network["log_std"].fill_(0.5 * math.log(0.5))
