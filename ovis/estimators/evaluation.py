"""Evaluation of the importance weighted bound L_K with many particles in bounded memory."""
from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

from .base import Particles, RuntimeOptions, base_diagnostics, model_diagnostics, sample_particles


class BoundEvaluator(nn.Module):
    """The plain bound L_K (alpha = 0, beta = 1, no free bits) and the base diagnostics, under
    ``no_grad`` (Burda et al., 2016: L_5000 as a log-likelihood estimate).

    Particles are drawn in chunks of at most ``chunk_size`` rows (data points x particles; all
    at once when None), so that K = 5000 runs in memory bounded by the chunk; only the per-particle
    log-densities ``[bs, K]`` are kept. Same call as the estimators:
    ``loss, diagnostics, output = evaluator(model, x)`` with ``loss = -L_K [bs]``; ``output`` is the
    model output of the last chunk. The only runtime option is ``tau`` (relaxed latents).
    """

    def __init__(self, iw: int, chunk_size: Optional[int] = None):
        super().__init__()
        if isinstance(iw, bool) or not float(iw).is_integer() or iw < 1:
            raise ValueError(f"iw={iw!r}: expected an integer >= 1")
        if chunk_size is not None and (isinstance(chunk_size, bool) or chunk_size < 1):
            raise ValueError(f"chunk_size={chunk_size!r}: expected None or an integer >= 1 (rows per forward pass)")
        self.iw = int(iw)
        self.chunk_size = None if chunk_size is None else int(chunk_size)

    def _chunks(self, bs: int) -> Tuple[int, int]:
        """(data points, particles) per forward pass."""
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
        points, particles = self._chunks(x.shape[0])
        pieces: List[Particles] = []
        diagnostics_pieces: List[Dict[str, Tensor]] = []
        for x_piece in torch.split(x, points):
            chunks = [sample_particles(model, x_piece, 1, min(particles, self.iw - start), False, options)
                      for start in range(0, self.iw, particles)]
            pieces.append(Particles(*(torch.cat([getattr(c, name) for c in chunks], dim=2)
                                      for name in ("log_px", "log_qz", "log_pz")), chunks[-1].output))
            if return_diagnostics:
                diagnostics_pieces.append(_average_model_diagnostics(chunks, x_piece.shape[0], self.iw))
        particles_all = Particles(*(torch.cat([getattr(p, name) for p in pieces], dim=0)
                                    for name in ("log_px", "log_qz", "log_pz")), pieces[-1].output)
        diagnostics = base_diagnostics(particles_all, options)  # [bs] each
        loss = -diagnostics["loss/L_k"]
        if not return_diagnostics:
            return loss, {}, particles_all.output
        for key in diagnostics_pieces[0]:
            values = [d[key] for d in diagnostics_pieces]
            diagnostics[key] = torch.stack(values).mean(0) if values[0].dim() == 0 else torch.cat(values)
        return loss, diagnostics, particles_all.output

    def extra_repr(self) -> str:
        return f"iw={self.iw}, chunk_size={self.chunk_size}"


def _average_model_diagnostics(chunks: List[Particles], bs: int, iw: int) -> Dict[str, Tensor]:
    """The model's diagnostics of the particle chunks of one data piece, weighted by chunk size."""
    total: Dict[str, Tensor] = {}
    for chunk in chunks:
        weight = chunk.iw / iw
        for key, value in model_diagnostics(chunk.output, bs).items():
            total[key] = total.get(key, 0) + weight * value
    return total
