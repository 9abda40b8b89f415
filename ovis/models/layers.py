"""Deterministic building blocks shared by the VAE-like models."""
import math

import torch
from torch import Tensor, nn

NORMALIZATIONS = ("none", "layernorm", "batchnorm")


def mlp(in_features: int, out_features: int, hdim: int, nlayers: int,
        normalization: str = "none", dropout: float = 0.0) -> nn.Module:
    """``nlayers`` hidden blocks [Linear(hdim), Dropout, Norm, tanh] then Linear(out_features).

    ``nlayers = 0`` gives a bare ``nn.Linear`` (the sigmoid belief network's linear maps).
    """
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization={normalization!r}; allowed: {list(NORMALIZATIONS)}")
    if nlayers == 0:
        return nn.Linear(in_features, out_features)
    blocks = []
    width = in_features
    for _ in range(nlayers):
        blocks.append(nn.Linear(width, hdim))
        if dropout > 0:
            blocks.append(nn.Dropout(dropout))
        if normalization == "layernorm":
            blocks.append(nn.LayerNorm(hdim))
        elif normalization == "batchnorm":
            blocks.append(nn.BatchNorm1d(hdim))
        blocks.append(nn.Tanh())
        width = hdim
    blocks.append(nn.Linear(width, out_features))
    return nn.Sequential(*blocks)


INITIALISATIONS = ("default", "variance-scaling")


def initialise(module: nn.Module, scheme: str) -> None:
    """Re-initialise every ``nn.Linear`` of ``module``. ``default``: torch's (nothing changes);
    ``variance-scaling``: the REBAR code's (TF-slim ``variance_scaling_initializer``: weights from a
    normal of standard deviation ``sqrt(1.3 * 2 / fan_in)`` truncated at two standard deviations,
    biases zero)."""
    if scheme not in INITIALISATIONS:
        raise ValueError(f"init={scheme!r}; allowed: {list(INITIALISATIONS)}")
    if scheme == "default":
        return
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            std = math.sqrt(2.6 / layer.in_features)
            nn.init.trunc_normal_(layer.weight, std=std, a=-2 * std, b=2 * std)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


def output_layer(module: nn.Module) -> nn.Linear:
    """The final ``nn.Linear`` of a module built by ``mlp``."""
    return module if isinstance(module, nn.Linear) else module[-1]


class KeyQueryLogits(nn.Module):
    """Categorical logits as scaled dot products between a query per unit and learnt keys.

    ``logits[r, n, c] = <query[r, n], key[n, c]> / (1e-8 + ||key[n, c]||^2)`` (as in the original,
    ``kdim > 0``). Input: queries ``[rows, N * kdim]``; output ``[rows, N, C]``.
    """

    def __init__(self, n_units: int, n_categories: int, kdim: int):
        super().__init__()
        self.n_units, self.kdim = n_units, kdim
        self.keys = nn.Parameter(torch.randn(n_units, n_categories, kdim))  # [N, C, kdim]

    def forward(self, queries: Tensor) -> Tensor:
        queries = queries.view(-1, self.n_units, self.kdim)  # [rows, N, kdim]
        dots = torch.einsum("rnd,ncd->rnc", queries, self.keys)  # [rows, N, C]
        return dots / (1e-8 + self.keys.pow(2).sum(-1))
