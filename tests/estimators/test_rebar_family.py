"""The REBAR-family estimators against the exact gradient of the enumerable binary model.

Estimators that only draw hard latents (NVIL, Reinforce-LOO, MuProp, SimpleMuProp) are enumerated
over every tuple of particles (``enumerate_estimator``); those that control the uniform noise of
each draw (ARM, DisARM, local DisARM, REBAR, dynamic REBAR, RELAX, relaxed) are integrated over it
(``ovis.estimators.noise_integration``: exact for ARM/DisARM, Gauss-Legendre with 8 nodes per interval for the smooth
relaxed passes of REBAR, accurate to ~1e-6). Each unbiased estimator matches the exact gradient of
its bound for theta and phi; a deliberately broken variant (a control variate off by 20%) fails
the same check. In training mode dynamic REBAR and RELAX compute the model's gradient with their
variance step: it must equal the plain estimator's at the same noise, and training their own
parameters must lower the variance of the phi gradient (a variant trained to raise it fails).
"""
import pytest
import torch

from ovis.estimators.antithetic import Antithetic
from ovis.estimators.baselines import NVIL, ReinforceLeaveOneOut
from ovis.estimators.config import parse_estimator_id
from ovis.estimators.muprop import MuProp
from ovis.estimators.noise_integration import integrate_estimator
from ovis.estimators.rebar import REBAR
from ovis.estimators.relaxed import Relaxed
from ovis.models import get_model
from ovis.testing import EnumerableModel, enumerate_estimator

from .helpers import build, exact_gradients, flat

X = torch.tensor([[1.0, 0.0, 1.0]], dtype=torch.float64)
SMOOTH_NODES, SMOOTH_TOLERANCE = 8, 1e-5


def error(mean, model, iw, **runtime):
    exact = exact_gradients(model, model.exact_iw_bound(X, iw, **runtime).sum())
    return (flat(mean) - flat(exact)).abs().max().item()


class BrokenNVIL(NVIL):
    """c_k also holds 20% of particle k's own learning signal (depends on z_k)."""

    def control_variate(self, x, log_weights, bound, weights, aux_log_weights, options):
        signal = bound.unsqueeze(-1) - options.beta * weights
        return super().control_variate(x, log_weights, bound, weights, aux_log_weights, options) + 0.2 * signal


class BrokenLeaveOneOut(ReinforceLeaveOneOut):
    """The mean over all mc bounds, the own one included."""

    def control_variate(self, x, log_weights, bound, weights, aux_log_weights, options):
        return bound.mean(1, keepdim=True).unsqueeze(-1)


class BrokenMuProp(MuProp):
    """The analytic term of the Taylor control variate scaled by 1.2."""

    def group_terms(self, model, x, particles, control_variate, options):
        terms, analytic = super().group_terms(model, x, particles, control_variate, options)
        return terms, 1.2 * analytic


def learned_muprop(mc, iw, first_order=True, broken=False):
    """The REBAR code's learned MuProp at scales away from 1 (s_0 = 1.2, s_1 = 0.6) and a random
    baseline; ``broken``: its analytic term left unscaled by s_1."""
    estimator = (BrokenLearnedMuProp if broken else MuProp)(mc, iw, first_order=first_order, learned=True,
                                                            baseline_hdim=4, x_shape=(3,))
    with torch.no_grad():
        estimator.scale_logits.copy_(torch.logit(torch.tensor([0.6, 0.3])))
    return estimator


class BrokenLearnedMuProp(MuProp):
    def group_terms(self, model, x, particles, control_variate, options):
        terms, analytic = super().group_terms(model, x, particles, control_variate, options)
        return terms, analytic / self.learned_terms(x)[1].detach()


class BrokenAntithetic(Antithetic):
    def logit_gradient(self, *args):
        return 1.2 * super().logit_gradient(*args)


class BrokenREBAR(REBAR):
    """The control variate at the conditional noise scaled by 1.2 (the one at u is not)."""

    def controls(self, *args):
        (relaxed, conditional), logits = super().controls(*args)
        return torch.stack([relaxed, 1.2 * conditional]), logits


ENUMERATED = [  # (estimator, mc, iw, runtime)
    (lambda mc, iw: NVIL(mc, iw, x_shape=(3,)), 1, 1, {}),
    (lambda mc, iw: NVIL(mc, iw, x_shape=(3,)), 1, 3, {"alpha": 0.3, "beta": 0.8}),
    (ReinforceLeaveOneOut, 2, 1, {}),
    (ReinforceLeaveOneOut, 3, 1, {"freebits": 0.3}),
    (ReinforceLeaveOneOut, 2, 2, {}),
    (lambda mc, iw: MuProp(mc, iw, first_order=True), 1, 1, {}),
    (lambda mc, iw: MuProp(mc, iw, first_order=True), 1, 3, {"alpha": 0.3, "beta": 0.8}),
    (lambda mc, iw: MuProp(mc, iw, first_order=True), 2, 1, {"freebits": 0.3}),
    (lambda mc, iw: MuProp(mc, iw, first_order=False), 1, 2, {}),
    (learned_muprop, 1, 1, {}),
    (learned_muprop, 2, 2, {"alpha": 0.3, "beta": 0.8}),
    (lambda mc, iw: learned_muprop(mc, iw, first_order=False), 1, 2, {}),
]
BROKEN_ENUMERATED = [(lambda mc, iw: BrokenNVIL(mc, iw, x_shape=(3,)), 1, 1), (BrokenLeaveOneOut, 2, 1),
                     (lambda mc, iw: BrokenMuProp(mc, iw), 1, 1),
                     (lambda mc, iw: learned_muprop(mc, iw, broken=True), 1, 1)]


@pytest.mark.parametrize("make,mc,iw,runtime", ENUMERATED)
@pytest.mark.parametrize("z_dims", [(2,), (1, 1)], ids=["one-layer", "two-layers"])
def test_hard_sample_estimators_match_the_exact_gradient(make, mc, iw, runtime, z_dims):
    model = EnumerableModel(x_dim=3, z_dims=z_dims, seed=0).double()
    estimator = make(mc, iw).double()
    mean, _ = enumerate_estimator(estimator, model, X, **runtime)
    assert error(mean, model, iw, **runtime) < 1e-10


@pytest.mark.parametrize("make,mc,iw", BROKEN_ENUMERATED)
def test_broken_hard_sample_estimators_fail(make, mc, iw):
    model = EnumerableModel(x_dim=3, z_dims=(2,), seed=0).double()
    mean, _ = enumerate_estimator(make(mc, iw).double(), model, X)
    assert error(mean, model, iw) > 1e-3


def test_nvil_divides_the_phi_gradient_by_its_running_scale_and_updates_it_after_the_step():
    model = EnumerableModel(x_dim=3, z_dims=(2,), seed=0).double()
    nvil = NVIL(iw=2, x_shape=(3,)).double()
    nvil.signal_variance.fill_(4.0)  # s = 2
    mean, _ = enumerate_estimator(nvil, model, X)
    exact = exact_gradients(model, model.exact_iw_bound(X, 2).sum())
    torch.testing.assert_close(flat(mean, "generative_model"), flat(exact, "generative_model"), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(flat(mean, "inference_network"), flat(exact, "inference_network") / 2,
                               rtol=1e-10, atol=1e-12)
    assert nvil.signal_variance.item() != 4.0 and nvil.signal_mean.item() != 0.0


@pytest.mark.parametrize("mode", ["arm", "disarm", "disarm-iw"])
@pytest.mark.parametrize("z_dims,iw,runtime", [((2,), 1, {}), ((2,), 2, {"alpha": 0.3}), ((1, 1), 1, {"beta": 0.7}),
                                               ((1, 1), 2, {"freebits": 0.3})])
def test_antithetic_estimators_match_the_exact_gradient(mode, z_dims, iw, runtime):
    model = EnumerableModel(x_dim=3, z_dims=z_dims, seed=0).double()
    mean = integrate_estimator(Antithetic(iw=iw, mode=mode).double(), model, X, nodes=1, **runtime)
    assert error(mean, model, iw, **runtime) < 1e-12
    broken = integrate_estimator(BrokenAntithetic(iw=iw, mode=mode).double(), model, X, nodes=1, **runtime)
    assert error(broken, model, iw, **runtime) > 1e-3


REBAR_CASES = [((2,), 0.5, 1, {}), ((1,), 1.0, 2, {"alpha": 0.3}), ((1, 1), 1.0, 1, {"beta": 0.7})]


CODE_NOISE_CHOICES = {"same_noise": True, "relaxation": "muprop", "bounded_eta": True, "per_layer": True}
# the parameter objective (its gradient: test_rebar_variance_objective.py) is the squared minibatch
# gradient: its cross terms between data points make it too noisy to lower the variance in 60 steps
CODE_CHOICES = {**CODE_NOISE_CHOICES, "variance_objective": "parameters"}


@pytest.mark.parametrize("config", [{}, {"learn": True}, {"surrogate_hdim": 8}, {"learn": True, "neural_baseline": 4},
                                    {"learn": True, "learn_temperature": False, "eta": 0.7, "neural_baseline": 4},
                                    {"same_noise": True}, {"relaxation": "muprop", "eta": 0.8}, {"per_layer": True},
                                    {"learn": True, "eta": 1.3, **CODE_CHOICES}],
                         ids=["rebar", "dynamic", "relax", "dynamic-baseline", "learned-eta-baseline",
                              "same-noise", "muprop-relaxation",
                              "per-layer", "dynamic-code-choices"])
@pytest.mark.parametrize("z_dims,scale,iw,runtime", REBAR_CASES)
def test_rebar_family_matches_the_exact_gradient(config, z_dims, scale, iw, runtime):
    model = EnumerableModel(x_dim=3, z_dims=z_dims, scale=scale, seed=0).double()
    estimator = REBAR(iw=iw, x_shape=(3,), **config).double()
    estimator.check_model(model)
    mean = integrate_estimator(estimator, model, X, nodes=SMOOTH_NODES, **runtime)
    assert error(mean, model, iw, **runtime) < SMOOTH_TOLERANCE


class UnconditionalSameNoiseREBAR(REBAR):
    """same_noise without the conditional reparameterisation: u~ = u, with u's gradient (none)."""

    def conditional_noise(self, noise, u, b, logits):
        return u


@pytest.mark.parametrize("broken", [BrokenREBAR, lambda iw: UnconditionalSameNoiseREBAR(iw=iw, same_noise=True)],
                         ids=["scaled-control", "same-noise-unconditional"])
@pytest.mark.parametrize("z_dims,scale,iw,runtime", REBAR_CASES)
def test_broken_rebar_fails(broken, z_dims, scale, iw, runtime):
    model = EnumerableModel(x_dim=3, z_dims=z_dims, scale=scale, seed=0).double()
    mean = integrate_estimator(broken(iw=iw).double(), model, X, nodes=SMOOTH_NODES, **runtime)
    assert error(mean, model, iw, **runtime) > 100 * SMOOTH_TOLERANCE


@pytest.mark.parametrize("runtime", [{}, {"beta": 0.7}])
def test_per_layer_control_variates_pair_with_the_score_of_every_layer_they_relax(runtime):
    """Two layers: the REBAR code's pairing of the first control variate (every layer relaxed) with
    the first layer's log q alone (``own_layer_score``) is biased, and says so; the pairing with
    both layers' is not (above)."""
    model = EnumerableModel(x_dim=3, z_dims=(1, 1), seed=0).double()
    estimator = REBAR(own_layer_score=True).double()
    mean = integrate_estimator(estimator, model, X, nodes=SMOOTH_NODES, **runtime)
    assert error(mean, model, 1, **runtime) > 100 * SMOOTH_TOLERANCE
    assert estimator.unbiased_for == "biased" and REBAR(per_layer=True).unbiased_for == "∇ L_K"


class BrokenLearnedREBAR(REBAR):
    """Training mode: the phi gradient of the variance step's single backward pass off by 20%."""

    def gradients(self, phi, *args):
        inference = set(map(id, phi))
        return [(p, 1.2 * g if id(p) in inference else g) for p, g in super().gradients(phi, *args)]


class VarianceMaximisingREBAR(REBAR):
    """Trains eta, lam and psi to raise the variance objective."""

    def objective_value(self, *args):
        return -super().objective_value(*args)


@pytest.mark.parametrize("cls,config", [(REBAR, {"learn": True}), (REBAR, {"surrogate_hdim": 8}),
                                        (REBAR, {"learn": True, "neural_baseline": 4}), (REBAR, {"learn": True, **CODE_CHOICES}),
                                        (BrokenLearnedREBAR, {"surrogate_hdim": 8})])
@pytest.mark.parametrize("z_dims,mc,iw,runtime", [((2,), 1, 1, {}), ((1, 1), 2, 2, {"alpha": 0.3, "freebits": 0.1})])
def test_training_mode_gives_the_model_the_gradient_of_the_unbiased_estimator(cls, config, z_dims, mc, iw, runtime):
    """In training mode the model's gradient comes from the variance step's backward pass (one
    pass for the gradient and the variance objective, ``backward=True``); it must equal the plain
    surrogate's (evaluation mode, checked against the exact gradient above) at the same noise, and
    so must the gradient of the training-mode loss itself: ``loss[i]`` is data point i's surrogate."""
    torch.manual_seed(0)
    model = EnumerableModel(x_dim=3, z_dims=z_dims, seed=0).double()
    estimator = cls(mc=mc, iw=iw, x_shape=(3,), **config).double()
    estimator.check_model(model)
    x = (torch.rand(5, 3) > 0.5).double()
    u, v = ({g: torch.rand(5 * mc * iw, d, dtype=torch.float64) for g, d in enumerate(z_dims)} for _ in range(2))
    with estimator.train().fixed_noise(u, v):
        estimator(model, x, backward=True, **runtime)
    stepped = [p.grad for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    gradients = []
    for training in (True, False):
        with estimator.train(training).fixed_noise(u, v):
            loss, _, _ = estimator(model, x, **runtime)
        gradients.append(torch.autograd.grad(loss[1:3].mean(), list(model.parameters())))
    for trained, plain in zip(*gradients):
        torch.testing.assert_close(trained, plain, rtol=1e-9, atol=1e-12)
    with estimator.eval().fixed_noise(u, v):
        plain = torch.autograd.grad(estimator(model, x, **runtime)[0].mean(), list(model.parameters()))
    if cls is BrokenLearnedREBAR:
        assert not all(torch.allclose(a, b, rtol=1e-6) for a, b in zip(stepped, plain))
    else:
        for trained, expected in zip(stepped, plain):
            torch.testing.assert_close(trained, expected, rtol=1e-9, atol=1e-12)
    assert all(p.grad is None for p in model.parameters())


def inference_gradient_variance(estimator, model, samples=2000, seed=1):
    """Total variance of the phi gradient estimate at X, from ``samples`` independent draws."""
    torch.manual_seed(seed)
    with model.per_datum_parameters(samples) as copies:
        loss, _, _ = estimator.eval()(model, X.expand(samples, -1), return_diagnostics=False)
        loss.sum().backward()
    estimator.train()
    return torch.cat([c.grad.flatten(1) for name, c in copies.items() if name.startswith("inference")], 1).var(0).sum()


@pytest.mark.parametrize("cls,config", [(REBAR, {"learn": True}), (REBAR, {"surrogate_hdim": 8}),
                                        (REBAR, {"learn": True, **CODE_NOISE_CHOICES}),
                                        (VarianceMaximisingREBAR, {"surrogate_hdim": 8}),
                                        (VarianceMaximisingREBAR, {"learn": True, **CODE_NOISE_CHOICES})])
def test_training_eta_temperature_and_surrogate_lowers_the_gradient_variance(cls, config):
    """60 Adam steps on eta, log lam (and psi) alone, the model fixed: the phi gradient's variance
    (measured at the same noise before and after) falls by more than 30% (by 2.5x in practice);
    training them to raise the variance objective raises it instead."""
    torch.manual_seed(0)
    model = EnumerableModel(x_dim=3, z_dims=(1, 1), seed=0).double()
    estimator = cls(x_shape=(3,), **config).double()
    estimator.check_model(model)
    before = inference_gradient_variance(estimator, model)
    own = [p for p in estimator.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(own, lr=3e-2)
    for _ in range(60):
        optimizer.zero_grad()
        estimator(model, X.expand(64, -1), backward=True, return_diagnostics=False)
        optimizer.step()
    after = inference_gradient_variance(estimator, model)
    if cls is VarianceMaximisingREBAR:
        assert after > before
    else:
        assert after < 0.7 * before, (before, after)


@pytest.mark.parametrize("estimator_id", ["gumbel-softmax", "straight-through"])
def test_relaxed_estimators_are_biased_and_the_bias_shrinks_with_the_temperature(estimator_id):
    model = EnumerableModel(x_dim=3, z_dims=(2,), seed=0).double()
    exact = flat(exact_gradients(model, model.exact_iw_bound(X, 1).sum()))
    biases = [((flat(integrate_estimator(build(estimator_id).double(), model, X, nodes=16, tau=tau)) - exact).norm()
               / exact.norm()).item() for tau in (1.0, 0.5, 0.25)]
    assert biases[0] > biases[1] > biases[2] > 1e-3, biases


def test_models_without_samplers_get_a_clear_error():
    class Plain(EnumerableModel):
        accepts_sampler = False
    with pytest.raises(ValueError, match=r"forward\(x, sampler=...\)"):
        build("rebar")(Plain(), X.float())


@pytest.mark.parametrize("estimator_id", ["muprop", "simple-muprop"])
def test_muprop_refuses_index_valued_latents_before_training(estimator_id):
    """The GMM's cluster index has no mean the model can take; one-hot and binary latents do."""
    Estimator, config = parse_estimator_id(estimator_id)
    with pytest.raises(ValueError, match="mean-field pass.*Categorical"):
        Estimator(mc=1, iw=2, x_shape=(1,), **config).check_model(get_model("gmm", (1,), N=5))
    Estimator(mc=1, iw=2, x_shape=(1, 6, 6), **config).check_model(get_model("shapes", (1, 6, 6), N=3, K=4, hdim=8))


@pytest.mark.parametrize("estimator_id,cls,config", [
    ("nvil", NVIL, {}), ("reinforce-loo", ReinforceLeaveOneOut, {}), ("muprop", MuProp, {"first_order": True}),
    ("simple-muprop", MuProp, {"first_order": False}), ("rebar", REBAR, {"learn": False}),
    ("muprop-learned", MuProp, {"first_order": True, "learned": True}),
    ("simple-muprop-learned", MuProp, {"first_order": False, "learned": True}),
    ("dynamic-rebar", REBAR, {"learn": True}),
    ("rebar-learned-eta", REBAR, {"learn": True, "learn_temperature": False}),
    ("relax", REBAR, {"learn": True, "surrogate_hdim": 64}),
    ("arm", Antithetic, {"mode": "arm"}), ("disarm", Antithetic, {"mode": "disarm"}),
    ("disarm-iw", Antithetic, {"mode": "disarm-iw"}),
    ("gumbel-softmax", Relaxed, {"temperature": None, "straight_through": False}),
    ("concrete-tau0.3", Relaxed, {"temperature": 0.3, "straight_through": False}),
    ("straight-through-tau2", Relaxed, {"temperature": 2.0, "straight_through": True}),
])
def test_ids_parse(estimator_id, cls, config):
    assert parse_estimator_id(estimator_id) == (cls, config)


@pytest.mark.parametrize("bad", ["concrete-tau0", "gumbel-softmax-0.5", "rebar-tau1", "disarm-iw2", "straight"])
def test_bad_ids_list_the_valid_forms(bad):
    with pytest.raises(ValueError, match="gumbel-softmax\\[-tau<t>\\]"):
        parse_estimator_id(bad)


@pytest.mark.parametrize("estimator_id", ["straight-through", "gumbel-softmax-tau0.5"])
def test_relaxed_estimators_train_categorical_latents(estimator_id):
    """Categorical groups get the Gumbel-softmax sample: one-hot forward values with straight-through."""
    torch.manual_seed(0)
    model = get_model("vae", (1, 3, 3), N=2, K=3, hdim=8, nlayers=1, prior="categorical")
    estimator = build(estimator_id, iw=2, x_shape=(1, 3, 3))
    estimator.check_model(model)
    loss, _, output = estimator(model, (torch.rand(4, 1, 3, 3) > 0.5).float())
    loss.mean().backward()
    z = output["z"][0]  # [rows, N, K]
    assert torch.allclose(z.sum(-1), torch.ones(()))
    assert torch.equal(z.max(-1).values == 1, torch.full(z.shape[:-1], estimator.straight_through))
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters() if p.requires_grad)


def test_a_relax_state_loads_into_a_fresh_estimator():
    """The surrogate network is built by check_model from the model's latent sizes; a saved
    state builds it from its own sizes, and the loaded estimator computes the same loss."""
    model = get_model("sbm", (1, 6, 6), N=5, depth=2)
    x = (torch.rand(3, 1, 6, 6, generator=torch.Generator().manual_seed(0)) < 0.5).float()
    trained = build("relax", iw=1, x_shape=(1, 6, 6))
    trained.check_model(model)
    with torch.no_grad():
        trained.network[0].weight.mul_(2.0)  # differs from a fresh network
    loaded = build("relax", iw=1, x_shape=(1, 6, 6))
    loaded.load_state_dict(trained.state_dict())
    losses = []
    for estimator in (trained, loaded):
        torch.manual_seed(0)
        losses.append(estimator(model, x)[0])
    torch.testing.assert_close(losses[0], losses[1], rtol=0, atol=0)


@pytest.mark.parametrize("estimator_id", ["rebar", "disarm", "muprop", "gumbel-softmax"])
def test_check_model_leaves_the_random_stream_and_the_batch_statistics_alone(estimator_id):
    """Its probe pass draws latents: a seeded run must draw the same with or without it (relax's
    check_model also initialises its network: that draws, as building any module does)."""
    model = get_model("vae", (1, 6, 6), N=3, hdim=8, nlayers=1, prior="bernoulli", normalization="batchnorm")
    statistics = {name: b.clone() for name, b in model.named_buffers()}
    torch.manual_seed(0)
    state = torch.get_rng_state()
    build(estimator_id, iw=1, x_shape=(1, 6, 6)).check_model(model)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(b, statistics[name]) for name, b in model.named_buffers())


def test_the_neural_baseline_is_trained_by_the_variance_objective_and_needs_learning():
    """Its gradient is the variance objective's (it moves the score term's coefficient), not zero."""
    torch.manual_seed(0)
    model = EnumerableModel(x_dim=3, z_dims=(2,), seed=0).double()
    estimator = REBAR(learn=True, neural_baseline=4, x_shape=(3,)).double()
    estimator.train()(model, (torch.rand(5, 3) > 0.5).double(), backward=True)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in estimator.baseline.parameters())
    with pytest.raises(ValueError, match="needs a trained control variate"):
        REBAR(neural_baseline=4, x_shape=(3,))


def test_rebar_learned_eta_trains_eta_and_keeps_the_temperature():
    """The REBAR code's REBAR: eta is trained by the variance objective, lam stays at 0.5."""
    torch.manual_seed(0)
    model = EnumerableModel(x_dim=3, z_dims=(1, 1), seed=0).double()
    estimator = build("rebar-learned-eta", iw=1, x_shape=(3,)).double()
    assert [name for name, _ in estimator.named_parameters()] == ["eta"]
    optimizer = torch.optim.Adam(estimator.parameters(), lr=0.1)
    for _ in range(5):
        optimizer.zero_grad()
        estimator.train()(model, X.expand(16, -1), backward=True, return_diagnostics=False)
        optimizer.step()
    assert abs(estimator.eta.item() - 1.0) > 0.1
    assert estimator.log_temperature.exp().item() == pytest.approx(0.5)


@pytest.mark.parametrize("first_order", [True, False], ids=["muprop-learned", "simple-muprop-learned"])
def test_the_learned_muprop_scales_and_baseline_lower_the_squared_error_of_the_control_variate(first_order):
    """100 Adam steps of the mean squared error (the model fixed) lower it by more than 20% (by 27%
    and 70% here): its gradient reaches the scales and the baseline."""
    torch.manual_seed(0)
    model = EnumerableModel(x_dim=3, z_dims=(1, 1), seed=0).double()
    estimator = learned_muprop(1, 1, first_order=first_order).double()
    x = (torch.rand(64, 3) > 0.5).double()

    def squared_error():
        torch.manual_seed(1)
        return estimator(model, x)[1]["control_variate/mse"].mean().item()

    before = squared_error()
    optimizer = torch.optim.Adam(estimator.parameters(), lr=3e-2)
    for _ in range(100):
        optimizer.zero_grad()
        estimator(model, x)[0].mean().backward()
        optimizer.step()
    assert squared_error() < 0.8 * before, before
