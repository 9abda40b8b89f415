"""REBAR (Tucker, Mnih, Maddison, Lawson & Sohl-Dickstein, 2017), dynamic REBAR and RELAX
(Grathwohl, Choi, Wu, Roeder & Duvenaud, 2018) for Bernoulli latents.

``f`` is the bound ``L`` of all particles of a data point (the ELBO at iw = 1), ``u`` the noise of
the hard draw ``b = H(a + logit u)``, ``u~ ~ u | b`` REBAR's conditional noise, ``c(u)`` the
control variate evaluated on the relaxed pass at noise ``u`` (``controlled.py``)::

    g = grad_direct f(b) + [f(b) - eta c(u~)] grad log q(b) + eta grad c(u) - eta grad c(u~)

REBAR: ``c(u) = f(sigmoid((a + logit u) / lam))``, the bound at the Concrete relaxation of every
latent (the model evaluates its log-densities at relaxed values). RELAX: ``c = f(relaxed) +
r_psi(x, relaxed)`` with a neural network r (summed over particles). ``E_u[grad c(u)] = grad E[c]``
(reparameterisation) and ``E[grad c(u~) | b] = grad E[c(u) | b]`` (conditional
reparameterisation): the estimator is unbiased for the gradient of L_K (the ELBO at iw = 1), for
phi, and theta gets the exact ``grad_theta f(b)`` (the relaxed passes run with the generative
parameters detached). Three model evaluations per data point and step: the hard pass, then one
call over both relaxations (``2 mc`` outer samples per data point: ``u``, then ``u~``; a model
with batch statistics computes them over both). Hierarchical q: every layer is relaxed in both
relaxations, ``log q(b)`` sums over layers.

dynamic REBAR and RELAX train ``eta``, ``log lam`` (and psi) online, by double backpropagation in
training mode, to minimise the variance of the gradient estimate for the distribution parameters
of q, as in RELAX's Algorithm 2 (``g_phi = d g_theta^2 / d phi``, theta the parameters of the
distribution) and the authors' code (the squared estimate for each layer's logits): with
``delta_{i,g,n}`` an offset on the logit of unit n of layer g of data point i (in every pass),
the objective is ``sum_{i,g,n} g_{delta_{i,g,n}}^2``; its mean over the noise is the variance
plus a square that does not depend on them (the estimate is unbiased for any eta, lam, psi).

The contract (docs/DESIGN.md, section 3): ``loss[i]`` is data point i's surrogate and trains the
model only; the variance objective is the estimator's own (``own_objective``), and the training
step's backward pass (``forward(..., backward=True)``, ``REBAR.backward``) trains eta, lam and psi
by it. Each offset's gradient is the sum of the gradients for the logits it shifts, and those
come from the one backward pass (with its graph) that also gives the model its gradient: no
second backward pass of the loss, and the double backward pass stops at the logits (not at the
weights of the inference network). Their parameters are ``estimator.parameters()`` (the trainer
gives them their own Adam, ``--baseline_lr``).

Options that make the estimator the REBAR code's (Tucker et al.'s ``rebar.py``; each keeps it
unbiased): ``same_noise`` (``u~`` is ``u`` itself, with the conditional reparameterisation's
gradient: ``c(u) - c(u~)`` is zero in value), ``relaxation="muprop"`` (its relaxation,
``relaxations.py``), ``bounded_eta`` (``eta = 2 sigmoid(v)``, trained through v),
``variance_objective="parameters"`` (the objective is the mean over all model parameters of the
squared minibatch gradient, double backpropagation through the weights) and ``per_layer`` (one
control variate c_l per latent group, the groups drawn before the l-th hard and the others
relaxed, paired with the score of every group it relaxes; ``own_layer_score``: with the l-th
group's alone, as the REBAR code does, which is biased: its estimator is marked "biased").
"""
import math
from contextlib import contextmanager
from typing import Dict, Iterator, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize

from .particles import Particles, RuntimeOptions, iw_bound, sample_particles
from .controlled import ControlledNoiseEstimator, group_logits, group_samples
from .relaxations import (RELAXATIONS, PartlyRelaxedSampler, RelaxedSampler, conditional_uniform,
                          interval_position)
from .registry import EstimatorFamily, Style

VARIANCE_OBJECTIVES = ("logits", "parameters")  # per-datum logit offsets; all model parameters (the REBAR code)


@contextmanager
def frozen(parameters: List[Tensor]) -> Iterator[None]:
    """Inside, ``parameters`` do not require grad: a model call treats them as constants (the
    relaxed passes and theta; cheaper than ``torch.func.functional_call`` with detached copies)."""
    for p in parameters:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in parameters:
            p.requires_grad_(True)


def split_parameters(model: nn.Module) -> Tuple[List[Tensor], List[Tensor]]:
    """``(phi, theta)``: the trainable parameters inside and outside ``inference_network_prefixes``."""
    prefixes = tuple(getattr(model, "inference_network_prefixes", ("inference_network.",)))
    phi, theta = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (phi if name.startswith(prefixes) else theta).append(p)
    return phi, theta


def tanh_network(features: int, hdim: int) -> nn.Module:
    """``features`` -> tanh hidden layer of width ``hdim`` -> one value (RELAX's r, REBAR's baseline)."""
    return nn.Sequential(nn.Linear(features, hdim), nn.Tanh(), nn.Linear(hdim, 1))


class TwoSigmoid(nn.Module):
    """``eta = 2 sigmoid(v)`` (the REBAR code's eta, in (0, 2)); ``right_inverse`` gives v of an eta."""

    def forward(self, v: Tensor) -> Tensor:
        return 2 * torch.sigmoid(v)

    def right_inverse(self, eta: Tensor) -> Tensor:
        return torch.logit(eta / 2)


class REBAR(ControlledNoiseEstimator):
    """REBAR / dynamic REBAR / RELAX (module docstring).

    Args: ``eta`` (control-variate scale, 1), ``temperature`` (lam, 0.5), ``learn`` (train eta
    and log lam: dynamic REBAR), ``learn_temperature`` (False: with ``learn``, lam stays fixed and
    eta alone is trained, as the REBAR code's REBAR), ``surrogate_hdim`` (> 0: RELAX's network r
    with one tanh hidden layer of this width; needs ``x_shape``; implies ``learn``), ``neural_baseline`` (> 0: subtract
    an input-dependent baseline ``b(2x - 1)`` (one tanh hidden layer of this width) from
    the score term's coefficient, as the REBAR code's REBAR does; trained by the variance objective,
    so it needs ``learn``; ``b`` does not depend on z: the estimator stays unbiased);
    ``same_noise``, ``relaxation``, ``bounded_eta`` (needs ``learn`` and 0 < eta < 2) and
    ``variance_objective`` (needs ``learn``), ``per_layer`` (one control variate per latent group)
    and ``own_layer_score`` (``per_layer`` with the REBAR code's biased pairing): the REBAR code's
    choices (module docstring).
    """

    noise_streams = 2
    input_baseline_option = "neural_baseline"
    noise_quadrature_nodes = 8  # the relaxed passes are smooth in the noise

    def __init__(self, mc: int = 1, iw: int = 1, eta: float = 1.0, temperature: float = 0.5, learn: bool = False,
                 learn_temperature: bool = True, surrogate_hdim: int = 0, x_shape=None, neural_baseline: int = 0,
                 same_noise: bool = False, relaxation: str = "concrete", bounded_eta: bool = False,
                 variance_objective: str = "logits",
                 per_layer: bool = False, own_layer_score: bool = False, **options):
        super().__init__(mc, iw, x_shape=x_shape, **options)
        if not temperature > 0:
            raise ValueError(f"temperature={temperature!r}: the relaxation temperature must be > 0")
        if surrogate_hdim and x_shape is None:
            raise ValueError("relax needs x_shape= (the shape of one data point) for its surrogate network")
        self.learn = bool(learn or surrogate_hdim)
        self.owns_parameters = self.learn
        self.own_objective = "the variance of the gradient estimate for the logits of q" if self.learn else None
        if neural_baseline and (not self.learn or x_shape is None):
            raise ValueError("neural_baseline needs a trained control variate (learn=True: dynamic-rebar, "
                             "rebar-learned-eta or relax) and x_shape=")
        self.baseline = tanh_network(math.prod(x_shape), neural_baseline) if neural_baseline else None
        self.check_code_options(relaxation, bounded_eta, eta, variance_objective)
        self.same_noise, self.relaxation, self.objective = bool(same_noise), relaxation, variance_objective
        self.per_layer, self.blocks, self.draw_order = bool(per_layer or own_layer_score), 1, []
        self.own_layer_score = bool(own_layer_score)
        if own_layer_score:
            self.unbiased_for = "biased"
        values = {"eta": torch.tensor(float(eta)), "log_temperature": torch.tensor(math.log(temperature))}
        for name, value in values.items():
            if self.learn and (learn_temperature or name == "eta"):
                setattr(self, name, nn.Parameter(value))
            else:
                self.register_buffer(name, value)
        if bounded_eta:
            parametrize.register_parametrization(self, "eta", TwoSigmoid())
        self.surrogate_hdim = int(surrogate_hdim)
        self.network: Optional[nn.Module] = None
        self.register_load_state_dict_pre_hook(self._build_network_for_state)

    def check_code_options(self, relaxation: str, bounded_eta: bool, eta: float, variance_objective: str) -> None:
        """ValueError for a value out of range or an option that needs the learnt control variate."""
        if relaxation not in RELAXATIONS or variance_objective not in VARIANCE_OBJECTIVES:
            raise ValueError(f"relaxation={relaxation!r}, variance_objective={variance_objective!r}; allowed: "
                             f"relaxation in {list(RELAXATIONS)}, variance_objective in {list(VARIANCE_OBJECTIVES)}")
        if (bounded_eta or variance_objective != "logits") and not self.learn:
            raise ValueError("bounded_eta and variance_objective apply to a trained control variate "
                             "(dynamic-rebar, rebar-learned-eta or relax)")
        if bounded_eta and not 0 < eta < 2:
            raise ValueError(f"bounded_eta: eta = 2 sigmoid(v) lies in (0, 2), got eta={eta}")

    def model_evaluations(self, latent_size: Optional[int] = None) -> int:
        """The hard pass, then both relaxations of each control variate in one call (``blocks``: 1,
        or with ``per_layer`` the latent groups of the last call)."""
        return (1 + 2 * self.blocks) * self.mc * self.iw

    @property
    def compile_problem(self) -> Optional[str]:
        if not self.learn:
            return None
        return ("eta and the temperature (and relax's surrogate) are trained by differentiating the backward "
                "pass inside the training call (double backward), which torch.compile does not support")

    def check_model(self, model: nn.Module) -> None:
        super().check_model(model)
        if self.surrogate_hdim and self.network is None:
            latents = sum(z[0].numel() for z in self.probe_pass(model)["z"])
            self.build_network(math.prod(self.x_shape) + latents, next(model.parameters()))

    def build_network(self, features: int, like: Tensor) -> None:
        """RELAX's r: ``features`` (data point and latents) -> tanh hidden layer -> one value."""
        self.network = tanh_network(features, self.surrogate_hdim).to(like)

    @staticmethod
    def _build_network_for_state(module: "REBAR", state_dict, prefix: str, *args) -> None:
        """A RELAX state loads into an estimator whose network is not built yet (it is built by
        ``check_model`` from the model's latent sizes): the sizes come from the state, the device
        and dtype from the estimator."""
        first = state_dict.get(f"{prefix}network.0.weight")
        if module.surrogate_hdim and module.network is None and first is not None:
            module.build_network(first.shape[1], module.log_temperature)

    def controls(self, model, x: Tensor, particles: Particles, temperature: Tensor,
                 options: RuntimeOptions) -> Tuple[Tensor, List[Tensor]]:
        """``c(u)`` and ``c(u~)`` of every (data point, mc) pair and control variate l,
        ``[2, bs, mc, L]``, from ONE pass of ``model`` with ``2 L mc`` outer samples per data point:
        per l, ``mc`` relaxed at the hard pass's noise ``u``, then ``mc`` at ``u~ ~ u | b`` (from
        the hard pass's ``b`` and logits, with their graph); each relaxation uses the logits of its
        own pass (relaxed parents). L = 1, or (``per_layer``) one per group, the first l groups
        drawn hard (``self.draw_order``: the groups in the order drawn). Also returns the logits of
        q of that pass, one ``[bs * 2 L mc * iw, N_g]`` per group."""
        mc, iw = self.layout
        bs, groups, u = x.shape[0], list(particles.noise), particles.noise
        hard, logits = group_samples(particles), group_logits(particles)
        # u, b and the hard logits of all groups side by side: [bs * mc * iw, sum N_g] each
        flat = [torch.cat([values[g].flatten(1) for g in groups], 1) for values in (u, hard, logits)]
        conditional = self.conditional_noise(u, *flat)  # [bs * mc * iw, sum N_g]
        both = torch.stack([flat[0].view(bs, mc * iw, -1), conditional.view(bs, mc * iw, -1)], 1)  # [bs, 2, mc iw, sum N_g]
        blocks = len(groups) if self.per_layer else 1
        both = both.unsqueeze(1).expand(bs, blocks, *both.shape[1:])  # [bs, L, 2, mc iw, sum N_g]
        pieces = both.reshape(bs * blocks * 2 * mc * iw, -1).split([u[g][0].numel() for g in groups], 1)
        noise = {g: piece.view(-1, *u[g].shape[1:]) for g, piece in zip(groups, pieces)}
        sampler = RelaxedSampler(temperature, noise, relaxation=self.relaxation)
        if self.per_layer:  # rows of control variate l draw their first l groups hard
            hard_draws = torch.arange(blocks, device=x.device).view(1, blocks, 1).expand(bs, blocks, 2 * mc * iw)
            sampler = PartlyRelaxedSampler(temperature, noise, hard_draws.reshape(-1), relaxation=self.relaxation)
        outer = 2 * blocks * mc
        relaxed = sample_particles(model, x, outer, iw, False, options, self.log_q, sampler)
        self.blocks, self.draw_order = blocks, getattr(sampler, "order", [])
        values = iw_bound(relaxed.log_weights(options), options.alpha)  # [bs, L 2 mc]
        if self.network is not None:  # r([x, z]); its first layer's x columns act once per data point
            first, activation, last = self.network
            latents = torch.cat([z.flatten(1) for z in relaxed.output["z"]], 1)  # [bs * 2 mc * iw, sum N_g]
            features = x[0].numel()
            hidden = (F.linear(2 * x.flatten(1) - 1, first.weight[:, :features], first.bias).unsqueeze(1)  # [bs, 1, h]
                      + F.linear(latents, first.weight[:, features:]).view(bs, outer * iw, -1))  # [bs, L 2 mc iw, h]
            values = values + last(activation(hidden)).view(bs, outer, iw).mean(-1)
        return values.view(bs, blocks, 2, mc).permute(2, 0, 3, 1), list(group_logits(relaxed).values())  # [2, bs, mc, L]

    def score_terms(self, x: Tensor, particles: Particles, bound: Tensor,
                    conditional: Tensor) -> Tuple[Tensor, Tensor]:
        """The score term ``sum_s coefficient_s log_q_s``: ``log q(b)`` of all layers with
        ``f(b) - b(x) - eta c(u~)`` (S = 1); with ``per_layer``, ``log q(b)`` of all layers with
        ``f(b) - b(x)``, then each control variate's ``paired_scores`` with ``-eta c_l(u~)`` (S = 1 + L)."""
        baseline = 0.0 if self.baseline is None else self.baseline(2 * x.flatten(1) - 1)  # b(x): [bs, 1]
        if not self.per_layer:
            coefficient = bound.detach().unsqueeze(-1) - self.eta * conditional  # [bs, mc, 1]
            if self.baseline is not None:
                coefficient = coefficient - baseline.unsqueeze(-1)
            return particles.log_qz.sum((-2, -1)).unsqueeze(-1), coefficient
        layers = particles.log_qz.sum(-2)  # [bs, mc, G]: log q(b) of each layer, summed over the particles
        log_q = torch.cat([layers.sum(-1, keepdim=True), self.paired_scores(layers)], -1)  # [bs, mc, 1 + L]
        signal = (bound.detach() - baseline).unsqueeze(-1)  # [bs, mc, 1]
        return log_q, torch.cat([signal, -self.eta * conditional], -1)  # [bs, mc, 1 + L]

    def paired_scores(self, layers: Tensor) -> Tensor:
        """``[bs, mc, L]`` from log q of each layer ``[bs, mc, G]``: the log q that control variate l
        multiplies, of every layer it relaxes (the l-th drawn and the later ones: the relaxation
        of a layer moves the expectation of c_l through the score of each). ``own_layer_score``:
        the REBAR code's pairing with the l-th alone, biased for l < G - 1 (reproduction only)."""
        if not self.per_layer:
            return layers.sum(-1, keepdim=True)
        ordered = layers[..., self.draw_order]  # [bs, mc, G]
        return ordered if self.own_layer_score else ordered.flip(-1).cumsum(-1).flip(-1)

    def conditional_noise(self, noise: Dict[int, Tensor], u: Tensor, b: Tensor, logits: Tensor) -> Tensor:
        """``u~ ~ u | b`` for the flat ``[rows, sum N_g]`` noise, hard samples and logits of the pass
        whose noise per group is ``noise``: from the second noise v, or (``same_noise``) equal to
        ``u`` with the conditional gradient."""
        if not self.same_noise:
            second = self.second_noise(noise)
            v = torch.cat([second[g].flatten(1) for g in noise], 1)  # [rows, sum N_g]
            return conditional_uniform(v, b, logits)
        conditional = conditional_uniform(interval_position(u, b, logits), b, logits)
        return conditional + (u - conditional).detach()  # u in value (not up to rounding)

    def surrogate(self, model: nn.Module, x: Tensor, particles: Particles,
                  options: RuntimeOptions) -> Tuple[Tensor, Dict[str, Tensor]]:
        bound = iw_bound(particles.log_weights(options), options.alpha)  # [bs, mc], with the log q term
        temperature = self.log_temperature.exp()
        phi, theta = split_parameters(model)
        with frozen(theta):
            (relaxed, conditional), relaxed_logits = self.controls(model, x, particles, temperature, options)
        log_q, coefficient = self.score_terms(x, particles, bound, conditional)  # [bs, mc, S] each
        difference = (relaxed - conditional).sum(-1)  # [bs, mc]
        diagnostics = {"rebar/eta": self.eta.detach(), "rebar/temperature": temperature.detach()}
        if self.learn and self.training and torch.is_grad_enabled():  # for the variance step (``backward``)
            logits = list(group_logits(particles).values()) + relaxed_logits
            particles.backward_terms = {"gradients": (phi, theta, logits, log_q, coefficient, difference, bound)}
        loss = -((coefficient.detach() * log_q).sum(-1) + self.eta.detach() * difference) - bound  # [bs, mc]
        return loss.mean(1), diagnostics  # [bs]

    def backward(self, loss: Tensor, particles: Particles) -> None:
        """The training step's backward pass: the model gets the gradient of ``loss.mean()`` and, in
        training mode, eta, log lam (and psi, the baseline) the gradient of the variance objective,
        both from one backward pass with its graph (``gradients``)."""
        terms = particles.backward_terms
        pairs = None if terms is None else self.gradients(*terms["gradients"])
        if pairs is None:
            loss.mean().backward()
            return
        for parameter, gradient in pairs:
            if parameter.grad is None:
                parameter.grad = gradient
            else:
                parameter.grad.add_(gradient)

    def gradients(self, phi: List[Tensor], theta: List[Tensor], logits: List[Tensor], log_q: Tensor,
                  coefficient: Tensor, difference: Tensor, bound: Tensor) -> Optional[List[Tuple[Tensor, Tensor]]]:
        """``(parameter, gradient)`` pairs: for the model, the gradient of ``loss.mean()``, from one
        backward pass with its graph that also gives the per-data-point gradients ``g`` for the
        logits of q (``logits``: of the hard pass, then of the relaxed one, one per group); for
        eta, log lam (and psi), the gradient of the variance objective ``sum g^2`` (double
        backpropagation). None when the model's parameters are not in the graph (per-datum copies)."""
        own = [p for p in self.parameters() if p.requires_grad]
        if not phi:
            return None
        scale = 1.0 / bound.numel()  # the batch mean over data points and mc samples
        # score term (coefficient as grad_outputs: constant for the model, live for eta, lam, psi)
        # + eta (grad c(u) - grad c(u~)) + the direct term (and theta's whole gradient)
        outputs = [log_q, -(self.eta * difference).sum() * scale, -bound.sum() * scale]
        grad_outputs = [-coefficient * scale, torch.ones_like(outputs[1]), torch.ones_like(outputs[2])]
        gradients = torch.autograd.grad(outputs, logits + phi + theta, grad_outputs, create_graph=True,
                                        allow_unused=True)
        per_logit, per_parameter = gradients[:len(logits)], gradients[len(logits):]
        if all(g is None for g in per_parameter):
            return None  # the model's parameters are not in the graph (per-datum copies)
        pairs = list(zip(phi + theta, per_parameter))
        if own:
            objective = self.objective_value(per_logit, per_parameter, log_q.shape[0])
            pairs += zip(own, torch.autograd.grad(objective, own, allow_unused=True))
        return [(p, g.detach()) for p, g in pairs if g is not None]

    def objective_value(self, per_logit: List[Tensor], per_parameter: Tuple[Optional[Tensor], ...], bs: int) -> Tensor:
        """The objective of eta, log lam (and psi, the baseline): ``variance_objective`` of the logit
        offsets, or (``parameters``) the mean over the model's parameters of the squared minibatch
        gradient (``per_parameter``, with its graph: double backpropagation through the weights)."""
        if self.objective == "logits":
            return self.variance_objective(per_logit, bs)
        present = [g for g in per_parameter if g is not None]
        return sum(g.square().sum() for g in present) / sum(g.numel() for g in present)

    @staticmethod
    def variance_objective(per_logit: List[Tensor], bs: int) -> Tensor:
        """``sum_{i, g, n} (d loss / d delta_{i, g, n})^2`` for offsets ``delta`` added to the logits
        of unit n of group g of data point i in every pass and particle: the gradient of each
        offset is the sum of the gradients for those logits (``per_logit``: of the hard pass,
        then of the relaxed one, one ``[rows, N_g]`` per group)."""
        groups = len(per_logit) // 2
        hard, relaxed = (torch.cat([a.flatten(1) for a in adjoints], 1) for adjoints in (per_logit[:groups],
                                                                                         per_logit[groups:]))
        units = hard.shape[1]
        per_offset = hard.view(bs, -1, units).sum(1) + relaxed.view(bs, -1, units).sum(1)  # [bs, sum N_g]
        return per_offset.square().sum()

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, learn={self.learn}, surrogate_hdim={self.surrogate_hdim}, "
                f"neural_baseline={self.baseline is not None}, same_noise={self.same_noise}, "
                f"relaxation={self.relaxation}, variance_objective={self.objective}")


FAMILIES = (EstimatorFamily(
    name="rebar", grammar="rebar | dynamic-rebar | rebar-learned-eta | relax",
    ids={"rebar": (REBAR, {"learn": False}), "dynamic-rebar": (REBAR, {"learn": True}),
         "rebar-learned-eta": (REBAR, {"learn": True, "learn_temperature": False}),
         "relax": (REBAR, {"learn": True, "surrogate_hdim": 64})},
    examples=("rebar", "dynamic-rebar", "rebar-learned-eta", "relax"),
    label={"rebar": "REBAR", "dynamic-rebar": "dynamic REBAR", "rebar-learned-eta": "REBAR (learned η)",
           "relax": "RELAX"},
    style={"rebar": Style("#01665e", (7, 0)), "dynamic-rebar": Style("#35978f", (7, 1)),
           "rebar-learned-eta": Style("#5ab4ac", (7, 3)), "relax": Style("#80cdc1", (7, 2))},
    table=(
        (
            "`rebar`, `dynamic-rebar`, `rebar-learned-eta`, `relax`",
            ("relaxed control variates: fixed η and τ, η and τ trained online to minimise variance (Tucker et al. "
             "2017), η alone trained (the REBAR code's REBAR), a learned surrogate (Grathwohl et al. 2018)"),
            "∇ L_K",
        ),
    )),)
