"""Statistics of a gradient estimator over independent gradient samples.

For a fixed data batch ``x`` the estimator is called ``T`` times with fresh particles; each call
gives one gradient sample ``g_t`` of the selected parameters, flattened into ``D`` coordinates.
Per coordinate ``d``::

    mean_d     = 1/T sum_t g_td
    variance_d = 1/(T-1) sum_t (g_td - mean_d)^2            (unbiased)
    snr_d      = |mean_d| / max(sqrt(variance_d), eps)
    mask_d     = variance_d > eps                          (coordinates that carry noise)

and, following Rainforth et al. (2018, "Tighter variational bounds are not necessarily better",
eq. 12), the directional SNR of each sample with ``u = mean / ||mean||``::

    DSNR_t = |u . g_t| / (eps + ||g_t - u (u . g_t)||)

The summary averages variance, |mean| and SNR over the masked coordinates and DSNR over samples.

Samples are drawn in a vectorised way when the estimator and model allow it
(``torch.func.vmap`` over samples of ``torch.func.grad`` of a ``functional_call``, with
``randomness="different"`` so that every sample draws its own particles); otherwise, e.g. when
the estimator registers tensor hooks or reads values with ``.item()``, with one
``torch.autograd.grad`` call per sample. Memory is bounded by ``chunk_size`` rows per forward
pass and by ``sample_memory`` bytes of gradient samples held at once. Sample chunks and their
float64 copies go to buffers allocated once: a loop that allocates megabytes per iteration
between small long-lived tensors fragments the C heap, and its resident memory then grows with
the number of samples.
"""
import logging
import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from ovis.cli import comma_list

logger = logging.getLogger(__name__)

SNR_PERCENTILES = (5, 25, 50, 75, 95)
# Rows (data points x particles x vectorised samples) in one forward pass when chunk_size is None.
DEFAULT_CHUNK_ROWS = 32768
# Bytes of gradient samples held at once (in float64): bounds the vectorised width and, unless
# ``keep_samples`` is given, decides whether the [T, D] float32 samples are stored or streamed.
DEFAULT_SAMPLE_MEMORY = 16 * 2 ** 20


@dataclass
class GradientStatistics:
    """Result of ``gradient_statistics``.

    ``summary``: ``grads/{variance, magnitude, snr, dsnr, keep_ratio[, direction]}`` and
    ``snr/{p5, p25, p50, p75, p95, min, max, mean}`` as floats. Per coordinate (``[D]``, float64):
    ``mean``, ``variance``, ``snr``, ``mask``. Per sample (``[T]``): ``dsnr``. ``samples``:
    ``[T, D]`` float32 gradient samples, or None when they were streamed. ``parameters``: the
    (name, shape) of each selected parameter, in the order its coordinates appear in ``D``.
    """
    summary: Dict[str, float]
    mean: Tensor
    variance: Tensor
    snr: Tensor
    mask: Tensor
    dsnr: Tensor
    samples: Optional[Tensor]
    parameters: List[Tuple[str, torch.Size]] = field(default_factory=list)
    vectorized: bool = False


def select_parameters(model: nn.Module, param_filter: str) -> List[Tuple[str, nn.Parameter]]:
    """Parameters whose name contains any of the comma-separated substrings of ``param_filter``."""
    keys = comma_list(param_filter)
    if not keys:
        raise ValueError(f"param_filter {param_filter!r} names no parameter; give comma-separated "
                         f"substrings of parameter names, e.g. 'inference_network'")
    if any(key.startswith("tensor:") for key in keys):
        raise ValueError("param_filter: gradients w.r.t. model-output tensors ('tensor:' keys) are not "
                         "supported; select parameters by name")
    selected = [(name, p) for name, p in model.named_parameters()
                if p.requires_grad and any(key in name for key in keys)]
    if not selected:
        names = [name for name, _ in model.named_parameters()]
        shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
        raise ValueError(f"param_filter {param_filter!r} matches no trainable parameter; the model has: {shown}")
    return selected


class _Objective(nn.Module):
    """The batch mean of an estimator's surrogate loss, as a module so that
    ``torch.func.functional_call`` can substitute the model's parameters."""

    def __init__(self, estimator: nn.Module, model: nn.Module):
        super().__init__()
        self.estimator = estimator
        self.model = model

    def forward(self, x: Tensor, **runtime) -> Tensor:
        loss = self.estimator(self.model, x, backward=False, return_diagnostics=False, **runtime)
        loss = loss[0] if isinstance(loss, tuple) else loss  # [bs]
        return loss.mean()


class GradientSampler:
    """Draws independent gradient samples ``[c, D]`` of the selected parameters on a fixed batch.

    The gradient of a sample is that of the batch-mean surrogate loss on all of ``x``; when
    ``x`` is too large for ``chunk_size`` rows it is the size-weighted mean of the gradients of
    data chunks (particles are independent across data points, so this is the same estimator).
    """

    def __init__(self, estimator: nn.Module, model: nn.Module, x: Tensor, param_filter: str,
                 chunk_size: Optional[int] = None, sample_memory: int = DEFAULT_SAMPLE_MEMORY,
                 vectorize: bool = True, **runtime):
        self.objective = _Objective(estimator, model)
        self.parameters = select_parameters(model, param_filter)
        self.dim = sum(p.numel() for _, p in self.parameters)
        self.runtime = runtime
        rows = chunk_size or DEFAULT_CHUNK_ROWS
        particles = max(1, int(getattr(estimator, "mc", 1)) * int(getattr(estimator, "iw", 1)))
        points = max(1, min(x.shape[0], rows // particles))
        self.chunks = list(torch.split(x, points))  # [points, *D] each
        self.weights = [chunk.shape[0] / x.shape[0] for chunk in self.chunks]
        by_rows = rows // (points * particles)
        by_memory = sample_memory // (8 * self.dim)  # a chunk is summarised in float64
        self.width = max(1, min(by_rows, by_memory))
        self.vectorized = vectorize and self._vmap_works()

    def _vmap_works(self) -> bool:
        try:
            self._vmap_grads(self.chunks[0], 1)
            return True
        except Exception as error:  # any unsupported operation: fall back to backward passes
            logger.info("gradient samples are drawn one at a time (vmap unavailable: %s: %s)",
                        type(error).__name__, str(error).splitlines()[0] if str(error) else "")
            return False

    def _vmap_grads(self, x: Tensor, width: int) -> Tensor:
        from torch.func import functional_call, grad, vmap

        names = [f"model.{name}" for name, _ in self.parameters]
        params = {name: p.detach() for name, (_, p) in zip(names, self.parameters)}
        runtime = self.runtime

        def loss(params, _sample_index):
            return functional_call(self.objective, params, (x,), runtime)

        with torch.no_grad():  # only grad() differentiates: nothing else builds a graph
            grads = vmap(grad(loss), in_dims=(None, 0), randomness="different")(
                params, torch.arange(width, device=x.device))
        return torch.cat([grads[name].reshape(width, -1) for name in names], dim=1)  # [width, D]

    def _loop_grads(self, x: Tensor, width: int, out: Tensor) -> Tensor:
        """Write ``width`` samples into ``out [width, D]`` (float32), one backward pass each."""
        params = [p for _, p in self.parameters]
        for i in range(width):
            with torch.enable_grad():
                loss = self.objective(x, **self.runtime)
                grads = torch.autograd.grad(loss, params, allow_unused=True)
            start = 0
            for p, g in zip(params, grads):
                target = out[i, start:start + p.numel()]
                if g is None:  # an unused parameter has a zero gradient
                    target.zero_()
                else:
                    target.copy_(g.flatten())
                start += p.numel()
        return out

    def draw(self, n_samples: int) -> Iterator[Tensor]:
        """Yield float32 chunks ``[c, D]`` totalling ``n_samples`` independent samples.

        The chunks share one buffer: a chunk is valid until the next one is drawn (clone it to keep it)."""
        device = self.chunks[0].device
        total = torch.empty(min(self.width, n_samples), self.dim, device=device)  # [width, D]
        piece = torch.empty_like(total) if len(self.chunks) > 1 else None  # one data chunk's samples
        for start in range(0, n_samples, self.width):
            width = min(self.width, n_samples - start)
            for i, (chunk, weight) in enumerate(zip(self.chunks, self.weights)):
                target = total[:width] if i == 0 else piece[:width]
                if self.vectorized:
                    target.copy_(self._vmap_grads(chunk, width))
                else:
                    self._loop_grads(chunk, width, target)
                if i == 0:
                    target.mul_(weight)
                else:
                    total[:width].add_(target, alpha=weight)
            yield total[:width]


def _summary(mean: Tensor, variance: Tensor, dsnr: Tensor, epsilon: float,
             oracle: Optional[Tensor]) -> Tuple[Dict[str, float], Tensor, Tensor]:
    """Aggregate statistics from per-coordinate moments ([D], float64) and per-sample DSNR ([T]).
    At most two more [D] vectors than ``snr`` are alive at a time (D is about 240,000 for the
    inference network of a 3 x 200 SBN)."""
    snr = mean.abs().div_(variance.sqrt().clamp_(min=epsilon))  # [D]
    mask = variance > epsilon  # [D]

    def kept(values: Tensor) -> float:
        return values[mask].mean().item() if bool(mask.any()) else float("nan")

    summary = {
        "grads/variance": kept(variance),
        "grads/magnitude": kept(mean.abs()),
        "grads/snr": kept(snr),
        "grads/dsnr": dsnr.mean().item(),
        "grads/keep_ratio": mask.double().mean().item(),
    }
    ordered = np.sort(snr.cpu().numpy())  # values only: torch.sort would also allocate [D] int64 indices
    for q in SNR_PERCENTILES:
        index = min(int(math.floor(q / 100 * len(ordered))), len(ordered) - 1)
        summary[f"snr/p{q}"] = float(ordered[index])
    summary.update({"snr/min": float(ordered[0]), "snr/max": float(ordered[-1]), "snr/mean": snr.mean().item()})
    if oracle is not None:
        oracle = oracle.to(mean).flatten()
        summary["grads/direction"] = torch.nn.functional.cosine_similarity(mean, oracle, dim=0).item()
    return summary, snr, mask


def _dsnr(projections: Tensor, squared_norms: Tensor, epsilon: float) -> Tensor:
    """DSNR per sample from ``u . g_t`` and ``||g_t||^2`` (both [T], float64)."""
    perpendicular = (squared_norms - projections ** 2).clamp(min=0).sqrt()
    return projections.abs() / (epsilon + perpendicular)


def gradient_statistics(estimator: nn.Module, model: nn.Module, x: Tensor, n_samples: int,
                        param_filter: str, epsilon: float = 1e-15, chunk_size: Optional[int] = None,
                        *, keep_samples: Optional[bool] = None, sample_memory: int = DEFAULT_SAMPLE_MEMORY,
                        vectorize: bool = True, oracle: Optional[Tensor] = None,
                        **runtime) -> GradientStatistics:
    """Mean, variance, SNR and DSNR of ``n_samples`` independent gradient estimates.

    Args:
        estimator: an ovis estimator, called as ``estimator(model, x, backward=False, **runtime)``.
        model: the model; it is used in its current mode (call ``model.eval()`` first to keep
            batch-norm statistics untouched) and its ``.grad`` fields are not modified.
        x: the fixed data batch ``[bs, *x_shape]``.
        n_samples: T >= 2 gradient samples.
        param_filter: comma-separated substrings; a parameter is analysed if its name contains one.
        epsilon: variance threshold of the coordinate mask and floor of the standard deviation.
        chunk_size: at most this many rows (data points x particles x vectorised samples) per
            forward pass (default 32768).
        keep_samples: return the ``[T, D]`` samples. Default: only when they fit in
            ``sample_memory`` bytes. Without them, DSNR takes a second, identically seeded
            pass over the same samples.
        sample_memory: bytes of samples processed at once (default 16 MiB).
        vectorize: try ``torch.func.vmap`` over samples before falling back to a loop.
        oracle: optional reference gradient ``[D]``; adds ``grads/direction`` = cosine(mean, oracle).
        **runtime: call-time options of the estimator (alpha, beta, tau, freebits).
    """
    if n_samples < 2:
        raise ValueError(f"n_samples must be >= 2 to estimate a variance, got {n_samples}")
    sampler = GradientSampler(estimator, model, x, param_filter, chunk_size=chunk_size,
                              sample_memory=sample_memory, vectorize=vectorize, **runtime)
    if keep_samples is None:
        keep_samples = 4 * n_samples * sampler.dim <= sample_memory

    # The samples are drawn from this seed, so that a second pass can regenerate them exactly.
    seed = int(torch.randint(2 ** 62, (1,)).item())
    moments, kept = _Moments(n_samples, sampler.width, sampler.dim, x.device), []
    with _seeded(seed, x.device):
        for chunk in sampler.draw(n_samples):  # [c, D]
            moments.add(chunk)
            if keep_samples:
                kept.append(chunk.clone())
    mean, variance, squared_norms = moments.result()
    direction = mean / mean.norm()  # [D]
    if keep_samples:
        samples = torch.cat(kept)  # [T, D]
        projections = torch.cat([chunk.double() @ direction for chunk in kept])  # [T]
    else:
        samples = None
        with _seeded(seed, x.device):
            projections = torch.cat([moments.as_double(chunk) @ direction for chunk in sampler.draw(n_samples)])
    del moments, direction  # their [D] vectors and [width, D] buffer are no longer needed

    dsnr = _dsnr(projections, squared_norms, epsilon)
    summary, snr, mask = _summary(mean, variance, dsnr, epsilon, oracle)
    return GradientStatistics(summary=summary, mean=mean, variance=variance, snr=snr, mask=mask, dsnr=dsnr,
                              samples=samples, vectorized=sampler.vectorized,
                              parameters=[(name, p.shape) for name, p in sampler.parameters])


class _Moments:
    """Per-coordinate mean and unbiased variance with the shifted-data algorithm (sums of
    ``g - g_1`` in float64, stable when the mean dwarfs the spread), and per-sample squared
    norms, accumulated one chunk of at most ``width`` samples at a time."""

    def __init__(self, n_samples: int, width: int, dim: int, device: torch.device):
        self.shift = self.total = self.squares = None  # [D] each
        self.squared_norms = torch.empty(n_samples, dtype=torch.float64, device=device)  # [T]
        self.values = torch.empty(min(width, n_samples), dim, dtype=torch.float64, device=device)  # [width, D]
        self.count = 0

    def as_double(self, chunk: Tensor) -> Tensor:
        """``chunk [c, D]`` copied to float64 into the buffer (valid until the next call)."""
        return self.values[:chunk.shape[0]].copy_(chunk)

    def add(self, chunk: Tensor) -> None:
        values = self.as_double(chunk)  # [c, D], modified in place below
        torch.linalg.vector_norm(values, dim=1, out=self.squared_norms[self.count:self.count + chunk.shape[0]])
        if self.shift is None:
            self.shift = values[0].clone()
            self.total, self.squares = torch.zeros_like(self.shift), torch.zeros_like(self.shift)
        values -= self.shift
        self.total += values.sum(0)
        self.squares += values.square_().sum(0)
        self.count += chunk.shape[0]

    def result(self) -> Tuple[Tensor, Tensor, Tensor]:
        n = self.count
        mean = self.shift + self.total / n
        variance = ((self.squares - self.total ** 2 / n) / (n - 1)).clamp(min=0)
        return mean, variance, self.squared_norms[:n] ** 2


@contextmanager
def _seeded(seed: int, device: torch.device):
    """Run with the global RNGs seeded by ``seed``, restoring their state afterwards."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


def get_gradients_statistics(estimator: nn.Module, model: nn.Module, x: Tensor, n_samples: int = 100,
                             key_filter: str = "inference_network", true_grads: Optional[Tensor] = None,
                             return_grads: bool = False, use_dsnr: bool = False,
                             samples_per_batch: Optional[int] = None, mc_samples: Optional[int] = None,
                             **runtime) -> Tuple[Dict[str, Dict[str, Tensor]], Dict[str, Optional[Tensor]]]:
    """Thin compatibility wrapper with the original OVIS API over ``gradient_statistics`` (new code
    should call that): same arguments and return shapes as the original's function, except the
    default ``key_filter`` (the original's ``qlogits`` names no parameter of the models here).

    ``n_samples`` (``mc_samples``, the name the original README used) gradient samples of the
    parameters whose names contain one of the comma-separated ``key_filter`` substrings, computed
    in eval mode (the model's mode is restored afterwards); ``samples_per_batch``: at most this many
    rows per forward pass; ``true_grads``: adds ``grads/direction``; ``**runtime``: the estimator's
    call-time options (alpha, beta, ...).

    Returns ``(statistics, meta)``: ``statistics = {"grads": {"variance", "magnitude", "snr", "dsnr",
    "keep_ratio"[, "direction"]}, "snr": {"p5", "p25", "p50", "p75", "p95", "min", "max", "mean"}}``
    (scalar tensors; DSNR is always computed, the original gave 0 without ``use_dsnr``) and
    ``meta = {"grads": [T, D] samples (with ``return_grads`` or ``use_dsnr``, else None),
    "expected": mean [D], "magnitude": |mean| [D], "var": variance [D], "snr": [D]}``.
    """
    n_samples = n_samples if mc_samples is None else mc_samples
    training = model.training
    model.eval()
    try:
        result = gradient_statistics(estimator, model, x, n_samples, key_filter, chunk_size=samples_per_batch,
                                     keep_samples=return_grads or use_dsnr, oracle=true_grads, **runtime)
    finally:
        model.train(training)
    statistics: Dict[str, Dict[str, Tensor]] = {"grads": {}, "snr": {}}
    for name, value in result.summary.items():
        group, key = name.split("/", 1)
        statistics[group][key] = torch.tensor(value)
    meta = {"grads": result.samples, "expected": result.mean, "magnitude": result.mean.abs(), "var": result.variance,
            "snr": result.snr}
    return statistics, meta
