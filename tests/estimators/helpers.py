"""Helpers of the estimator tests."""
import torch

from ovis.estimators.config import parse_estimator_id


def build(estimator_id: str, mc: int = 1, iw: int = 1, **kwargs):
    """Build an estimator from its id."""
    Estimator, config = parse_estimator_id(estimator_id)
    return Estimator(mc=mc, iw=iw, **config, **kwargs)


def enumerable_model_for(Estimator, **kwargs):
    """The enumerable binary model with two latent layers, or one for the estimators that serve
    a single stochastic layer (``max_groups = 1``)."""
    from ovis.testing import EnumerableModel
    one_layer = getattr(Estimator, "max_groups", None) == 1
    return EnumerableModel(x_dim=3, z_dims=(2,) if one_layer else (2, 1), **kwargs)


def exact_gradients(model, objective):
    """``name -> d(-objective)/dparameter`` (zeros where it does not depend on the parameter)."""
    names, params = zip(*model.named_parameters())
    grads = torch.autograd.grad(-objective, params, allow_unused=True)
    return {n: torch.zeros_like(p) if g is None else g for n, p, g in zip(names, params, grads)}


def flat(grads, prefix=""):
    """Concatenate the flattened ``name -> [*shape]`` gradients whose name starts with ``prefix``."""
    return torch.cat([g.flatten() for name, g in grads.items() if name.startswith(prefix)])


def flat_samples(grads, prefix=""):
    """``name -> [n, *shape]`` samples -> ``[n, D]`` for the names starting with ``prefix``."""
    return torch.cat([g.flatten(1) for name, g in grads.items() if name.startswith(prefix)], dim=1)


def max_z_score(samples, target):
    """max over coordinates of |mean(samples) - target| / standard error; ``samples [n, D]``."""
    n = samples.shape[0]
    standard_error = (samples.var(0) / n).sqrt().clamp(min=1e-300)
    return ((samples.mean(0) - target).abs() / standard_error).max().item()


def max_z_difference(a, b):
    """max over coordinates of |mean(a) - mean(b)| / standard error of the difference (independent samples)."""
    standard_error = (a.var(0) / a.shape[0] + b.var(0) / b.shape[0]).sqrt().clamp(min=1e-300)
    return ((a.mean(0) - b.mean(0)).abs() / standard_error).max().item()


def batch_mean_z_scores(estimator, model, x, target, batches=40, repeat=100):
    """``|mean - target| / standard error`` per parameter coordinate of ``batches`` gradients of the
    batch-mean loss over ``x`` repeated ``repeat`` times (``target``: the flat exact gradient)."""
    samples = []
    for _ in range(batches):
        model.zero_grad()
        estimator(model, x.repeat(repeat, 1))[0].mean().backward()
        samples.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    samples = torch.stack(samples)  # [batches, P]
    return (samples.mean(0) - target).abs() / (samples.std(0) / batches ** 0.5).clamp(min=1e-12)
