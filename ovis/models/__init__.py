"""Models of the paper, selectable by name.

    model = get_model("sbm", x_shape=(1, 28, 28), x_mean=datasets.train.mean(), N=200, depth=3)

=================  ==========================================================================
name               model
=================  ==========================================================================
``vae``            MLP VAE, ``depth`` stochastic layers of ``N`` normal / bernoulli /
                   categorical units (``prior``), Bernoulli pixels (``vae.HierarchicalVAE``)
``shapes``         ``vae`` preset of the mini-vae experiment: categorical prior, learnt,
                   N=32, K=8, hdim=128, nlayers=2
``gaussian-vae``   Gaussian VAE of the TVO paper (budget analysis): N=200, hdim=200,
                   nlayers=2, depth=1
``sbm``            sigmoid belief network of TVO / OVIS: ``depth`` x ``N`` Bernoulli units,
                   linear maps (``nlayers=0``), inputs ``2z - 1`` and ``(x - x_mean + 1) / 2``
``gaussian-toy``   linear Gaussian model of Rainforth et al. 2018 (``gaussian_toy``)
``gmm``            Gaussian mixture of Le et al. 2019 with ``N`` clusters (``gmm``)
=================  ==========================================================================

Hyper-parameters use the ``run.py`` option names: ``N, K, hdim, nlayers, depth, prior,
learn_prior, normalization, dropout, kdim``, ``init`` and ``output_bias_clip`` (the VAE-like models:
torch's or variance-scaling initialisation, the clip of the data mean of the output bias),
``data_centring`` (``sbm``: ``shifted`` or ``centred`` input), and ``reproduce_original`` (the original code's
relaxed latents, ``ovis.models.distributions``; not a ``run.py`` option); model-specific extra:
``q_std`` (``gaussian-toy``, q's standard deviation).
A model ignores the shared names it has no use for (so a trainer may pass all of them):
``sbm`` uses ``N, depth, nlayers`` and the three above (hidden width = N, prior learnt Bernoulli); ``gaussian-vae``
everything but ``prior, K, kdim``; ``gaussian-toy`` none; ``gmm`` ``N`` (clusters) and ``hdim``
(width of q's hidden layer, default 16: the paper's 1-16-C network). ``ovis.identity`` leaves the
names a data set's own model ignores out of a run's identity.
A value of ``None`` means "this model's default" (the paper's setting, ``MODEL_DEFAULTS``).
Any other name raises ``ValueError``.
"""
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Sequence

from torch import Tensor

from .base import TemplateModel
from .distributions import LATENT_FAMILIES
from .gaussian_toy import GaussianToyModel
from .gmm import GaussianMixtureModel
from .layers import INITIALISATIONS, NORMALIZATIONS
from .vae import DATA_CENTRINGS, HierarchicalVAE

SHARED_HYPERPARAMETERS = ("N", "K", "hdim", "nlayers", "depth", "prior", "learn_prior",
                          "normalization", "dropout", "kdim", "reproduce_original", "init", "output_bias_clip",
                          "data_centring")


@dataclass(frozen=True)
class ModelSpec:
    """``build(x_shape, x_mean, **hparams)`` and the defaults of the hyper-parameters it uses."""
    build: Callable[..., TemplateModel]
    defaults: Dict[str, Any]


def _vae(x_shape, x_mean, **hparams) -> TemplateModel:
    return HierarchicalVAE(x_shape, x_mean=x_mean, **hparams)


def _gaussian_vae(x_shape, x_mean, **hparams) -> TemplateModel:
    return HierarchicalVAE(x_shape, x_mean=x_mean, prior="normal", **hparams)


def _sbm(x_shape, x_mean, N, depth, nlayers, reproduce_original, **options) -> TemplateModel:
    return HierarchicalVAE(x_shape, N=N, hdim=N, nlayers=nlayers, depth=depth, prior="bernoulli",
                           learn_prior=True, x_mean=x_mean, signed_latents=True, centered_data=True,
                           reproduce_original=reproduce_original, **options)


def _gaussian_toy(x_shape, x_mean, q_std) -> TemplateModel:
    return GaussianToyModel(x_shape, x_mean=x_mean, q_std=q_std)


def _gmm(x_shape, x_mean, N, hdim) -> TemplateModel:
    return GaussianMixtureModel(x_shape, N=N, hdim=hdim)


# the initialisation of the linear maps and the clip of the output bias's data mean (vae.py)
_INIT_DEFAULTS = dict(init="default", output_bias_clip=1e-4)
_VAE_DEFAULTS = dict(N=32, K=8, hdim=64, nlayers=3, depth=1, prior="normal", learn_prior=False,
                     normalization="none", dropout=0.0, kdim=0, reproduce_original=False, **_INIT_DEFAULTS)

MODELS: Dict[str, ModelSpec] = {
    "vae": ModelSpec(_vae, _VAE_DEFAULTS),
    "shapes": ModelSpec(_vae, {**_VAE_DEFAULTS, "prior": "categorical", "learn_prior": True, "N": 32,
                               "K": 8, "hdim": 128, "nlayers": 2}),
    "gaussian-vae": ModelSpec(_gaussian_vae, dict(N=200, hdim=200, nlayers=2, depth=1, learn_prior=False,
                                                  normalization="none", dropout=0.0, reproduce_original=False,
                                                  **_INIT_DEFAULTS)),
    "sbm": ModelSpec(_sbm, dict(N=200, depth=3, nlayers=0, reproduce_original=False, data_centring="shifted",
                                **_INIT_DEFAULTS)),
    "gaussian-toy": ModelSpec(_gaussian_toy, dict(q_std=2 / 3)),
    "gmm": ModelSpec(_gmm, dict(N=20, hdim=16)),
}
MODEL_NAMES = tuple(MODELS)
MODEL_DEFAULTS = {name: dict(spec.defaults) for name, spec in MODELS.items()}


def _integer(name: str, value, minimum: int) -> int:
    try:
        valid = not isinstance(value, bool) and float(value).is_integer() and value >= minimum
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise ValueError(f"{name}={value!r}: expected an integer >= {minimum}")
    return int(value)


def _check_hyperparameter(name: str, value):
    """Validate one hyper-parameter value; returns it normalised."""
    minimum = {"N": 1, "K": 2, "hdim": 1, "nlayers": 0, "depth": 1, "kdim": 0}
    if name in minimum:
        return _integer(name, value, minimum[name])
    if name == "prior" and value not in LATENT_FAMILIES:
        raise ValueError(f"prior={value!r}; allowed: {sorted(LATENT_FAMILIES)}")
    if name == "normalization" and value not in NORMALIZATIONS:
        raise ValueError(f"normalization={value!r}; allowed: {list(NORMALIZATIONS)}")
    if name in ("learn_prior", "reproduce_original") and not isinstance(value, bool):
        raise ValueError(f"{name}={value!r}: expected True or False")
    if name == "dropout" and not 0.0 <= float(value) < 1.0:
        raise ValueError(f"dropout={value!r}: expected a probability in [0, 1)")
    if name == "init" and value not in INITIALISATIONS:
        raise ValueError(f"init={value!r}; allowed: {list(INITIALISATIONS)}")
    if name == "data_centring" and value not in DATA_CENTRINGS:
        raise ValueError(f"data_centring={value!r}; allowed: {list(DATA_CENTRINGS)}")
    if name == "output_bias_clip" and not 0 < float(value) < 0.5:
        raise ValueError(f"output_bias_clip={value!r}: expected a probability in (0, 0.5)")
    if name == "q_std" and not float(value) > 0:
        raise ValueError(f"q_std={value!r}: expected a standard deviation > 0")
    return value


def get_model(name: str, x_shape: Sequence[int], x_mean: Optional[Tensor] = None, **hparams) -> TemplateModel:
    """Build the model ``name`` for data points of shape ``x_shape``.

    ``x_mean``: training-set mean ``[*x_shape]`` (decoder bias init of the image models, input
    centring of ``sbm``, optimum of ``gaussian-toy`` where it is required). ``hparams``: see the
    module docstring. The caller seeds the global RNG beforehand for a reproducible init.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; available models: {list(MODEL_NAMES)}")
    spec = MODELS[name]
    allowed = sorted(set(SHARED_HYPERPARAMETERS) | set(spec.defaults))
    unknown = sorted(set(hparams) - set(allowed))
    if unknown:
        raise ValueError(f"unknown hyper-parameter(s) {unknown} for model {name!r}; allowed: {allowed}")
    used = dict(spec.defaults)
    used.update({k: v for k, v in hparams.items() if k in spec.defaults and v is not None})
    used = {k: _check_hyperparameter(k, v) for k, v in used.items()}
    return spec.build(tuple(x_shape), x_mean, **used)


__all__ = ["get_model", "MODEL_NAMES", "MODEL_DEFAULTS", "MODELS", "TemplateModel", "HierarchicalVAE",
           "GaussianToyModel", "GaussianMixtureModel"]
