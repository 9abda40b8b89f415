"""The optional Pyro adapter: per-data-point bounds of a model / guide pair with a batch plate.

One data point: the bound equals Pyro's RenyiELBO(alpha=0) (IWAE) estimate with the same draws.
A batch: the bound is the mean of the per-point bounds, whereas Pyro's RenyiELBO sums them over a
vectorised plate and, over a sequential plate (the workaround for per-point structure), sums
the log-weights over the batch before the logsumexp (a different objective: the tests show it).
"""
import math

import pytest
import torch

pyro = pytest.importorskip("pyro", reason="the optional Pyro extra is not installed: pip install -e .[pyro]")
import pyro.distributions as dist  # noqa: E402
from pyro.infer import SVI, RenyiELBO  # noqa: E402

from ovis.estimators.pyro import PyroLoss, pyro_log_probs  # noqa: E402

DATA = torch.tensor([1.0, 2.0, -0.5])
PARTICLES = 8


def vectorised_model(x):
    mu = pyro.param("mu", torch.tensor(0.3))
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(mu, 1.0).expand([2]).to_event(1))
        pyro.sample("x", dist.Normal(z.sum(-1), 1.0), obs=x)


def vectorised_guide(x):
    loc = pyro.param("loc", torch.tensor([0.1, -0.2]))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Normal(loc + 0.1 * x.unsqueeze(-1), 0.8).to_event(1))


def sequential_model(x):
    mu = pyro.param("mu", torch.tensor(0.3))
    for i in pyro.plate("data", x.shape[0]):
        z = pyro.sample(f"z_{i}", dist.Normal(mu, 1.0))
        pyro.sample(f"x_{i}", dist.Normal(z, 1.0), obs=x[i])


def sequential_guide(x):
    scale = pyro.param("scale", torch.tensor(0.2))
    for i in pyro.plate("data", x.shape[0]):
        pyro.sample(f"z_{i}", dist.Normal(scale * x[i], 0.9))


def global_latent_model(x):
    z = pyro.sample("z", dist.Normal(0.0, 1.0))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("x", dist.Normal(z, 1.0), obs=x)


def global_latent_guide(x):
    pyro.sample("z", dist.Normal(0.0, 1.0))


@pytest.fixture(autouse=True)
def clean_param_store():
    pyro.clear_param_store()
    yield
    pyro.clear_param_store()


def renyi_bound(model, guide, x, nesting, seed):
    """Pyro's own IWAE estimate (``-RenyiELBO(alpha=0).loss``) from the random state ``seed``."""
    pyro.set_rng_seed(seed)
    elbo = RenyiELBO(alpha=0, num_particles=PARTICLES, vectorize_particles=True, max_plate_nesting=nesting + 1)
    return -elbo.loss(model, guide, x)


def per_point_bounds(model, guide, x, nesting, seed):
    pyro.set_rng_seed(seed)
    log_p, log_q = pyro_log_probs(model, guide, x, particles=PARTICLES, reparam=True, max_plate_nesting=nesting)
    return torch.logsumexp(log_p - log_q, dim=1) - math.log(PARTICLES), log_p - log_q  # [bs], [bs, P]


@pytest.mark.parametrize("model, guide, nesting", [(vectorised_model, vectorised_guide, 1),
                                                    (sequential_model, sequential_guide, 0)])
def test_one_data_point_bound_equals_pyro_renyi_elbo(model, guide, nesting):
    loss = PyroLoss("pathwise", iw=PARTICLES, max_plate_nesting=nesting)
    pyro.set_rng_seed(1)
    ours = -loss.loss(model, guide, DATA[:1])
    assert ours == pytest.approx(renyi_bound(model, guide, DATA[:1], nesting, seed=1), abs=1e-5)


def test_vectorised_batch_is_the_mean_of_per_point_bounds_pyro_sums_them():
    bounds, _ = per_point_bounds(vectorised_model, vectorised_guide, DATA, 1, seed=2)
    pyro.set_rng_seed(2)
    ours = -PyroLoss("pathwise", iw=PARTICLES, max_plate_nesting=1).loss(vectorised_model, vectorised_guide, DATA)
    assert ours == pytest.approx(bounds.mean().item(), abs=1e-5)
    assert renyi_bound(vectorised_model, vectorised_guide, DATA, 1, seed=2) == pytest.approx(bounds.sum().item(), abs=1e-4)


def test_sequential_batch_is_the_mean_of_per_point_bounds_pyro_sums_the_batch_first():
    """Same random stream: the batch draws each point's particles in the order the single-point
    calls do. Pyro's estimate equals logsumexp_k(sum_b l_bk) - log K, not sum_b L_b."""
    loss = PyroLoss("vimco-arithmetic", iw=PARTICLES, max_plate_nesting=0)
    pyro.set_rng_seed(3)
    batch_bound = -loss.loss(sequential_model, sequential_guide, DATA)
    batch_points = loss.diagnostics_["loss/L_k"]  # [3]
    pyro.set_rng_seed(3)
    single = [-loss.loss(sequential_model, sequential_guide, DATA[b:b + 1]) for b in range(3)]
    assert batch_points.tolist() == pytest.approx(single, abs=1e-5)
    assert batch_bound == pytest.approx(sum(single) / 3, abs=1e-5)

    bounds, log_weights = per_point_bounds(sequential_model, sequential_guide, DATA, 0, seed=4)
    pyro_estimate = renyi_bound(sequential_model, sequential_guide, DATA, 0, seed=4)
    batch_first = torch.logsumexp(log_weights.sum(0), dim=0) - math.log(PARTICLES)
    assert pyro_estimate == pytest.approx(batch_first.item(), abs=1e-4)
    assert abs(pyro_estimate - bounds.sum().item()) > 0.05  # a different objective, not a rounding error


def test_score_function_draws_have_no_path_and_log_q_keeps_the_guide_graph():
    pyro.set_rng_seed(5)
    log_p, log_q = pyro_log_probs(vectorised_model, vectorised_guide, DATA, particles=4, max_plate_nesting=1)
    loc = pyro.param("loc").unconstrained()
    assert torch.autograd.grad(log_p.sum(), loc, allow_unused=True)[0] is None
    assert torch.autograd.grad(log_q.sum(), loc)[0].abs().sum() > 0


def test_svi_step_with_an_ovis_estimator_and_clear_errors():
    loss = PyroLoss("ovis-gamma1", iw=4, max_plate_nesting=1)
    svi = SVI(vectorised_model, vectorised_guide, pyro.optim.SGD({"lr": 0.01}), loss=loss)
    svi.step(DATA)  # creates the parameters
    before = pyro.param("loc").detach().clone()
    svi.step(DATA)
    assert len(loss.loss_history_) == 2 and (pyro.param("loc") != before).any()
    with pytest.raises(ValueError, match="outside the batch plate 'data'"):
        PyroLoss("reinforce", iw=2).loss(global_latent_model, global_latent_guide, DATA)
    with pytest.raises(ValueError, match="pathwise-iwae"):
        PyroLoss("dreg", iw=2)


def geometric_model(x):
    """``ovis.models.dynamic`` in Pyro: Bernoulli draws until the first success, per data point."""
    success = torch.sigmoid(pyro.param("success_logit", torch.tensor(-2.0)))
    for i in pyro.plate("data", len(x)):
        failures = 0
        while pyro.sample(f"b_{i}_{failures}", dist.Bernoulli(success)).item() == 0:
            failures += 1
        match = torch.tensor(0.95 if failures == x[i].item() else 0.05)
        pyro.sample(f"o_{i}", dist.Bernoulli(match), obs=torch.tensor(1.0))


def geometric_guide(x):
    offset, slope = pyro.param("offset", torch.tensor(-1.0)), pyro.param("slope", torch.tensor(0.5))
    for i in pyro.plate("data", len(x)):
        failures = 0
        while pyro.sample(f"b_{i}_{failures}", dist.Bernoulli(logits=offset + slope * (failures - x[i]))).item() == 0:
            failures += 1


def test_dynamic_structure_in_pyro_one_run_per_particle():
    """Sequential plate, a random number of sites per data point, particles drawn one run at a
    time: ``mean_k exp(log p - log q)`` estimates p(o = 1; x) (4 standard errors), the exact value
    of ``ovis.models.dynamic`` with the same parameters."""
    from ovis.models.dynamic import GeometricGenerative

    counts = torch.tensor([8.0, 9.0, 10.0])
    pyro.set_rng_seed(6)
    log_p, log_q = pyro_log_probs(geometric_model, geometric_guide, counts, particles=60, vectorize_particles=False)
    weights = (log_p - log_q).detach().exp()  # [3, 60]
    exact = GeometricGenerative(success_logit=-2.0).exact_log_marginal(counts).exp().detach()
    assert ((weights.mean(1) - exact).abs() < 4 * weights.std(1) / 60 ** 0.5).all()
    loss = PyroLoss("vimco-arithmetic", iw=4, vectorize_particles=False)
    svi = SVI(geometric_model, geometric_guide, pyro.optim.Adam({"lr": 0.01}), loss=loss)
    svi.step(counts)
    assert loss.diagnostics_["loss/L_k"].shape == (3,)


def test_the_readme_line_reaches_the_adapter_through_import_ovis_alone():
    """``import ovis`` then ``ovis.estimators.pyro.PyroLoss``, in a fresh interpreter; a plain
    ``import ovis.estimators`` does not import pyro."""
    import subprocess
    import sys
    code = ("import sys, ovis; import ovis.estimators; assert 'pyro' not in sys.modules; "
            "loss = ovis.estimators.pyro.PyroLoss('ovis-gamma1', iw=8); print(type(loss).__name__)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "PyroLoss"


def test_dynamic_structure_with_the_default_vectorised_particles_names_the_option():
    loss = PyroLoss("vimco-arithmetic", iw=4)
    with pytest.raises(ValueError, match="vectorize_particles=False") as error:
        loss.loss(geometric_model, geometric_guide, torch.tensor([8.0, 9.0]))
    assert "cannot be converted to Scalar" in str(error.value)
