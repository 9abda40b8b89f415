"""Adam (Kingma & Ba, 2015, "Adam: A Method for Stochastic Optimization", Algorithm 1), the
optimiser of the paper's experiments, updating all parameters of a device in one fused kernel
(``torch._fused_adam_``, the kernel of ``torch.optim.Adam(fused=True)``).

``torch.optim.Adam`` computes the same update, but every ``torch.optim`` optimiser imports
``torch._dynamo`` on its first call (about 70 MB of resident memory on a CPU); this class does
not, which keeps a binarized-MNIST run within its memory budget. On a CPU the fused kernel
takes a sixth of the time of the multi-tensor (``foreach``) update. The ``state_dict`` has the
layout of ``torch.optim.Adam`` (``state[i] = {"step", "exp_avg", "exp_avg_sq"}``,
``param_groups[j]["params"]`` as indices), so checkpoints are interchangeable. Update of a
parameter ``p`` with gradient ``g`` at step ``t``::

    m = beta1 m + (1 - beta1) g
    v = beta2 v + (1 - beta2) g^2
    p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
"""
from collections import defaultdict
from typing import Dict, Iterable, List, Tuple, Union

import torch
from torch import Tensor

ParamsOrGroups = Union[Iterable[Tensor], Iterable[Dict]]
# The options of ``torch.optim.Adam`` that this class implements, stored in every saved group so
# that torch can load the state; a saved state with other values is refused.
TORCH_ADAM_OPTIONS = {"weight_decay": 0.0, "amsgrad": False, "maximize": False, "foreach": None,
                      "capturable": False, "differentiable": False, "fused": None, "decoupled_weight_decay": False}


class Adam:
    """Adam without weight decay or AMSGrad, step for step equal to ``torch.optim.Adam`` with
    the same ``lr``, ``betas`` and ``eps``.

    ``params``: tensors, or dicts with a ``params`` list and optional per-group ``lr``,
    ``betas``, ``eps``. ``param_groups`` is public: learning-rate schedules set ``group["lr"]``.
    """

    def __init__(self, params: ParamsOrGroups, lr: float = 1e-3, betas: Tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8):
        defaults = {"lr": float(lr), "betas": tuple(float(b) for b in betas), "eps": float(eps)}
        _check_hyperparameters(defaults)
        params = list(params)
        if not params:
            raise ValueError("Adam got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        self.param_groups: List[Dict] = []
        for group in groups:
            group = {**defaults, **group, "params": list(group["params"])}
            group["betas"] = tuple(group["betas"])
            _check_hyperparameters(group)
            self.param_groups.append(group)
        self.state: Dict[Tensor, Dict] = defaultdict(dict)  # per parameter: step, exp_avg, exp_avg_sq

    @torch.no_grad()
    def step(self) -> None:
        """One update of every parameter that has a gradient."""
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            batches: Dict[Tuple, Tuple[List[Tensor], ...]] = defaultdict(lambda: ([], [], [], [], []))
            for param in group["params"]:
                if param.grad is None:
                    continue
                if param.grad.is_sparse:
                    raise RuntimeError("Adam does not support sparse gradients")
                state = self.state[param]
                if not state:
                    # the step count lives on the parameter's device: the kernel reads it without a host sync
                    state.update(step=torch.zeros((), dtype=torch.float32, device=param.device),
                                 exp_avg=torch.zeros_like(param, memory_format=torch.preserve_format),
                                 exp_avg_sq=torch.zeros_like(param, memory_format=torch.preserve_format))
                batch = batches[(param.device, param.dtype)]
                for values, value in zip(batch, (param, param.grad, state["exp_avg"], state["exp_avg_sq"],
                                                 state["step"])):
                    values.append(value)
            for params, grads, exp_avgs, exp_avg_sqs, steps in batches.values():
                torch._foreach_add_(steps, 1.0)
                torch._fused_adam_(params, grads, exp_avgs, exp_avg_sqs, [], steps, lr=group["lr"], beta1=beta1,
                                   beta2=beta2, weight_decay=0.0, eps=group["eps"], amsgrad=False, maximize=False)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                if set_to_none:
                    param.grad = None
                else:
                    param.grad.detach_().zero_()

    def state_dict(self) -> Dict:
        """``{"state": {index: {"step", "exp_avg", "exp_avg_sq"}}, "param_groups": [...]}``, parameters
        numbered in group order (the layout of ``torch.optim.Adam``; ``step`` a float32 tensor)."""
        state, groups, index = {}, [], 0
        for group in self.param_groups:
            indices = list(range(index, index + len(group["params"])))
            for i, param in zip(indices, group["params"]):
                if self.state.get(param):
                    state[i] = dict(self.state[param])
            options = {k: v for k, v in group.items() if k != "params"}
            groups.append({**options, **TORCH_ADAM_OPTIONS, "params": indices})
            index += len(indices)
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: Dict) -> None:
        """Load a state from ``state_dict()`` of this class or of ``torch.optim.Adam``; moments are
        moved to their parameter's device and dtype, step counts to its device."""
        groups = state_dict["param_groups"]
        if [len(g["params"]) for g in groups] != [len(g["params"]) for g in self.param_groups]:
            raise ValueError(f"the saved optimiser state has groups of {[len(g['params']) for g in groups]} "
                             f"parameters, this optimiser {[len(g['params']) for g in self.param_groups]}")
        for saved_group in groups:
            unsupported = {key: saved_group[key] for key in ("weight_decay", "amsgrad", "maximize")
                           if saved_group.get(key, TORCH_ADAM_OPTIONS[key]) != TORCH_ADAM_OPTIONS[key]}
            if unsupported:
                raise ValueError(f"the saved optimiser state uses Adam options this Adam does not implement: "
                                 f"{unsupported}")
        self.state = defaultdict(dict)
        for group, saved_group in zip(self.param_groups, groups):
            for key in ("lr", "betas", "eps"):
                if key in saved_group:
                    group[key] = tuple(saved_group[key]) if key == "betas" else float(saved_group[key])
            for param, index in zip(group["params"], saved_group["params"]):
                saved = state_dict["state"].get(index)
                if saved is None:
                    continue
                self.state[param] = {
                    "step": torch.as_tensor(saved["step"], dtype=torch.float32).to(param.device, copy=True),
                    "exp_avg": saved["exp_avg"].to(param, copy=True),
                    "exp_avg_sq": saved["exp_avg_sq"].to(param, copy=True)}

    def __repr__(self) -> str:
        groups = ", ".join(f"(lr={g['lr']}, betas={g['betas']}, eps={g['eps']}, {len(g['params'])} tensors)"
                           for g in self.param_groups)
        return f"Adam({groups})"


def _check_hyperparameters(group: Dict) -> None:
    beta1, beta2 = group["betas"]
    if not group["lr"] >= 0:
        raise ValueError(f"Adam: lr={group['lr']!r} must be >= 0")
    if not (0 <= beta1 < 1 and 0 <= beta2 < 1):
        raise ValueError(f"Adam: betas={group['betas']!r} must be in [0, 1)")
    if not group["eps"] >= 0:
        raise ValueError(f"Adam: eps={group['eps']!r} must be >= 0")
