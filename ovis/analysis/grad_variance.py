"""The gradient-variance comparison of the REBAR code (Tucker et al., 2017): while one estimator
trains the model, measure every ``--eval_freq`` the log-variance of several estimators' gradients
at the same parameters and on the same batch.

    python run.py ... --estimator dynamic-rebar --track_grad_variances nvil,muprop,rebar,dynamic-rebar

For each tracked id, ``gradient_statistics`` draws ``--grad_samples`` gradients of the
parameters selected by ``--grad_key`` (default: the inference network) on the gradient batch
(``--grad_bs`` training points) and the metric ``grad_log_variance/<id>`` is the natural log of
their mean per-coordinate variance (``grads/variance``). The training estimator's id uses the
training estimator itself (its learned control variates are those of the trajectory); any other
id with parameters (NVIL's baseline, dynamic REBAR's eta and temperature, RELAX's network)
first adapts them for ``adapt_steps`` steps of its own objective on the batch (the model is not
changed), so that learned control variates are compared in a trained state.

``--grad_variance_mode moving`` measures instead the REBAR code's variance (``MovingVarianceTracker``):
every training step, each tracked id's gradient of the selected parameters on the training batch,
at the parameters of that step, updates moving averages of ``g`` and ``g^2`` (``MovingGradientMoments``);
learned control variates follow the trajectory, trained by their own objectives.
"""
import math
from typing import Callable, Dict, List, Optional

import torch
from torch import Tensor, nn

from ..cli import comma_list
from ..estimators.config import parse_estimator_id
from .gradients import gradient_statistics, select_parameters

METRIC = "grad_log_variance/{}"
MOVING_METRIC = "grad_moving_variance/{}"
ADAPT_STEPS = 100


def parse_tracked_ids(text: Optional[str], mc: int = 1, iw: int = 1) -> List[str]:
    """``"nvil, rebar"`` -> ``["nvil", "rebar"]``; ValueError naming the bad id and what to do when an id
    does not parse or cannot be built with ``mc`` and ``iw``."""
    ids = comma_list(text)
    for estimator_id in ids:
        try:
            Estimator, config = parse_estimator_id(estimator_id)
            with torch.random.fork_rng(devices=[]):  # a neural baseline's initialisation draws
                Estimator(mc=mc, iw=iw, x_shape=(1,), **config)
        except ValueError as error:
            raise ValueError(f"--track_grad_variances {estimator_id}: {error}") from None
    if len(set(ids)) != len(ids):
        raise ValueError(f"--track_grad_variances lists an id twice: {ids}")
    return ids


class GradientVarianceTracker:
    """``tracker(model, x, n_samples, param_filter, **runtime) -> {"grad_log_variance/<id>": float}``."""

    def __init__(self, ids: List[str], mc: int, iw: int, x_shape, training: Optional[Dict[str, nn.Module]] = None,
                 adapt_steps: int = ADAPT_STEPS, adapt_lr: float = 5e-3,
                 estimator_options: Optional[Callable[[type, Dict], Dict]] = None):
        self.ids, self.mc, self.iw, self.x_shape = list(ids), mc, iw, tuple(x_shape)
        self.estimators: Dict[str, nn.Module] = dict(training or {})
        self.shared = set(self.estimators)
        self.adapt_steps, self.adapt_lr = adapt_steps, adapt_lr
        self.estimator_options = estimator_options  # (class, id's config) -> the run's extra constructor options

    def estimator(self, estimator_id: str, model: nn.Module) -> nn.Module:
        if estimator_id not in self.estimators:
            Estimator, config = parse_estimator_id(estimator_id)
            extra = self.estimator_options(Estimator, config) if self.estimator_options else {}
            reference = next(model.parameters())
            estimator = Estimator(mc=self.mc, iw=self.iw, x_shape=self.x_shape, **config, **extra)
            estimator.check_model(model)
            self.estimators[estimator_id] = estimator.to(reference.device)
        return self.estimators[estimator_id]

    def adapt(self, estimator: nn.Module, model: nn.Module, x, **runtime) -> None:
        """Train the estimator's own parameters on ``x`` (the model's parameters are not touched)."""
        own = [p for p in estimator.parameters() if p.requires_grad]
        if not own:
            return
        optimizer = torch.optim.Adam(own, lr=self.adapt_lr)
        for _ in range(self.adapt_steps):
            for p, g in zip(own, step_gradients(estimator, model, x, own, **runtime)):
                p.grad = g
            optimizer.step()

    def __call__(self, model: nn.Module, x, n_samples: int, param_filter: str, **runtime) -> Dict[str, float]:
        values = {}
        for estimator_id in self.ids:
            estimator = self.estimator(estimator_id, model)
            if estimator_id not in self.shared:
                self.adapt(estimator, model, x, **runtime)
            training = estimator.training
            estimator.eval()  # no running-statistics updates or variance steps while measuring
            try:
                statistics = gradient_statistics(estimator, model, x, n_samples, param_filter, vectorize=False,
                                                 **runtime)
            finally:
                estimator.train(training)
            variance = statistics.summary["grads/variance"]
            values[METRIC.format(estimator_id)] = math.log(variance) if variance > 0 else float("-inf")
        return values


class MovingGradientMoments:
    """The REBAR code's gradient variance of several estimators along one trajectory (Tucker et
    al. 2017, ``SBNTrackGradVariances``; with one estimator, ``_create_train_op``'s).

    ``update({id: g [P]})`` moves ``m_e <- d m_e + (1 - d) g_e`` and ``s_e <- d s_e + (1 - d) g_e^2``
    (both start at zero, no bias correction, as TensorFlow's ``ExponentialMovingAverage`` of a
    tensor) and returns ``{MOVING_METRIC(id): mean_p(s_e - mu^2)}`` with ``mu`` the mean of ``m_e``
    over the estimators: the mean per-coordinate variance around the estimators' common mean."""

    def __init__(self, ids: List[str], decay: float = 0.999):
        self.ids, self.decay = list(ids), decay
        self.first: Dict[str, Tensor] = {}
        self.second: Dict[str, Tensor] = {}

    def update(self, gradients: Dict[str, Tensor]) -> Dict[str, Tensor]:
        for estimator_id in self.ids:
            g = gradients[estimator_id].detach()  # [P]
            if estimator_id not in self.first:
                self.first[estimator_id], self.second[estimator_id] = torch.zeros_like(g), torch.zeros_like(g)
            self.first[estimator_id].lerp_(g, 1 - self.decay)
            self.second[estimator_id].lerp_(g.square(), 1 - self.decay)
        mu = torch.stack([self.first[estimator_id] for estimator_id in self.ids]).mean(0)  # [P]
        return {MOVING_METRIC.format(estimator_id): (self.second[estimator_id] - mu.square()).mean()
                for estimator_id in self.ids}


class MovingVarianceTracker(GradientVarianceTracker):
    """``tracker.step(model, x, **runtime) -> {"grad_moving_variance/<id>": tensor}`` after the
    training step's backward pass and before its update: the training estimator's gradient is read
    from ``.grad``; every other id computes its own on ``x`` and trains its own parameters with
    Adam (``lr``, ``betas``), as the REBAR code trains every tracked estimator's control variates."""

    def __init__(self, ids: List[str], mc: int, iw: int, x_shape, training: Dict[str, nn.Module], model: nn.Module,
                 param_filter: str, decay: float = 0.999, lr: float = 5e-3, betas=None,
                 estimator_options: Optional[Callable[[type, Dict], Dict]] = None):
        super().__init__(ids, mc, iw, x_shape, training=training, estimator_options=estimator_options)
        self.parameters = [p for _, p in select_parameters(model, param_filter)]
        self.moments = MovingGradientMoments(ids, decay)
        self.lr, self.betas = lr, betas
        self.optimizers: Dict[str, torch.optim.Optimizer] = {}

    def step(self, model: nn.Module, x: Tensor, **runtime) -> Dict[str, Tensor]:
        return self.moments.update({estimator_id: self.gradient(estimator_id, model, x, **runtime)
                                    for estimator_id in self.ids})

    def gradient(self, estimator_id: str, model: nn.Module, x: Tensor, **runtime) -> Tensor:
        """The flat gradient ``[P]`` of ``estimator_id`` for the selected parameters (zeros where none)."""
        if estimator_id in self.shared:
            return flatten(self.parameters, [p.grad for p in self.parameters])
        estimator = self.estimator(estimator_id, model)
        own = [p for p in estimator.parameters() if p.requires_grad]
        grads = step_gradients(estimator, model, x, self.parameters + own, **runtime)
        if own:
            if estimator_id not in self.optimizers:
                self.optimizers[estimator_id] = torch.optim.Adam(own, lr=self.lr, **(
                    {"betas": tuple(self.betas)} if self.betas else {}))
            for p, g in zip(own, grads[len(self.parameters):]):
                p.grad = g
            self.optimizers[estimator_id].step()
        return flatten(self.parameters, grads[:len(self.parameters)])


def step_gradients(estimator: nn.Module, model: nn.Module, x: Tensor, parameters: List[Tensor],
                   **runtime) -> List[Optional[Tensor]]:
    """The gradients for ``parameters`` of one training step of ``estimator`` (its backward pass:
    own parameters get the gradient of their own objective, ``GradientEstimator.backward``); the
    ``.grad`` of the model's and the estimator's parameters are left as they were."""
    saved = [(p, p.grad) for p in [*model.parameters(), *estimator.parameters()]]
    for p, _ in saved:
        p.grad = None
    try:
        estimator(model, x, backward=True, return_diagnostics=False, **runtime)
        return [p.grad for p in parameters]
    finally:
        for p, grad in saved:
            p.grad = grad


def flatten(parameters: List[Tensor], grads) -> Tensor:
    """``grads`` (None for a parameter without gradient) as one vector ``[P]``."""
    return torch.cat([(torch.zeros_like(p) if g is None else g.detach()).flatten() for p, g in zip(parameters, grads)])
