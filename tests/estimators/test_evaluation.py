"""BoundEvaluator: the plain L_K, chunked over particles and data points."""
import pytest
import torch

from ovis.estimators import BoundEvaluator
from ovis.testing import EnumerableModel


class RowCountingModel(EnumerableModel):
    def forward(self, x, reparam=False, **kwargs):
        self.max_rows = max(getattr(self, "max_rows", 0), x.shape[0])
        return super().forward(x, reparam, **kwargs)


PATTERNS = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 1.0, 1.0]], dtype=torch.float64)


@pytest.mark.parametrize("chunk_size", [None, 300, 2001, 4000])
def test_chunked_bound_is_unbiased_for_the_exact_bound_of_each_point(chunk_size):
    """N copies of 4 different points: the mean of each point's L_K estimates equals its exact
    E[L_K] (enumeration) within 4.5 standard errors; a chunk mixing up data points or particles
    would break this. No forward pass exceeds the chunk size."""
    model = RowCountingModel(x_dim=3, z_dims=(2,), seed=0).double()
    iw, copies = 5, 500
    x = PATTERNS.repeat(copies, 1)  # [2000, 3]
    torch.manual_seed(0)
    evaluator = BoundEvaluator(iw=iw, chunk_size=chunk_size)
    loss, diagnostics, _ = evaluator(model, x)
    assert model.max_rows <= (chunk_size or 2000 * iw)
    bounds = (-loss).view(copies, 4)
    exact = model.exact_iw_bound(PATTERNS, iw).detach()
    standard_error = bounds.std(0) / copies ** 0.5
    assert torch.all((bounds.mean(0) - exact).abs() < 4.5 * standard_error)
    assert torch.equal(diagnostics["loss/L_k"], -loss)
    assert diagnostics["testing/latent_mean"].shape == (2000,)


def test_chunks_cover_every_particle_exactly_once():
    """Diagnostics that average over particles are identical whatever the chunking, for a model whose
    q is deterministic (all probability on one state)."""
    model = RowCountingModel(x_dim=3, z_dims=(2,), seed=0).double()
    with torch.no_grad():
        model.inference_network["bias_0"].copy_(torch.tensor([50.0, -50.0]))
        model.inference_network["weight_0"].zero_()
    x = PATTERNS
    reference = BoundEvaluator(iw=12)(model, x)[1]
    for chunk_size in (1, 5, 13, 47):
        model.max_rows = 0
        diagnostics = BoundEvaluator(iw=12, chunk_size=chunk_size)(model, x)[1]
        assert model.max_rows <= chunk_size
        for key, value in reference.items():
            assert torch.allclose(diagnostics[key], value), (chunk_size, key)
    assert torch.allclose(reference["loss/ess"], torch.full((4,), 12.0, dtype=torch.float64))


def test_validation():
    with pytest.raises(ValueError):
        BoundEvaluator(iw=0)
    with pytest.raises(ValueError):
        BoundEvaluator(iw=5, chunk_size=0)
    model = EnumerableModel()
    with pytest.raises(ValueError, match="backward"):
        BoundEvaluator(iw=2)(model, torch.ones(1, 3), backward=True)
    loss, diagnostics, _ = BoundEvaluator(iw=2)(model, torch.ones(3, 3), return_diagnostics=False, tau=0.5)
    assert loss.shape == (3,) and diagnostics == {}


def test_evaluate_returns_each_points_bound():
    """ovis.evaluate: the per-point L_K, unbiased for its exact value (enumeration
    of every 4-tuple of latents), close to log p(x) at K = 5000; the model's mode is restored."""
    import ovis

    model = EnumerableModel(x_dim=3, z_dims=(2,), seed=0).double().train()
    copies = 1000
    torch.manual_seed(1)
    bounds = ovis.evaluate(model, PATTERNS.repeat(copies, 1), iw=4, chunk_size=1000).view(copies, 4)
    assert model.training and not bounds.requires_grad
    exact = model.exact_iw_bound(PATTERNS, 4).detach()
    assert torch.all((bounds.mean(0) - exact).abs() < 4.5 * bounds.std(0) / copies ** 0.5)
    many = ovis.evaluate(model, PATTERNS.repeat(20, 1), iw=5000, chunk_size=4000).view(20, 4)
    log_px = model.exact_log_marginal(PATTERNS).detach()
    assert torch.all((many.mean(0) - log_px).abs() < 4.5 * many.std(0) / 20 ** 0.5 + 1e-3)
