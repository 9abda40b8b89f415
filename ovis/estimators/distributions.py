"""Copies of distributions whose parameters carry no gradient (sticking-the-landing, DReG).

STL (Roeder et al., 2017) and DReG (Tucker et al., 2019) evaluate ``log q_phi(z)`` with the
gradient of phi flowing through the sample ``z`` only: the distribution is rebuilt from
*detached* parameters. The rebuild must keep every parameter (location AND scale, logits or
probs, temperature, ...), not only ``logits`` (the original kept only the logits).

``detach_parameters`` works generically: it shallow-copies the distribution and detaches every
tensor it holds, recursing into nested distributions (``Independent``, ``TransformedDistribution``
and the relaxed distributions built on them), transforms and containers. This covers all
parameters listed in ``arg_constraints`` as well as lazily cached ones (``probs`` computed from
``logits``), and custom ``Distribution`` subclasses that store their parameters as tensor
attributes. Argument validation keeps the setting of the original (models build their
distributions with ``validate_args=False``).
"""
import copy

from torch import Tensor
from torch.distributions import Distribution
from torch.distributions.transforms import Transform


def _detached(value):
    if isinstance(value, Tensor):
        return value.detach()
    if isinstance(value, (Distribution, Transform)):
        clone = copy.copy(value)
        clone.__dict__.update({key: _detached(item) for key, item in vars(value).items()})
        return clone
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # named tuple
        return type(value)(*(_detached(item) for item in value))
    if isinstance(value, (list, tuple)):
        return type(value)(_detached(item) for item in value)
    if isinstance(value, dict):
        return {key: _detached(item) for key, item in value.items()}
    return value


def detach_parameters(distribution: Distribution) -> Distribution:
    """A copy of ``distribution`` with the same parameters, detached from the autograd graph.

    ``detach_parameters(q).log_prob(z)`` has the value of ``q.log_prob(z)`` and a gradient
    with respect to ``z`` only.
    """
    if not isinstance(distribution, Distribution):
        raise TypeError(f"expected a torch.distributions.Distribution, got {type(distribution).__name__}")
    return _detached(distribution)
