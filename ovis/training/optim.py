"""The optimisers of ``run.py``: any ``torch.optim`` optimiser, chosen by name (``--optimizer``,
as in the original code, whose choices ``sgd``, ``adam``, ``adamax``, ``rmsprop`` are among them).

The paper trains with Adam (Kingma & Ba, 2015, Algorithm 1). Where torch has a fused kernel for
the optimiser and the parameters' device (Adam, AdamW, SGD, Adagrad on CUDA, and on CPU since
torch 2.4), the update of all parameters runs in it (``fused=True``); elsewhere torch's default
(multi-tensor ``foreach``) implementation runs. Both compute the same update.

``--adam_betas B1,B2`` sets the decay rates of the moment estimates of the optimisers that have
them (Adam's family); the REBAR code (Tucker et al., 2017) trains with beta2 = 0.99999.
"""
import inspect
from typing import Dict, Iterable, Optional, Tuple

import torch

# Optimisers that need more than ``step()`` (a closure, sparse gradients): not offered.
UNSUITABLE = frozenset({"lbfgs", "sparseadam"})


def _torch_optimizers() -> Dict[str, type]:
    """Every ``torch.optim`` optimiser class, by lower-case name (``adam``, ``adamw``, ``sgd``...)."""
    classes = {name.lower(): cls for name, cls in vars(torch.optim).items()
               if isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer) and cls is not torch.optim.Optimizer}
    return {name: classes[name] for name in sorted(classes) if name not in UNSUITABLE}


OPTIMIZERS = _torch_optimizers()


def make_optimizer(name: str, params: Iterable[torch.Tensor], lr: float,
                   betas: Optional[Tuple[float, float]] = None) -> torch.optim.Optimizer:
    """``torch.optim`` optimiser ``name`` (lower case, e.g. ``adam``) over ``params`` with learning
    rate ``lr``, ``betas`` when given (else torch's) and torch's other defaults, in the fused
    kernel where one exists for the device."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimiser {name!r}: choose one of {', '.join(OPTIMIZERS)}")
    optimizer_class, params = OPTIMIZERS[name], list(params)
    accepted = inspect.signature(optimizer_class).parameters
    options = {"lr": lr}
    if betas is not None:
        if "betas" not in accepted:
            raise ValueError(f"--adam_betas: optimiser {name!r} has no betas; choose one of "
                             f"{', '.join(optimizers_with_betas())} or drop --adam_betas")
        options["betas"] = tuple(betas)
    if "fused" in accepted:
        try:
            return optimizer_class(params, fused=True, **options)
        except RuntimeError:  # no fused kernel for this device or dtype in this torch
            pass
    return optimizer_class(params, **options)


def optimizers_with_betas() -> Tuple[str, ...]:
    """Names of the optimisers that take ``betas`` (Adam's family)."""
    return tuple(name for name, cls in OPTIMIZERS.items() if "betas" in inspect.signature(cls).parameters)


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: Dict) -> None:
    """``optimizer.load_state_dict(state)``, keeping the kernel chosen by ``make_optimizer``: torch
    takes ``fused`` / ``foreach`` from the saved groups (and places the step counts by them),
    which may come from another device or from ovis's earlier hand-written Adam (same layout)."""
    groups = [{**saved, **{key: group[key] for key in ("fused", "foreach") if key in group}}
              for saved, group in zip(state["param_groups"], optimizer.param_groups)]
    optimizer.load_state_dict({**state, "param_groups": groups + state["param_groups"][len(groups):]})
