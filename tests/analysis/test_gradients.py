"""gradient_statistics on estimators whose gradient distribution is known."""
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.distributions import Bernoulli

from ovis.analysis.gradients import gradient_statistics, select_parameters

MU = torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0, 1.0])
SIGMA = torch.tensor([1.0, 2.0, 0.5, 1.0, 0.0, 0.0])  # the last two coordinates carry no noise


class LinearModel(nn.Module):
    def __init__(self, dim=6):
        super().__init__()
        self.inference_network = nn.ParameterDict({"theta": nn.Parameter(torch.zeros(dim))})
        self.generative_model = nn.ParameterDict({"theta": nn.Parameter(torch.zeros(2))})


class GaussianGradients(nn.Module):
    """Surrogate loss theta . (mu + sigma * eps), eps ~ N(0, I) fresh at every call, so that each
    gradient sample w.r.t. theta is N(mu, diag(sigma^2))."""

    def __init__(self, mu, sigma, use_item=False):
        super().__init__()
        self.mu, self.sigma, self.use_item = mu, sigma, use_item

    def forward(self, model, x, backward=False, return_diagnostics=True, **runtime):
        noise = torch.randn(self.mu.shape)
        if self.use_item:  # reading a value makes vmap fail: the statistics fall back to a loop
            noise = noise * (1.0 + 0.0 * noise.sum().item())
        gradient = self.mu + self.sigma * noise
        theta = model.inference_network["theta"]
        loss = (theta * gradient).sum() + (model.generative_model["theta"] ** 2).sum()
        return loss * torch.ones(x.shape[0]), {}, {}


class DataGradients(nn.Module):
    """Deterministic per-point loss theta . x_i: the gradient of the batch mean is mean_i x_i."""
    iw = 4

    def forward(self, model, x, backward=False, return_diagnostics=True, **runtime):
        return x @ model.inference_network["theta"], {}, {}


def statistics(n_samples=400, **kwargs):
    return gradient_statistics(GaussianGradients(MU, SIGMA, kwargs.pop("use_item", False)), LinearModel(),
                               torch.zeros(3, 1), n_samples, "inference_network", **kwargs)


def test_summary_follows_the_formulas_on_the_samples():
    torch.manual_seed(0)
    result = statistics()
    g = result.samples.double().numpy()  # [T, D]
    assert g.shape == (400, 6) and result.vectorized
    mean, var = g.mean(0), g.var(0, ddof=1)
    snr = np.abs(mean) / np.maximum(np.sqrt(var), 1e-15)
    mask = var > 1e-15
    u = mean / np.linalg.norm(mean)
    parallel = g @ u
    perpendicular = np.linalg.norm(g - np.outer(parallel, u), axis=1)
    dsnr = np.abs(parallel) / (1e-15 + perpendicular)
    s = result.summary
    np.testing.assert_allclose(result.mean.numpy(), mean, rtol=1e-10)
    np.testing.assert_allclose(result.variance.numpy(), var, rtol=1e-9)
    assert s["grads/variance"] == pytest.approx(var[mask].mean(), rel=1e-9)
    assert s["grads/magnitude"] == pytest.approx(np.abs(mean)[mask].mean(), rel=1e-9)
    assert s["grads/snr"] == pytest.approx(snr[mask].mean(), rel=1e-9)
    assert s["grads/keep_ratio"] == pytest.approx(4 / 6)
    assert s["grads/dsnr"] == pytest.approx(dsnr.mean(), rel=1e-6)
    ordered = np.sort(snr)
    for q in (5, 25, 50, 75, 95):
        assert s[f"snr/p{q}"] == pytest.approx(ordered[int(np.floor(q / 100 * 6))], rel=1e-9)
    assert (s["snr/min"], s["snr/max"]) == pytest.approx((ordered[0], ordered[-1]), rel=1e-9)


def test_statistics_estimate_the_true_moments():
    torch.manual_seed(1)
    result = statistics(n_samples=2000)
    noisy = SIGMA > 0
    # means within 4 standard errors, variances within 4 standard deviations of the sample variance
    assert ((result.mean.float() - MU).abs()[noisy] < 4 * SIGMA[noisy] / math.sqrt(2000)).all()
    assert torch.allclose(result.mean.float()[~noisy], MU[~noisy])
    ratio = result.variance.float()[noisy] / SIGMA[noisy] ** 2
    assert ((ratio - 1).abs() < 4 * math.sqrt(2 / 1999)).all()
    # SNR -> |mu| / sigma (coordinate 3 has mu = 0: its SNR is the |mean| of 2000 N(0, 1) draws)
    expected = (MU[noisy] / SIGMA[noisy]).abs()
    assert torch.allclose(result.snr.float()[noisy], expected, atol=0.12)
    assert result.mask.tolist() == [True, True, True, True, False, False]


def test_loop_fallback_when_the_estimator_cannot_be_vectorised():
    torch.manual_seed(2)
    fallback = statistics(n_samples=600, use_item=True)
    forced = statistics(n_samples=600, vectorize=False)
    assert not fallback.vectorized and not forced.vectorized
    for result in (fallback, forced):
        noisy = SIGMA > 0
        assert ((result.mean.float() - MU).abs()[noisy] < 4 * SIGMA[noisy] / math.sqrt(600)).all()
        assert result.summary["grads/keep_ratio"] == pytest.approx(4 / 6)


def test_streamed_moments_equal_the_stored_ones():
    torch.manual_seed(3)
    stored = statistics(n_samples=50, keep_samples=True)
    torch.manual_seed(3)
    streamed = statistics(n_samples=50, keep_samples=False)
    assert streamed.samples is None and stored.samples.shape == (50, 6)
    assert streamed.summary == pytest.approx(stored.summary, rel=1e-9)
    # by default the samples are streamed when they would exceed sample_memory (bytes), which
    # also bounds how many are drawn at once (10 here)
    torch.manual_seed(3)
    small_memory = statistics(n_samples=50, sample_memory=4 * 6 * 10)
    torch.manual_seed(3)
    small_stored = statistics(n_samples=50, sample_memory=4 * 6 * 10, keep_samples=True)
    assert small_memory.samples is None and small_memory.summary == pytest.approx(small_stored.summary, rel=1e-9)


def test_a_memory_budget_gives_the_unbudgeted_result():
    """Drawn one at a time (no vmap), the samples do not depend on how many are held at once:
    one sample per chunk, streamed, equals all 300 samples held at once."""
    torch.manual_seed(4)
    unbudgeted = statistics(n_samples=300, vectorize=False, sample_memory=2 ** 30)
    torch.manual_seed(4)
    budgeted = statistics(n_samples=300, vectorize=False, sample_memory=8 * 6)  # one float64 sample
    assert unbudgeted.samples.shape == (300, 6) and budgeted.samples is None
    torch.testing.assert_close(budgeted.mean, unbudgeted.mean, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(budgeted.variance, unbudgeted.variance, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(budgeted.dsnr, unbudgeted.dsnr, rtol=1e-9, atol=0)
    assert budgeted.summary == pytest.approx(unbudgeted.summary, rel=1e-9)


def test_data_chunks_give_the_size_weighted_mean_gradient():
    x = torch.arange(15.0).view(5, 3)
    model = LinearModel(dim=3)
    for chunk_size in (None, 4, 8):  # 4 rows = 1 point x 4 particles per forward pass
        result = gradient_statistics(DataGradients(), model, x, 3, "inference_network", chunk_size=chunk_size)
        assert torch.allclose(result.mean.float(), x.mean(0))
        assert result.summary["grads/keep_ratio"] == 0.0 and math.isnan(result.summary["grads/snr"])


def test_oracle_direction_and_untouched_model_gradients():
    torch.manual_seed(4)
    model = LinearModel()
    result = gradient_statistics(GaussianGradients(MU, SIGMA), model, torch.zeros(2, 1), 500, "inference_network",
                                 oracle=MU)
    assert result.summary["grads/direction"] == pytest.approx(1.0, abs=0.01)
    assert all(p.grad is None for p in model.parameters())


def test_parameter_selection():
    model = LinearModel()
    assert [name for name, _ in select_parameters(model, "inference_network")] == ["inference_network.theta"]
    both = select_parameters(model, " generative_model , inference_network")
    assert [name for name, _ in both] == ["inference_network.theta", "generative_model.theta"]
    with pytest.raises(ValueError, match="matches no trainable parameter; the model has: inference_network.theta"):
        select_parameters(model, "decoder")
    with pytest.raises(ValueError, match="names no parameter"):
        select_parameters(model, " , ")
    with pytest.raises(ValueError, match="'tensor:' keys"):
        select_parameters(model, "tensor:z")
    with pytest.raises(ValueError, match="n_samples must be >= 2"):
        statistics(n_samples=1)
    result = statistics(n_samples=4, keep_samples=True)
    assert result.parameters == [("inference_network.theta", torch.Size([6]))]


class BernoulliModel(nn.Module):
    """q(z|x) = Bern(sigmoid(W x)); a score-function loss whose gradient is an estimate of
    grad_W E_q[f(z)] with f(z) = sum(z * c)."""

    def __init__(self):
        super().__init__()
        self.inference_network = nn.Linear(3, 4)


class ScoreFunction(nn.Module):
    iw = 8

    def forward(self, model, x, backward=False, return_diagnostics=True, **runtime):
        rows = x.repeat_interleave(self.iw, 0)  # [bs * iw, 3]
        q = Bernoulli(logits=model.inference_network(rows), validate_args=False)
        z = q.sample()
        reward = (z * torch.tensor([1.0, -1.0, 2.0, 0.5])).sum(1)  # [bs * iw]
        loss = -(reward * q.log_prob(z).sum(1)).view(x.shape[0], self.iw).mean(1)
        return loss, {}, {}


def test_vectorised_and_looped_samples_of_a_sampling_model_agree():
    torch.manual_seed(5)
    model, x, n = BernoulliModel(), torch.randn(4, 3), 300
    vectorised = gradient_statistics(ScoreFunction(), model, x, n, "inference_network")
    looped = gradient_statistics(ScoreFunction(), model, x, n, "inference_network", vectorize=False)
    assert vectorised.vectorized and not looped.vectorized
    standard_error = ((vectorised.variance + looped.variance) / n).sqrt()
    assert ((vectorised.mean - looped.mean).abs() < 5 * standard_error).all()
    ratio = vectorised.summary["grads/variance"] / looped.summary["grads/variance"]
    assert abs(ratio - 1) < 0.25
    # every vectorised sample drew its own particles
    assert vectorised.samples.unique(dim=0).shape[0] == n


def test_original_api_compatibility_wrapper():
    """Code written against the original OVIS: the same import, call and
    return layout, with the numbers of gradient_statistics on the same samples."""
    from ovis.analysis.gradients import get_gradients_statistics

    model, x = LinearModel(), torch.zeros(3, 1)
    model.train()
    torch.manual_seed(0)
    grad_stats, meta = get_gradients_statistics(GaussianGradients(MU, SIGMA), model, x, mc_samples=400,
                                                key_filter="inference_network", return_grads=True)
    torch.manual_seed(0)
    reference = gradient_statistics(GaussianGradients(MU, SIGMA), model, x, 400, "inference_network")
    assert model.training  # evaluated in eval mode, as the original, and restored
    assert set(grad_stats) == {"grads", "snr"}
    assert set(grad_stats["grads"]) == {"variance", "magnitude", "snr", "dsnr", "keep_ratio"}
    assert set(grad_stats["snr"]) == {"p5", "p25", "p50", "p75", "p95", "min", "max", "mean"}
    for name, value in reference.summary.items():
        group, key = name.split("/")
        assert torch.is_tensor(grad_stats[group][key]) and grad_stats[group][key].item() == pytest.approx(value)
    assert set(meta) == {"grads", "expected", "magnitude", "var", "snr"}
    assert meta["grads"].shape == (400, 6)
    torch.testing.assert_close(meta["expected"], reference.mean)
    torch.testing.assert_close(meta["var"], reference.variance)
    torch.testing.assert_close(meta["magnitude"], reference.mean.abs())
    # The gradient samples follow N(mu, sigma^2): the wrapper passes the right parameters.
    assert np.allclose(meta["expected"].numpy(), MU.numpy(), atol=4 * SIGMA.max().item() / 20)
    _, without_samples = get_gradients_statistics(GaussianGradients(MU, SIGMA), model, x, n_samples=10)
    assert without_samples["grads"] is None
