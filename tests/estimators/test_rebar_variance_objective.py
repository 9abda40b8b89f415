"""Dynamic REBAR and RELAX train eta, log lam (and the surrogate psi) by the gradient of the
variance objective ``S = sum_{i,g,n} (d loss.mean() / d delta_{i,g,n})^2``, delta an offset on the
logit of unit n of layer g of q for data point i in every pass (``REBAR.gradients``: one backward
pass with its graph, the offsets' gradients summed from the logits' ones, a double backward pass).

Checked here against an independent computation of the same objective at the same noise: the
enumerable model's per-datum parameter copies give each data point its own inference biases,
which are exactly those offsets, so ``S`` is the squared gradient of the evaluation-mode loss
for them (no double backward pass), and its derivatives for eta and log lam, and along a random
direction of psi, are central differences in float64. A variant that squares only the hard
pass's logit gradients (it leaves out the relaxed passes' share of each offset) fails.
"""
import pytest
import torch

from ovis.estimators.rebar import REBAR
from ovis.testing import EnumerableModel

EPS, TOLERANCE = 1e-5, 1e-6


class HardPassVarianceREBAR(REBAR):
    """Squares the offsets' gradients from the hard pass's logits alone."""

    @staticmethod
    def variance_objective(per_logit, bs):
        groups = len(per_logit) // 2
        return REBAR.variance_objective([*per_logit[:groups], *map(torch.zeros_like, per_logit[groups:])], bs)


def offset_variance_objective(estimator, model, x, **runtime) -> torch.Tensor:
    """``S`` from the gradients of each data point's copy of the inference biases (evaluation mode)."""
    with model.per_datum_parameters(x.shape[0]) as copies:
        loss, _, _ = estimator.eval()(model, x, return_diagnostics=False, **runtime)
        biases = [copy for name, copy in copies.items() if name.startswith("inference_network.bias")]
        gradients = torch.autograd.grad(loss.mean(), biases)
    estimator.train()
    return sum(g.square().sum() for g in gradients)


def central_difference(objective, parameter: torch.Tensor, direction: torch.Tensor) -> float:
    """The derivative of ``objective()`` along ``direction`` of ``parameter`` (changed in place, restored)."""
    values = []
    for step in (EPS, -2 * EPS):
        with torch.no_grad():
            parameter.add_(step * direction)
        values.append(objective().item())
    with torch.no_grad():
        parameter.add_(EPS * direction)
    return (values[0] - values[1]) / (2 * EPS)


def check_derivatives(objective, own, computed, broken: bool) -> None:
    """``computed[name]`` against the central difference of ``objective`` along a random direction
    of each parameter in ``own`` (a scalar's sign); a broken variant must miss by 100x the tolerance."""
    errors = {}
    for name, parameter in own.items():
        direction = torch.randn_like(parameter)
        expected = central_difference(objective, parameter, direction)
        errors[name] = abs((computed[name] * direction).sum().item() - expected) / max(abs(expected), 1e-3)
    if broken:
        assert max(errors.values()) > 100 * TOLERANCE, errors
    else:
        assert max(errors.values()) < TOLERANCE, errors


@pytest.mark.parametrize("cls,config", [(REBAR, {"learn": True}), (REBAR, {"surrogate_hdim": 6}),
                                        (HardPassVarianceREBAR, {"surrogate_hdim": 6})],
                         ids=["dynamic-rebar", "relax", "broken-hard-pass-only"])
@pytest.mark.parametrize("z_dims,mc,iw,runtime", [((2,), 1, 1, {}), ((2, 1), 2, 2, {"alpha": 0.3})],
                         ids=["one-layer", "two-layers-mc2-iw2"])
def test_eta_temperature_and_surrogate_get_the_gradient_of_the_variance_objective(cls, config, z_dims, mc, iw,
                                                                                   runtime):
    torch.manual_seed(0)
    model = EnumerableModel(x_dim=3, z_dims=z_dims, seed=0).double()
    estimator = cls(mc=mc, iw=iw, x_shape=(3,), eta=0.7, temperature=0.8, **config).double()
    estimator.check_model(model)
    x = (torch.rand(4, 3) > 0.5).double()
    u, v = ({g: torch.rand(4 * mc * iw, d, dtype=torch.float64) for g, d in enumerate(z_dims)} for _ in range(2))
    own = dict(estimator.named_parameters())
    with estimator.train().fixed_noise(u, v):
        estimator(model, x, backward=True, **runtime)  # the training step's backward pass
    computed = {name: parameter.grad for name, parameter in own.items()}
    model.zero_grad(set_to_none=True)

    def objective():
        with estimator.fixed_noise(u, v):
            return offset_variance_objective(estimator, model, x, **runtime)

    check_derivatives(objective, own, computed, broken=cls is HardPassVarianceREBAR)


class InferenceOnlyParameterREBAR(REBAR):
    """The parameter objective over the inference network's parameters alone."""

    def objective_value(self, per_logit, per_parameter, bs):
        inference = per_parameter[:self.inference_parameters]  # phi comes first
        return sum(g.square().sum() for g in inference) / sum(g.numel() for g in inference)


def parameter_variance_objective(estimator, model, x, **runtime) -> torch.Tensor:
    """The mean over the model's parameters of the squared gradient of the evaluation-mode loss."""
    parameters = [p for p in model.parameters() if p.requires_grad]
    loss, _, _ = estimator.eval()(model, x, return_diagnostics=False, **runtime)
    gradients = torch.autograd.grad(loss.mean(), parameters)
    estimator.train()
    return sum(g.square().sum() for g in gradients) / sum(g.numel() for g in gradients)


@pytest.mark.parametrize("cls", [REBAR, InferenceOnlyParameterREBAR], ids=["parameters", "broken-inference-only"])
@pytest.mark.parametrize("config", [{}, {"same_noise": True, "relaxation": "muprop", "neural_baseline": 3}],
                         ids=["plain", "code-noise-relaxation-baseline"])
def test_the_parameter_objective_is_the_mean_squared_minibatch_gradient(cls, config):
    """``variance_objective="parameters"`` (with ``bounded_eta``): the derivatives for v (eta =
    2 sigmoid(v)), log lam (and the baseline) of the mean over all model parameters of the squared
    gradient, against central differences; a variant that averages over phi alone fails."""
    torch.manual_seed(0)
    model = EnumerableModel(x_dim=3, z_dims=(2, 1), seed=0).double()
    estimator = cls(x_shape=(3,), eta=0.7, temperature=0.8, learn=True, bounded_eta=True,
                    variance_objective="parameters", **config).double()
    estimator.inference_parameters = sum(name.startswith("inference") for name, _ in model.named_parameters())
    x = (torch.rand(4, 3) > 0.5).double()
    u, v = ({g: torch.rand(4, d, dtype=torch.float64) for g, d in enumerate((2, 1))} for _ in range(2))
    own = dict(estimator.named_parameters())
    assert "parametrizations.eta.original" in own and torch.isclose(estimator.eta, torch.tensor(0.7).double())
    with estimator.train().fixed_noise(u, v):
        estimator(model, x, backward=True)  # the training step's backward pass
    computed = {name: parameter.grad for name, parameter in own.items()}
    model.zero_grad(set_to_none=True)

    def objective():
        with estimator.fixed_noise(u, v):
            return parameter_variance_objective(estimator, model, x)

    check_derivatives(objective, own, computed, broken=cls is InferenceOnlyParameterREBAR)
