"""Small stand-ins for the parts the trainer is built from (DESIGN 1-3): a data set with
dynamic binarisation, a one-layer sigmoid belief network, a score-function IWAE estimator and
the plain L_K evaluator. They follow the contracts exactly so that the trainer can be tested
without the real registries, and fast."""
import math
import os
import signal
import time

import torch
from torch import nn
from torch.distributions import Bernoulli

from ovis.models.base import TemplateModel
from ovis.training.trainer import RunComponents


class ToySplit(torch.utils.data.Dataset):
    """Grey levels stored as uint8 ``[n, *x_shape]``; batches are binarised with the generator."""

    def __init__(self, grey: torch.Tensor):
        self.grey = grey

    def __len__(self):
        return self.grey.shape[0]

    def __getitem__(self, i):
        return self.batch(torch.tensor([i]))[0]

    def batch(self, index, generator=None):
        return torch.bernoulli(self.grey[index].float() / 255, generator=generator)

    def mean(self):
        return self.grey.float().mean(0) / 255


class ToyDatasets:
    def __init__(self, n_train=48, n_test=24, x_shape=(1, 3, 3), seed=0):
        generator = torch.Generator().manual_seed(seed)

        def grey(n):
            return ToySplit(torch.randint(0, 256, (n, *x_shape), generator=generator, dtype=torch.uint8))

        self.train, self.valid, self.test = grey(n_train), grey(n_test), grey(n_test)
        self.x_shape = x_shape
        self.name = "toy"


class ToySBN(TemplateModel):
    """q(z|x) = Bern(sigmoid(W_q (2x - 1))), p(z) = Bern(sigmoid(a)), p(x|z) = Bern(sigmoid(W_p (2z - 1)))."""

    def __init__(self, x_shape, n_latent=4):
        super().__init__()
        self.x_shape = tuple(x_shape)
        dim = math.prod(self.x_shape)
        self.inference_network = nn.Linear(dim, n_latent)
        self.generative_model = nn.ModuleDict({"decoder": nn.Linear(n_latent, dim)})
        self.generative_model.prior = nn.Parameter(torch.zeros(n_latent))

    def _decode(self, z):
        logits = self.generative_model["decoder"](2 * z - 1).view(-1, *self.x_shape)
        return Bernoulli(logits=logits, validate_args=False)

    def forward(self, x, reparam=False, **kwargs):
        qz = Bernoulli(logits=self.inference_network(2 * x.flatten(1) - 1), validate_args=False)
        z = qz.sample()
        pz = Bernoulli(logits=self.generative_model.prior.expand_as(z), validate_args=False)
        return {"px": self._decode(z), "z": [z], "qz": [qz], "pz": [pz]}

    def sample_from_prior(self, n, **kwargs):
        pz = Bernoulli(logits=self.generative_model.prior.expand(n, -1), validate_args=False)
        z = pz.sample()
        return {"px": self._decode(z), "z": [z], "pz": [pz]}


class ToyScoreEstimator(nn.Module):
    """IWAE / Renyi bound; theta by the pathwise gradient of L, phi by the score function with
    learning signal d_k = L - v_k and no control variate (the score-function template with c_k = 0).

    Test hooks: ``nan_after`` makes the loss NaN from that training call on; ``signal_at``
    sends the process SIGTERM at that training call; ``$TOY_STEP_DELAY`` (seconds) slows every
    training call down."""

    def __init__(self, mc=1, iw=1, nan_after=None, signal_at=None, **config):
        super().__init__()
        self.mc, self.iw = mc, iw
        self.nan_after, self.signal_at = nan_after, signal_at
        self.training_calls = 0
        self.delay = float(os.environ.get("TOY_STEP_DELAY", "0"))

    def check_model(self, model):
        pass

    def model_evaluations(self, latent_size=None):
        return self.mc * self.iw

    def forward(self, model, x, backward=False, return_diagnostics=True, alpha=0.0, beta=1.0, **kwargs):
        bs, mc, iw = x.shape[0], self.mc, self.iw
        x_expanded = x.repeat_interleave(mc * iw, dim=0)  # [bs*mc*iw, *x_shape]
        output = model(x_expanded)
        log_px = output["px"].log_prob(x_expanded).flatten(1).sum(1).view(bs, mc, iw)
        log_qz = sum(q.log_prob(z).flatten(1).sum(1) for q, z in zip(output["qz"], output["z"])).view(bs, mc, iw)
        log_pz = sum(p.log_prob(z).flatten(1).sum(1) for p, z in zip(output["pz"], output["z"])).view(bs, mc, iw)
        log_weights = (1 - alpha) * (log_px - beta * (log_qz.detach() - log_pz))  # [bs, mc, iw]
        bound = (torch.logsumexp(log_weights, -1) - math.log(iw)) / (1 - alpha)  # [bs, mc]
        signal_ = (bound.unsqueeze(-1) - log_weights.softmax(-1)).detach()  # [bs, mc, iw]
        loss = -(bound + (signal_ * log_qz).sum(-1)).mean(1)  # [bs]
        if self.training:
            self._test_hooks()
            if self.nan_after is not None and self.training_calls > self.nan_after:
                loss = loss * float("nan")
        if backward:
            loss.mean().backward()
        diagnostics = None
        if return_diagnostics:
            log_px, log_qz, log_pz = log_px.detach(), log_qz.detach(), log_pz.detach()
            elbo = (log_px - log_qz + log_pz).mean((1, 2))  # [bs]
            ess = (2 * torch.logsumexp(log_weights, -1) - torch.logsumexp(2 * log_weights, -1)).exp().mean(1)
            diagnostics = {"loss/L_k": bound.detach().mean(1), "loss/elbo": elbo, "loss/nll": -log_px.mean((1, 2)),
                           "loss/kl": (log_qz - log_pz).mean((1, 2)), "loss/kl_q_p": bound.detach().mean(1) - elbo,
                           "loss/ess": ess.detach()}
        return loss, diagnostics, output

    def _test_hooks(self):
        self.training_calls += 1
        if self.signal_at is not None and self.training_calls == self.signal_at:
            os.kill(os.getpid(), signal.SIGTERM)
        if self.delay:
            time.sleep(self.delay)


class ToyEvaluator:
    """The plain L_K (alpha = 0, beta = 1) under no_grad, like ``BoundEvaluator``."""

    def __init__(self, iw, chunk_size=None, compiler=None):
        self.estimator = ToyScoreEstimator(mc=1, iw=iw).eval()

    @torch.no_grad()
    def __call__(self, model, x):
        return self.estimator(model, x)


def build_toy_components(args, device=torch.device("cpu"), **estimator_options):
    """RunComponents for parsed run.py ``args``, with the toys in place of the registries
    (the ``build`` argument of ``ovis.apps.train.main``)."""
    datasets = ToyDatasets()
    torch.manual_seed(args.seed)
    model = ToySBN(datasets.x_shape)
    estimator = ToyScoreEstimator(mc=args.mc, iw=args.iw, **estimator_options)
    return RunComponents(datasets=datasets, model=model, estimator=estimator, evaluator=ToyEvaluator,
                         device=device, estimator_id="toy-score")
