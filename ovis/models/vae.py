"""Hierarchical variational auto-encoders with a Bernoulli observation model.

One class covers the paper's VAE-like models (the registry in ``ovis.models`` picks the
settings): the MLP VAE with Gaussian, Bernoulli or categorical latents (``vae``, ``shapes``),
the Gaussian VAE of the TVO paper (``gaussian-vae``) and the sigmoid belief network of
TVO / OVIS (``sbm``: Bernoulli latents, linear maps, inputs ``2z - 1``).

Structure, with ``depth`` stochastic layers of ``N`` units, layer 0 at the top:

    generative:  p(z_0) p(z_1 | z_0) ... p(z_{L-1} | z_{L-2}) p(x | z_{L-1})
    inference:   q(z_{L-1} | x) q(z_{L-2} | z_{L-1}) ... q(z_0 | z_1)     (sampled bottom-up)

Every arrow is ``mlp(...)`` (``nlayers`` tanh hidden layers, 0 = linear). Lists returned by
``forward`` are ordered top first, one entry per stochastic layer.
"""
import math
from typing import Dict, List, Optional, Sequence

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from .base import TemplateModel
from .distributions import BernoulliLogits, LatentFamily, bernoulli_logit_bias, latent_family
from .layers import KeyQueryLogits, initialise, mlp, output_layer
from .sampling import LatentSampler, check_particles, expand_to_particles, resolve_sampler


DATA_CENTRINGS = ("shifted", "centred")  # (x - x_mean + 1) / 2 (TVO, OVIS); x - x_mean (the REBAR code)


class StochasticLayer(nn.Module):
    """q(z | h) or p(z | h) for ``n_units`` latent units, computed by an MLP from ``h``.

    Input ``h``: ``[rows, in_features]``; output: a distribution of batch shape ``[rows, N]``
    (one-hot categorical: event shape ``[C]``). With ``kdim > 0`` (categorical only) the
    logits come from a key-query head (``KeyQueryLogits``).
    """

    def __init__(self, family: LatentFamily, in_features: int, n_units: int, hdim: int,
                 nlayers: int, normalization: str = "none", dropout: float = 0.0, kdim: int = 0):
        super().__init__()
        self.family, self.n_units = family, n_units
        out_per_unit = kdim if kdim > 0 else family.n_params
        self.net = mlp(in_features, n_units * out_per_unit, hdim, nlayers, normalization, dropout)
        self.key_query = KeyQueryLogits(n_units, family.n_params, kdim) if kdim > 0 else None

    def forward(self, h: Tensor, tau: float = 0.0, particles: Optional[int] = None) -> Distribution:
        """``particles``: ``h`` holds one row per data point; the network runs once per row and
        its output is repeated ``particles`` times (data point slowest)."""
        out = self.net(h)  # [bs or rows, N * out_per_unit]
        if self.key_query is not None:
            params = self.key_query(expand_to_particles(out, particles))  # [rows, N, C]
        elif self.family.parameter_major:
            # each parameter's N values contiguous (rows of one parameter vectorise: the Gaussian
            # VAE's step is ~5% faster at K = 50), copied once while the particles are expanded
            params = out.view(out.shape[0], self.n_units, self.family.n_params).transpose(1, 2)  # [bs, P, N]
            params = expand_to_particles(params, particles).contiguous().transpose(1, 2)  # [rows, N, P]
        else:
            out = expand_to_particles(out, particles)  # [rows, N * P]
            params = out.view(out.shape[0], self.n_units, self.family.n_params)  # [rows, N, P]
        return self.family.distribution(params, tau)


class HierarchicalVAE(TemplateModel):
    """Hierarchical VAE / sigmoid belief network (see the module docstring).

    Args:
        x_shape: shape of one data point, e.g. ``(1, 28, 28)``; pixels are Bernoulli targets.
        N: latent units per stochastic layer. K: categories per unit (categorical prior).
        hdim, nlayers: width and number of the tanh hidden layers of every MLP.
        depth: number of stochastic layers.
        prior: latent family, ``normal`` | ``bernoulli`` | ``categorical``.
        learn_prior: train the parameters of the top prior p(z_0) (else N(0, I),
            Bernoulli(1/2) or uniform).
        normalization, dropout: inside the MLP hidden blocks.
        kdim: key-query head dimension of the categorical logits of q (0 = plain linear head).
        x_mean: training-set pixel mean ``[*x_shape]``; when given the decoder's output bias
            starts at ``logit(clip(x_mean))`` so the untrained model predicts the mean image.
        signed_latents: feed latent samples to the networks as ``2z - 1`` (SBN).
        centered_data: feed data to the encoder centred (SBN); without ``x_mean`` the mean is
            taken as 1/2.
        data_centring: how centred data are fed: ``shifted`` ``(x - x_mean + 1) / 2`` (TVO, OVIS)
            or ``centred`` ``x - x_mean`` (the REBAR code).
        init: ``default`` (torch's) or ``variance-scaling`` (``layers.initialise``), applied to
            every linear map before the output bias is set.
        output_bias_clip: the output bias starts at ``logit(clip(x_mean, c, 1 - c))``.
        reproduce_original: the original code's relaxed latents (``ovis.models.distributions``).
    """

    def __init__(self, x_shape: Sequence[int], N: int = 32, K: int = 8, hdim: int = 64,
                 nlayers: int = 3, depth: int = 1, prior: str = "normal", learn_prior: bool = False,
                 normalization: str = "none", dropout: float = 0.0, kdim: int = 0,
                 x_mean: Optional[Tensor] = None, signed_latents: bool = False,
                 centered_data: bool = False, reproduce_original: bool = False, data_centring: str = "shifted",
                 init: str = "default", output_bias_clip: float = 1e-4):
        super().__init__()
        self.x_shape = tuple(int(d) for d in x_shape)
        self.depth, self.n_units = depth, N
        self.signed_latents, self.centered_data = signed_latents, centered_data
        if data_centring not in DATA_CENTRINGS:
            raise ValueError(f"data_centring={data_centring!r}; allowed: {list(DATA_CENTRINGS)}")
        self.data_centring = data_centring
        self.family = latent_family(prior, K, reproduce_original)
        if kdim > 0 and prior != "categorical":
            raise ValueError(f"kdim={kdim} (key-query logits) needs prior='categorical', got prior={prior!r}")
        x_features = math.prod(self.x_shape)
        z_features = N * self.family.unit_size
        self.register_buffer("x_mean", self._flat_mean(x_mean, x_features))  # [x_features]
        # Given x once with a particle count, q(z_{L-1} | x) runs once per data point (a third of
        # the SBN's matrix products at iw = 50). Dropout draws a mask per particle, so it needs the
        # repeated rows; batch statistics are the same over repeated rows as over distinct ones.
        self.shares_first_layer = dropout == 0

        layer_args = dict(hdim=hdim, nlayers=nlayers, normalization=normalization, dropout=dropout)
        # inference_network[0] = q(z_{L-1} | x), then q(z_{l} | z_{l+1}) going up
        self.inference_network = nn.ModuleList(
            [StochasticLayer(self.family, x_features, N, kdim=kdim, **layer_args)]
            + [StochasticLayer(self.family, z_features, N, kdim=kdim, **layer_args) for _ in range(depth - 1)])

        self.generative_model = nn.Module()
        prior_params = self.family.uninformative_params(N)  # [N, P]
        if learn_prior:
            self.generative_model.prior_params = nn.Parameter(prior_params)
        else:
            self.generative_model.register_buffer("prior_params", prior_params)
        # conditionals[l - 1] = p(z_l | z_{l-1})
        self.generative_model.conditionals = nn.ModuleList(
            [StochasticLayer(self.family, z_features, N, **layer_args) for _ in range(depth - 1)])
        self.generative_model.observation = mlp(z_features, x_features, **layer_args)
        initialise(self, init)
        if x_mean is not None:
            with torch.no_grad():
                bias = bernoulli_logit_bias(self.x_mean, output_bias_clip)
                output_layer(self.generative_model.observation).bias.copy_(bias)

    @staticmethod
    def _flat_mean(x_mean: Optional[Tensor], x_features: int) -> Tensor:
        if x_mean is None:
            return torch.full((x_features,), 0.5)
        x_mean = torch.as_tensor(x_mean, dtype=torch.float32).flatten()
        if x_mean.numel() != x_features:
            raise ValueError(f"x_mean has {x_mean.numel()} values, the data points have {x_features}")
        return x_mean

    accepts_sampler = True
    accepts_particles = True

    @property
    def supports_reparam(self) -> bool:
        return self.family.reparameterisable

    @property
    def latent_type(self) -> str:
        return self.family.latent_type

    def _data_input(self, x: Tensor) -> Tensor:
        h = x.flatten(1)  # [rows, x_features]
        if not self.centered_data:
            return h
        return h - self.x_mean if self.data_centring == "centred" else (h - self.x_mean + 1) * 0.5

    def _latent_input(self, z: Tensor) -> Tensor:
        h = self.family.flatten(z)  # [rows, N * unit_size]
        if not self.signed_latents:
            return h
        return torch.add(h.new_full((), -1.0), h, alpha=2)  # [rows, N * unit_size]: 2h - 1 in one pass

    def _top_prior(self, rows: int, tau: float) -> Distribution:
        params = self.generative_model.prior_params
        return self.family.distribution(params.expand(rows, *params.shape), tau)  # batch [rows, N]

    def _likelihood(self, z_bottom: Tensor) -> Distribution:
        logits = self.generative_model.observation(self._latent_input(z_bottom))  # [rows, x_features]
        return BernoulliLogits(logits.view(-1, *self.x_shape))

    def _check_latents(self, z: List[Tensor], rows: int) -> None:
        if len(z) != self.depth or any(zl.shape[0] != rows for zl in z):
            raise ValueError(f"z must be a list of {self.depth} tensors (top layer first) with "
                             f"{rows} rows each, got shapes {[tuple(zl.shape) for zl in z]}")

    def _inference(self, x: Tensor, sampler: LatentSampler, tau: float, particles: Optional[int]):
        """q distributions and latents (top first), each group drawn by ``sampler``."""
        if particles is not None and not self.shares_first_layer:
            x, particles = expand_to_particles(x, particles), None  # [rows, *x_shape]
        h = self._data_input(x)  # [bs or rows, x_features]
        qz, zs = [], []
        for level, layer in enumerate(self.inference_network):  # bottom-up
            q = layer(h, tau, particles if level == 0 else None)  # batch [rows, N]
            z_level = sampler(self.depth - 1 - level, q)  # [rows, N(, C)]
            qz.append(q)
            zs.append(z_level)
            h = self._latent_input(z_level)
        return qz[::-1], zs[::-1]

    def forward(self, x: Tensor, reparam: bool = False, tau: float = 0.0, z: Optional[List[Tensor]] = None,
                sampler: Optional[LatentSampler] = None, particles: Optional[int] = None, **kwargs) -> Dict:
        """``x``: ``[rows, *x_shape]``, or ``[bs, *x_shape]`` with ``particles`` (rows = bs * particles).
        ``z``: given latents (list, top first) at which q, p(z) and p(x|z) are evaluated (sleep
        phase); ``sampler``: how each latent group is drawn (``ovis.models.sampling``)."""
        if reparam and not self.supports_reparam:
            raise ValueError("this model's latents are Bernoulli: no pathwise (reparam=True) samples; "
                             "use a score-function estimator")
        check_particles(particles)
        rows = x.shape[0] * (particles or 1)
        if z is not None:
            self._check_latents(z, rows)
        qz, zs = self._inference(x, resolve_sampler(sampler, reparam, z), tau, particles)
        pz = [self._top_prior(rows, tau)]
        for layer, parent in zip(self.generative_model.conditionals, zs[:-1]):
            pz.append(layer(self._latent_input(parent), tau))
        return {"px": self._likelihood(zs[-1]), "z": zs, "qz": qz, "pz": pz}

    def infer(self, x: Tensor, z: Optional[List[Tensor]] = None, tau: float = 0.0, **kwargs) -> List[Distribution]:
        """The inference distributions [q(z_0 | z_1), ..., q(z_{L-1} | x)] (top first), at the
        given latents ``z`` when provided, else along a fresh sample."""
        if z is not None:
            self._check_latents(z, x.shape[0])
        return self._inference(x, resolve_sampler(None, False, z), tau, None)[0]

    @torch.no_grad()
    def sample_from_prior(self, n: int, tau: float = 0.0, **kwargs) -> Dict:
        """Ancestral sample of ``n`` latent chains; returns ``px``, ``z`` (top first), ``pz``."""
        p = self._top_prior(n, tau)
        pz, zs = [p], [p.sample()]
        for layer in self.generative_model.conditionals:
            p = layer(self._latent_input(zs[-1]), tau)
            pz.append(p)
            zs.append(p.sample())
        return {"px": self._likelihood(zs[-1]), "z": zs, "pz": pz}
