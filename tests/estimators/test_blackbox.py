"""``ovis.Loss`` (black-box objects) and per-data-point objectives at batch > 1.

* The black-box path gives the TemplateModel path's loss and gradients on the same model and
  draws (an enumerable binary model; a linear Gaussian model for the pathwise estimators).
* For the dynamic-structure model and for a TemplateModel, the per-data-point bound and the batch
  gradient equal those computed one data point at a time with the same draws; the batch
  reduction is a mean (an SGD step does not change when the batch is repeated).
"""
import pytest
import torch

import ovis
from ovis.estimators.particles import expand_particles
from ovis.estimators.blackbox import Loss, WakeSleepSteps
from ovis.models.dynamic import GeometricGenerative, GeometricInference

from .helpers import build

SCORE_FUNCTION_IDS = ("reinforce", "vimco-arithmetic", "vimco-geometric", "ovis-gamma1", "ovis-gamma0",
                      "ovis-S1", "ovis-S2-exclusive", "wake-wake", "tvo", "tvo-part5-beta2-trapz")
DYNAMIC_IDS = ("wake-wake", "vimco-arithmetic", "ovis-gamma1", "reinforce")
COUNTS = torch.tensor([8.0, 9.0, 10.0])


class TemplateInference(torch.nn.Module):
    """q(z|x) of a one-layer TemplateModel as a black-box object; ``sample()`` returns ``fixed``."""

    def __init__(self, model, fixed):
        super().__init__()
        self.model, self.fixed = model, fixed

    def forward(self, x):
        self.q = self.model.infer(x)[0]
        return self

    def sample(self):
        return self.fixed.detach()

    def rsample(self):  # the linear Gaussian model: z = loc + std * eps with fixed eps
        return self.q.base_dist.loc + self.q.base_dist.scale * self.fixed

    def log_prob(self, z):
        return self.q.log_prob(z)


class EnumerableGenerative:
    """p(x, z) of ``EnumerableModel`` (one layer) as a black-box object."""

    def __init__(self, model):
        self.model = model

    def __call__(self, x, z):
        return self

    def log_prob(self, x, z):
        with self.model.fixed_latents([z]):
            output = self.model(x)
        return output["px"].log_prob(x).sum(-1) + output["pz"][0].log_prob(z).sum(-1)

    def sample(self, n=20000):
        prior = self.model.sample_from_prior(n)
        return prior["px"].sample(), prior["z"][0]


class GaussianGenerative(EnumerableGenerative):
    def log_prob(self, x, z):
        return self.model._likelihood(z).log_prob(x) + self.model._prior(x.shape[0]).log_prob(z)


def gradients(parameters, loss):
    """d loss / d parameter for each parameter (zeros where the loss does not depend on it)."""
    parameters = list(parameters)
    grads = torch.autograd.grad(loss, parameters, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(parameters, grads)]


def assert_close_all(first, second):
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("estimator_id", SCORE_FUNCTION_IDS)
def test_black_box_equals_template_model(enumerable, estimator_id):
    model, _ = enumerable
    x = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    estimator = build(estimator_id, iw=4)
    mc, n = estimator.layout
    z = torch.bernoulli(torch.full((2 * mc * n, 2), 0.5, dtype=torch.float64))  # [rows, 2]
    with model.fixed_latents([z]):
        loss, diagnostics, _ = estimator(model, x)
    loss_fn = Loss(estimator_id, TemplateInference(model, z), EnumerableGenerative(model), iw=4)
    black_box_loss = loss_fn(x)
    torch.testing.assert_close(black_box_loss, loss.mean(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(loss_fn.diagnostics_["loss/L_k"], diagnostics["loss/L_k"])
    assert_close_all(gradients(model.parameters(), black_box_loss), gradients(model.parameters(), loss.mean()))


@pytest.mark.parametrize("estimator_id", ("pathwise", "pathwise-iwae", "pathwise-vae", "stl", "dreg"))
def test_black_box_pathwise_equals_template_model(gaussian, estimator_id):
    model, _ = gaussian
    x = torch.tensor([[0.7, -1.2], [0.1, 0.4]], dtype=torch.float64)
    estimator = build(estimator_id, iw=3, mc=2)
    mc, n = estimator.layout
    eps = torch.randn(2 * mc * n, 2, dtype=torch.float64)
    with model.fixed_noise(eps):
        loss, _, _ = estimator(model, x)
    black_box_loss = Loss(estimator_id, TemplateInference(model, eps), GaussianGenerative(model), iw=3, mc=2)(x)
    torch.testing.assert_close(black_box_loss, loss.mean())
    assert_close_all(gradients(model.parameters(), black_box_loss), gradients(model.parameters(), loss.mean()))


class NoRsample(TemplateInference):
    rsample = None


class NotAModule:
    def rsample(self):
        raise AssertionError("never drawn")


@pytest.mark.parametrize("estimator_id, inference, message", [("pathwise", NoRsample, "rsample"),
                                                              ("stl", NotAModule, "nn.Module"),
                                                              ("dreg", NotAModule, "pathwise-iwae"),
                                                              ("muprop", TemplateInference, "TemplateModel"),
                                                              ("relax", TemplateInference, "TemplateModel"),
                                                              ("disarm", TemplateInference, "ovis-gamma1")])
def test_black_box_refuses_what_it_cannot_compute(enumerable, estimator_id, inference, message):
    """At construction, with the fix, not at the first step."""
    model, _ = enumerable
    inf_net = NotAModule() if inference is NotAModule else inference(model, None)
    with pytest.raises(ValueError, match=message):
        Loss(estimator_id, inf_net, EnumerableGenerative(model), iw=2)


def test_a_scalar_history_keeps_its_values_in_order_and_its_tensors_few():
    """Across chunk boundaries and reads, in order; unread steps are stacked into one tensor per
    chunk instead of one tensor per step (about 620 bytes each)."""
    from ovis.estimators.blackbox import ScalarHistory
    history, chunk = ScalarHistory(), ScalarHistory.CHUNK
    for step in range(2 * chunk + 5):
        history.append(torch.tensor(float(step)))
        if step == chunk + 1:
            assert history.values() == [float(s) for s in range(chunk + 2)]
    kept = len(history._chunks) + len(history._pending)
    assert kept <= 5 + 1, kept
    assert history.values() == [float(s) for s in range(2 * chunk + 5)]


def test_histories_stored_log_probs_and_params(enumerable):
    model, x = enumerable
    z = torch.zeros(4, 2, dtype=torch.float64)
    inference = TemplateInference(model, z)
    inference.params_ = {"logits": "q's"}
    loss_fn = ovis.Loss("vimco-arithmetic", inference, EnumerableGenerative(model), iw=4, store_log_probs=True)
    losses = [loss_fn(x).item() for _ in range(3)]
    assert loss_fn.loss_history_ == losses
    assert len(loss_fn.bound_history_) == 3 and [p.shape for p in loss_fn.log_p_] == [(1, 1, 4)] * 3
    torch.testing.assert_close(loss_fn.log_q_[0], model.infer(expand_particles(x, 1, 4))[0].log_prob(z).sum(-1)
                               .view(1, 1, 4))
    assert loss_fn.params_ == {"inf_net": {"logits": "q's"}, "gen_model": None}


def test_wake_and_sleep_steps(enumerable):
    """theta wake and phi wake give wake-wake's gradients (same draws) to their own parameters only;
    the sleep loss estimates - E_{p(x,z)} log q(z|x) (tolerance from its sample variance)."""
    model, _ = enumerable
    x = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]], dtype=torch.float64)
    z = torch.bernoulli(torch.full((8, 2), 0.5, dtype=torch.float64))
    inference, generative = TemplateInference(model, z), EnumerableGenerative(model)
    expected = gradients(model.parameters(), Loss("wake-wake", inference, generative, iw=4)(x))
    names = [name for name, _ in model.named_parameters()]
    theta = [p for name, p in model.named_parameters() if name.startswith("generative_model")]
    phi = [p for name, p in model.named_parameters() if name.startswith("inference_network")]
    steps = WakeSleepSteps(inference, generative, torch.optim.SGD(theta, lr=0.0), torch.optim.SGD(phi, lr=0.0), iw=4)
    steps.theta_wake(x)
    steps.phi_wake(x)
    for name, parameter, gradient in zip(names, model.parameters(), expected):
        torch.testing.assert_close(parameter.grad, gradient)

    torch.manual_seed(0)
    dreams_x, dreams_z = generative.sample()
    log_q = model.infer(dreams_x)[0].log_prob(dreams_z).sum(-1)  # [n]
    torch.manual_seed(0)
    sleep = steps.phi_sleep()
    assert sleep == pytest.approx(-log_q.mean().item())
    exact = model.exact_sleep_objective().item()
    assert abs(-sleep - exact) < 4 * (log_q.std() / 20000 ** 0.5).item()


def sgd_step(parameters, loss, lr=0.1):
    grads = gradients(parameters, loss)
    return [(p - lr * g).detach() for p, g in zip(parameters, grads)]


@pytest.mark.parametrize("estimator_id", DYNAMIC_IDS)
def test_dynamic_model_batch_equals_one_point_at_a_time(estimator_id):
    """Same random stream: the batch [8, 9, 10] draws its rows in the order the three single-point
    calls draw theirs, so bounds and gradients must agree exactly."""
    inference, generative = GeometricInference(slope=0.5), GeometricGenerative()
    loss_fn = Loss(estimator_id, inference, generative, iw=6)
    parameters = list(loss_fn.parameters())
    torch.manual_seed(3)
    batch_gradients = gradients(parameters, loss_fn(COUNTS))
    batch_bounds = loss_fn.diagnostics_["loss/L_k"]  # [3]
    torch.manual_seed(3)
    point_gradients, point_bounds = [], []
    for b in range(3):
        point_gradients.append(gradients(parameters, loss_fn(COUNTS[b:b + 1])))
        point_bounds.append(loss_fn.diagnostics_["loss/L_k"])
    torch.testing.assert_close(batch_bounds, torch.cat(point_bounds))
    for i, gradient in enumerate(batch_gradients):
        torch.testing.assert_close(gradient, sum(g[i] for g in point_gradients) / 3)
    assert any(g.abs().max() > 1e-6 for g in batch_gradients)


@pytest.mark.parametrize("estimator_id", DYNAMIC_IDS)
def test_dynamic_model_sgd_step_does_not_change_with_batch_size(estimator_id):
    inference, generative = GeometricInference(slope=0.5), GeometricGenerative()
    loss_fn = Loss(estimator_id, inference, generative, iw=6)
    parameters = list(loss_fn.parameters())
    torch.manual_seed(4)
    draws = inference(expand_particles(COUNTS, 1, 6)).sample()  # 18 sequences
    with inference.fixed_draws(draws):
        once = sgd_step(parameters, loss_fn(COUNTS))
    with inference.fixed_draws(draws + draws):
        twice = sgd_step(parameters, loss_fn(torch.cat([COUNTS, COUNTS])))
    assert_close_all(once, twice)
    assert any((a != p).any() for a, p in zip(once, parameters))


@pytest.mark.parametrize("estimator_id", ("vimco-arithmetic", "ovis-gamma1", "wake-wake", "tvo"))
def test_template_model_batch_equals_one_point_at_a_time(enumerable, estimator_id):
    model, _ = enumerable
    x = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0]], dtype=torch.float64)
    estimator = build(estimator_id, iw=4)
    z = torch.bernoulli(torch.full((12, 2), 0.5, dtype=torch.float64))  # [bs * iw, 2]
    parameters = list(model.parameters())
    with model.fixed_latents([z]):
        loss, diagnostics, _ = estimator(model, x)
    batch_gradients = gradients(parameters, loss.mean())
    point_gradients = []
    for b in range(3):
        with model.fixed_latents([z[4 * b:4 * b + 4]]):
            point_loss, point_diagnostics, _ = estimator(model, x[b:b + 1])
        torch.testing.assert_close(point_diagnostics["loss/L_k"], diagnostics["loss/L_k"][b:b + 1])
        point_gradients.append(gradients(parameters, point_loss.mean()))
    for i, gradient in enumerate(batch_gradients):
        torch.testing.assert_close(gradient, sum(g[i] for g in point_gradients) / 3)
    with model.fixed_latents([z]):
        once = sgd_step(parameters, estimator(model, x)[0].mean())
    with model.fixed_latents([torch.cat([z, z])]):
        twice = sgd_step(parameters, estimator(model, torch.cat([x, x]))[0].mean())
    assert_close_all(once, twice)


def test_dynamic_model_importance_weights_estimate_its_exact_marginal():
    """``mean_k exp(log p - log q)`` is unbiased for p(o = 1; x) = exp(exact_log_marginal): q's and
    p's per-row log-densities of the variable-length draws are consistent (4 standard errors)."""
    inference, generative = GeometricInference(offset=-1.0, slope=0.5), GeometricGenerative(success_logit=-2.0)
    loss_fn = Loss("vimco-arithmetic", inference, generative, iw=4000, store_log_probs=True)
    torch.manual_seed(0)
    loss_fn(COUNTS)
    weights = (loss_fn.log_p_[0] - loss_fn.log_q_[0]).exp().flatten(1)  # [3, 4000]
    standard_error = weights.std(1) / 4000 ** 0.5
    exact = generative.exact_log_marginal(COUNTS).exp().detach()  # [3]
    assert ((weights.mean(1) - exact).abs() < 4 * standard_error).all()
    assert (loss_fn.diagnostics_["loss/L_k"] < exact.log()).all()


def test_wake_sleep_id_trains_p_by_the_wake_phase_and_q_by_the_sleep_phase(enumerable):
    model, _ = enumerable
    x = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]], dtype=torch.float64)
    z = torch.bernoulli(torch.full((8, 2), 0.5, dtype=torch.float64))
    inference, generative = TemplateInference(model, z), EnumerableGenerative(model)
    names = [name for name, _ in model.named_parameters()]
    torch.manual_seed(1)  # the same random stream as the combined call: wake pass, then the dreams
    wake = gradients(model.parameters(), Loss("wake-wake", inference, generative, iw=4)(x))
    sleep = gradients(model.parameters(), WakeSleepSteps.sleep_loss(inference, generative))
    torch.manual_seed(1)
    combined = gradients(model.parameters(), Loss("wake-sleep", inference, generative, iw=4)(x))
    for name, w, s, c in zip(names, wake, sleep, combined):
        torch.testing.assert_close(c, w if name.startswith("generative_model") else s)


def test_help_of_ovis_loss_states_the_whole_protocol():
    """What ``inf_net(x)`` returns, the shapes of ``sample()`` and ``log_prob()``, the particle
    layout and the optional methods: in ``help(ovis.Loss)`` itself, not only in the module."""
    import pydoc

    import ovis
    text = pydoc.render_doc(ovis.Loss, renderer=pydoc.plaintext)
    for fact in ("inf_net(x_rows)", "sample()", "log_prob(z)", "[rows]", "log_prob(x_rows, z)",
                 "repeat_interleave(mc * n, 0)", "(b * mc + m) * n + k", "particle_shape(bs)", "optional",
                 "rsample()", "gen_model.sample() -> (x, z)"):
        assert fact in text, fact
