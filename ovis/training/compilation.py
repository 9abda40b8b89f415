"""``run.py --compile``: the training step as compiled programs (``torch.compile``).

* the whole step (``compiled_training_step``), where every optimiser is run.py's Adam: the
  estimator's forward pass (sampling included), the surrogate, its gradients and the Adam update
  of every parameter, traced together into one graph (dynamo's ``trace_autograd_ops`` traces
  ``torch.autograd.grad``). Inductor fuses each parameter's update into the kernel that follows
  its gradient's matrix product. The Adam update is written out here because torch's own
  (``torch.optim.adam.adam``, capturable as it must be under ``torch.compile``) computes the bias
  corrections from the step tensor inside every element loop; here they are computed once per
  step on the host and passed in as tensors, so the graph is not recompiled as they change. The
  update is the one of ``torch.optim.Adam`` (same state: ``step``, ``exp_avg``, ``exp_avg_sq``),
  so checkpoints and resumed runs do not depend on it. The graph also computes the step's row of
  the training monitor (``ovis.training.monitor.summary``), so that nothing but its storing runs
  outside it;
* otherwise (another optimiser, a per-step gradient analysis that reads ``.grad``, or an
  estimator whose call breaks the graph) the gradient pass: forward pass and ``backward()``
  traced together (``compiled_gradient_pass``); where that breaks the graph (NVIL updates its
  statistics outside the graph, and a ``backward()`` traced after a break leaves the parameters
  without gradients) the estimator's call compiled and an eager ``backward()``; each
  optimiser's ``step`` compiled on its own (``torch.optim`` breaks the graph around its update
  on purpose: the update must be traced without gradient).

Every compiled program draws its random numbers from torch's generator (``compile_options``), as
the eager step does: a compiled run draws the eager run's samples.

On CUDA both run as CUDA graphs (``mode="reduce-overhead"``): one launch replays the step's
kernels. The CUDA path is untested (no GPU was lent to this project so far).
"""
import types
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

# run.py --compile auto: compiled where the faster step repays the compilation. Both bounds come from
# benchmarks/results.md (compilation time on a loaded machine over the saving per step at K = 5, doubled;
# the compiled step is faster at K = 5 and 50, the largest K measured).
COMPILE_SETTINGS = ("auto", "on", "off")
COMPILE_MIN_STEPS = 200_000
COMPILE_MAX_PARTICLES = 50  # mc * iw
# Adam settings the whole-step update implements (run.py's make_optimizer leaves them so)
PLAIN_ADAM = {"amsgrad": False, "weight_decay": 0, "maximize": False, "differentiable": False}


def compiles(setting, total_steps: int, particles: int, compile_problem: Optional[str]) -> bool:
    """Whether run.py compiles a run of ``total_steps`` steps of ``particles`` (mc * iw) particles per
    data point with ``--compile setting`` (``compile_problem``: the estimator's, None when it can be compiled)."""
    if setting in ("auto", None):
        return compile_problem is None and total_steps >= COMPILE_MIN_STEPS and particles <= COMPILE_MAX_PARTICLES
    return setting in ("on", True)


def compile_mode(device: torch.device) -> str:
    """``reduce-overhead`` (CUDA graphs) on CUDA, inductor's default elsewhere."""
    return "reduce-overhead" if device.type == "cuda" else "default"


def compile_options(device: torch.device, cuda_graphs: bool = True) -> Dict[str, Any]:
    """Inductor's options for ``device``: those of ``compile_mode`` (or of the default mode),
    torch's own random draws (``fallback_random``: the compiled step draws the eager step's samples,
    and on a CPU torch's generator is faster than inductor's per-element Philox) and, on a CPU,
    inductor's C++ wrapper (``cpp_wrapper``: the program's kernels called from C++ rather than from
    a Python function; on CUDA the graph replay already leaves Python out)."""
    import torch._inductor
    mode = compile_mode(device) if cuda_graphs else "default"
    return {**torch._inductor.list_mode_options(mode), "fallback_random": True, "cpp_wrapper": device.type == "cpu"}


# The whole step's arguments (``compiled_training_step``): the guards on them stay (``run_guards``)
STEP_ARGUMENTS = ("x", "scalars", "runtime")


def run_guards(entries: Sequence[Any]) -> List[bool]:
    """``torch.compile``'s ``guard_filter_fn`` for a program that belongs to one run: which of
    dynamo's guards (``torch._dynamo.types.GuardFilterEntry``) are checked before every call.

    Kept: the guards on the program's arguments (``STEP_ARGUMENTS``: a new batch size or a new value
    of an annealed option recompiles), on every tensor (dtype, device, shape: a moved or resized
    parameter or optimiser state recompiles), on the ``training`` flags and on the global state
    (grad mode, default device, deterministic algorithms). Left out: those on the other Python
    attributes of the run's model, estimator and optimiser (their hyperparameters and structure)
    and on the identity of the library's functions. The run builds these objects once and does
    not reconfigure them while it trains; checked at every call, their guards are most of the
    step's time outside the compiled program at small K (``benchmarks/results.md``). The program
    needs a code object of its own (``own_code``): dynamo looks up compiled programs per code
    object, and without the guards left out, another run's program of the same shapes would pass
    for this run's."""
    return [not entry.name or entry.name.split("[")[0].split(".")[0] in STEP_ARGUMENTS
            or entry.guard_type == "TENSOR_MATCH" or entry.name.endswith(".training") for entry in entries]


def _fall_back_on_graph_break(compiled: Callable, fallback: Callable) -> Callable:
    """``compiled`` (traced with ``backward()``/``autograd.grad`` inside), or ``fallback`` for
    every call from the first that breaks the graph: dynamo refuses before running anything, so
    the call that found out runs once, in ``fallback``."""
    # imported here: importing dynamo costs about a second, which run.py --help and uncompiled runs skip
    import torch._dynamo.config as dynamo_config
    import torch._functorch.config as functorch_config
    current = {"call": compiled}
    # read when dynamo traces (first call, recompiles); the fallback's compiled estimator call keeps its
    # backward buffers: estimators that differentiate inside their call (double-cv, rodeo) retain the graph.
    # Made once: a patch made per call cost three times as much as entering one.
    settings = (dynamo_config.patch(trace_autograd_ops=True), functorch_config.patch(donated_buffer=False))

    def call(*args, **kwargs):
        with settings[0], settings[1]:
            if current["call"] is fallback:
                return fallback(*args, **kwargs)
            try:
                return current["call"](*args, **kwargs)
            except torch._dynamo.exc.TorchDynamoException:  # a graph break, or a construct dynamo cannot trace
                current["call"] = fallback
                return fallback(*args, **kwargs)
    return call


def own_code(function: Callable) -> Callable:
    """``function`` on a copy of its code object: dynamo keeps compiled programs, and counts
    recompilations, per code object, so that the copy's programs are its caller's alone."""
    return types.FunctionType(function.__code__.replace(), function.__globals__, function.__name__,
                              function.__defaults__, function.__closure__)


def evaluation_compiler(device: torch.device) -> Callable[[Callable], Callable]:
    """The ``compiler`` of a compiled run's bound evaluations (``BoundEvaluator``): each chunk's
    forward pass one program, on a code object of its own per evaluator, without CUDA graphs (a
    chunk of thousands of rows leaves the launches negligible); where dynamo cannot trace it, the
    eager pass."""
    def compiler(function: Callable) -> Callable:
        compiled = torch.compile(own_code(function), options=compile_options(device, cuda_graphs=False))
        return _fall_back_on_graph_break(compiled, function)
    return compiler


def compiled_gradient_pass(function: Callable, device: torch.device, fallback: Callable) -> Callable:
    """``function`` (forward pass, ``backward()`` inside) compiled as one graph for ``device``;
    where it cannot be one graph, every call goes to ``fallback`` instead."""
    compiled = torch.compile(function, options=compile_options(device), fullgraph=True)
    return _fall_back_on_graph_break(compiled, fallback)


def compiled_optimizer_step(optimizer: torch.optim.Optimizer, device: torch.device) -> Callable:
    """``optimizer.step`` compiled for ``device`` (torch's compiled optimiser)."""
    return torch.compile(optimizer.step, options=compile_options(device))


class AdamGroups:
    """The parameter groups of ``torch.optim.Adam`` optimisers, their state created as Adam's
    first step creates it, and the bias-corrected scalars of each step (computed on the host)."""

    def __init__(self, optimizers: Sequence[torch.optim.Optimizer]):
        self.optimizers = list(optimizers)
        self.groups: List[Dict] = []  # (load_state_dict replaces the groups and the state: both read on first use)
        self.states: List[List[Dict]] = []
        self.steps: Optional[List[int]] = None  # per group: read from the state on first use (a resumed run's)

    @staticmethod
    def supports(optimizers: Sequence[torch.optim.Optimizer]) -> bool:
        return all(type(optimizer) is torch.optim.Adam for optimizer in optimizers) and all(
            not isinstance(group["lr"], Tensor) and all(group.get(key, value) == value for key, value in PLAIN_ADAM.items())
            for optimizer in optimizers for group in optimizer.param_groups)

    def prepare(self, device: torch.device) -> Tensor:
        """``[groups, 2]``: ``lr / (1 - beta1^t)`` and ``sqrt(1 - beta2^t)`` of this step ``t``."""
        if self.steps is None:  # the state loaded from a checkpoint, or created as Adam's first step creates it
            for optimizer in self.optimizers:
                for group in optimizer.param_groups:
                    self.groups.append(group)
                    for p in group["params"]:
                        if not optimizer.state[p]:
                            optimizer.state[p].update(
                                step=torch.zeros((), dtype=torch.float32, device=p.device),
                                exp_avg=torch.zeros_like(p, memory_format=torch.preserve_format),
                                exp_avg_sq=torch.zeros_like(p, memory_format=torch.preserve_format))
                    self.states.append([optimizer.state[p] for p in group["params"]])
            self.steps = [int(states[0]["step"]) if states else 0 for states in self.states]
        self.steps = [t + 1 for t in self.steps]
        scalars = [(group["lr"] / (1 - group["betas"][0] ** t), (1 - group["betas"][1] ** t) ** 0.5)
                   for group, t in zip(self.groups, self.steps)]
        return torch.tensor(scalars, dtype=torch.float32).to(device, non_blocking=True)

    def update(self, gradients: Sequence[Optional[Tensor]], scalars: Tensor) -> None:
        """One Adam step of every parameter with a gradient (``gradients``: group after group)."""
        position = 0
        for index, (group, states) in enumerate(zip(self.groups, self.states)):
            beta1, beta2 = group["betas"]
            kept = [(p, g, s) for p, g, s in zip(group["params"], gradients[position:], states) if g is not None]
            position += len(group["params"])
            if not kept:
                continue
            params, grads, state = zip(*kept)
            exp_avg, exp_avg_sq = [s["exp_avg"] for s in state], [s["exp_avg_sq"] for s in state]
            torch._foreach_add_([s["step"] for s in state], 1)
            torch._foreach_lerp_(exp_avg, grads, 1 - beta1)
            torch._foreach_mul_(exp_avg_sq, beta2)
            torch._foreach_addcmul_(exp_avg_sq, grads, grads, 1 - beta2)
            denominator = torch._foreach_sqrt(exp_avg_sq)
            torch._foreach_div_(denominator, scalars[index, 1])
            torch._foreach_add_(denominator, group["eps"])
            steps = torch._foreach_div(exp_avg, denominator)
            torch._foreach_mul_(steps, scalars[index, 0])
            torch._foreach_sub_(list(params), steps)


def compiled_training_step(gradients: Callable[..., Tuple[Tensor, Dict, Sequence[Optional[Tensor]]]],
                           optimizers: Sequence[torch.optim.Optimizer], device: torch.device,
                           fallback: Callable, summarise: Callable[[Tensor, Dict], Any]) -> Optional[Callable]:
    """``step(x, **runtime) -> summarise(loss, diagnostics)``: ``gradients(x, **runtime) -> (loss,
    diagnostics, gradients of the optimisers' parameters)``, the Adam update and the step's summary
    (the monitor's row), compiled as one graph for ``device``; where that breaks the graph,
    ``fallback`` (``(x, **runtime) -> (loss, diagnostics)``) for every call. None where an
    optimiser is not plain ``torch.optim.Adam``."""
    if not AdamGroups.supports(optimizers):
        return None
    adam = AdamGroups(optimizers)

    def step(x: Tensor, scalars: Tensor, **runtime):
        loss, diagnostics, grads = gradients(x, **runtime)
        with torch.no_grad():
            adam.update(grads, scalars)
        return summarise(loss, diagnostics)

    # own_code: run_guards leaves out the guards that would tell this run's objects from another run's
    options = {**compile_options(device), "guard_filter_fn": run_guards}
    compiled = _fall_back_on_graph_break(torch.compile(own_code(step), options=options, fullgraph=True),
                                         lambda x, scalars, **runtime: summarise(*fallback(x, **runtime)))

    def training_step(x: Tensor, **runtime):
        return compiled(x, adam.prepare(device), **runtime)
    return training_step
