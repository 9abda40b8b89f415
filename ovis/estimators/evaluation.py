"""Evaluation of the importance weighted bound L_K with many particles in bounded memory."""
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

from .particles import Particles, RuntimeOptions, base_diagnostics, model_diagnostics, sample_particles


class BoundEvaluator(nn.Module):
    """The plain bound L_K (alpha = 0, beta = 1, no free bits) and the base diagnostics, under
    ``no_grad`` (Burda et al., 2016: L_5000 as a log-likelihood estimate).

    Particles are drawn in chunks of at most ``chunk_size`` rows (data points x particles; all
    at once when None), so that K = 5000 runs in memory bounded by the chunk; only the per-particle
    log-densities ``[bs, K]`` are kept. Same call as the estimators:
    ``loss, diagnostics, output = evaluator(model, x)`` with ``loss = -L_K [bs]``; ``output`` is the
    model output of the last chunk. The only runtime option is ``tau`` (relaxed latents).

    ``compiler`` (optional, e.g. ``torch.compile`` with options) compiles the pass of one chunk,
    which then returns tensors only: ``output`` then holds the last chunk's latents ``z`` alone.
    """

    def __init__(self, iw: int, chunk_size: Optional[int] = None,
                 compiler: Optional[Callable[[Callable], Callable]] = None):
        super().__init__()
        if isinstance(iw, bool) or not float(iw).is_integer() or iw < 1:
            raise ValueError(f"iw={iw!r}: expected an integer >= 1")
        if chunk_size is not None and (isinstance(chunk_size, bool) or chunk_size < 1):
            raise ValueError(f"chunk_size={chunk_size!r}: expected None or an integer >= 1 (rows per forward pass)")
        self.iw = int(iw)
        self.chunk_size = None if chunk_size is None else int(chunk_size)
        self.compiled = compiler is not None
        self.chunk_pass = _chunk_pass if compiler is None else compiler(_tensors_of_chunk_pass)

    def chunk_layout(self, bs: int) -> Tuple[int, int]:
        """(data points, particles) per forward pass of a batch of ``bs`` data points."""
        if self.chunk_size is None:
            return bs, self.iw
        particles = max(1, min(self.iw, self.chunk_size // bs))
        return max(1, min(bs, self.chunk_size // particles)), particles

    @torch.no_grad()
    def forward(self, model: nn.Module, x: Tensor, backward: bool = False, return_diagnostics: bool = True,
                **runtime) -> Tuple[Tensor, Dict[str, Tensor], Dict]:
        if backward:
            raise ValueError("BoundEvaluator computes L_K without gradients; backward=True is not allowed")
        extra = sorted(set(runtime) - {"tau"})
        if extra:
            raise ValueError(f"BoundEvaluator computes the plain L_K (alpha=0, beta=1, no free bits); runtime "
                             f"options {extra} are not accepted, only tau")
        options = RuntimeOptions(tau=float(runtime.get("tau", 0.0)))
        bs = x.shape[0]
        points, particles = self.chunk_layout(bs)
        densities: Optional[List[Tensor]] = None  # log p(x|z) [bs, 1, iw], log q, log p(z) [bs, 1, iw, G]
        diagnostics_pieces: List[Dict[str, Tensor]] = []
        output: Dict = {}
        for first in range(0, bs, points):
            x_piece = x[first:first + points]  # [p, *D]
            piece_diagnostics: Dict[str, Tensor] = {}
            for start in range(0, self.iw, particles):
                output = {}  # the previous chunk's rows are freed before the next forward pass
                count = min(particles, self.iw - start)
                values, chunk_diagnostics, output = self.chunk_pass(model, x_piece, count, options, return_diagnostics)
                # Chunks write into buffers allocated once, so that memory holds one chunk's rows
                # and the [bs, iw] log-densities, and freed chunks leave no gaps in the heap.
                if densities is None:
                    densities = [value.new_empty((bs, 1, self.iw) + value.shape[3:]) for value in values]
                for buffer, value in zip(densities, values):
                    buffer[first:first + x_piece.shape[0], :, start:start + count] = value
                _accumulate(piece_diagnostics, chunk_diagnostics, count / self.iw)
                del values, chunk_diagnostics
            diagnostics_pieces.append(piece_diagnostics)
        diagnostics = base_diagnostics(Particles(*densities, output), options)  # [bs] each
        loss = -diagnostics["loss/L_k"]
        if not return_diagnostics:
            return loss, {}, output
        for key in diagnostics_pieces[0]:
            values = [d[key] for d in diagnostics_pieces]
            diagnostics[key] = torch.stack(values).mean(0) if values[0].dim() == 0 else torch.cat(values)
        return loss, diagnostics, output

    def extra_repr(self) -> str:
        return f"iw={self.iw}, chunk_size={self.chunk_size}, compiled={self.compiled}"


def _chunk_pass(model: nn.Module, x: Tensor, particles: int, options: RuntimeOptions, diagnostics: bool):
    """One chunk's forward pass: its log-densities ``(log_px, log_qz, log_pz)``, the model's
    diagnostics (``{}`` unless ``diagnostics``) and the model's output."""
    chunk = sample_particles(model, x, 1, particles, False, options)
    found = model_diagnostics(chunk.output, x.shape[0]) if diagnostics else {}
    return (chunk.log_px, chunk.log_qz, chunk.log_pz), found, chunk.output


def _tensors_of_chunk_pass(model: nn.Module, x: Tensor, particles: int, options: RuntimeOptions,
                           diagnostics: bool):
    """``_chunk_pass`` with the latents ``{"z": [...]}`` alone as its output: tensors only, as a
    compiled program returns them."""
    values, found, output = _chunk_pass(model, x, particles, options, diagnostics)
    return values, found, {"z": list(output["z"])}


def _accumulate(total: Dict[str, Tensor], diagnostics: Dict[str, Tensor], weight: float) -> None:
    """Add a particle chunk's model diagnostics, weighted by its share of the particles."""
    for key, value in diagnostics.items():
        total[key] = total.get(key, 0) + weight * value


def evaluate(model: nn.Module, x: Tensor, iw: int = 5000, chunk_size: Optional[int] = None) -> Tensor:
    """The importance-weighted bound L_K of each data point, ``[bs]`` (Burda et al., 2016, eq. 8):
    ``L_K(x) = log (1/K) sum_k p(x, z_k) / q(z_k|x)``, ``z_k ~ q(z|x)``, a stochastic lower bound of
    log p(x) whose expectation increases to log p(x) with K; with K = 5000 (the default, as in the
    paper) the usual estimate of the test log-likelihood.

    A simple function over ``BoundEvaluator``: no gradients, the model in eval mode (its mode is
    restored afterwards), particles drawn in chunks of at most ``chunk_size`` rows (data points x
    particles; all at once when None), so memory stays bounded for large K."""
    training = model.training
    model.eval()
    try:
        loss, _, _ = BoundEvaluator(iw, chunk_size=chunk_size)(model, x, return_diagnostics=False)
    finally:
        model.train(training)
    return -loss  # [bs]
