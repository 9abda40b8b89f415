"""Every estimator on every model that accepts it: a seeded step is reproducible, a trained
estimator's state loads into a fresh one (its learned baselines, running statistics and
surrogate network included), and a call without gradient (evaluation mode) gives a finite loss."""
import pytest
import torch

from ovis.estimators.score_function import Reinforce
from tests.models.test_training_step import MODELS, build
from tests.test_device_placement import accepted_pairs, estimator_for


def seeded_step(model, estimator, x, seed=3):
    """Loss and model gradients of one training call with the global seed ``seed``."""
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    loss, _, _ = estimator(model, x)
    loss.mean().backward()
    return loss.detach(), [None if p.grad is None else p.grad.clone() for p in model.parameters()]


def same(first, second):
    (loss_a, grads_a), (loss_b, grads_b) = first, second
    return torch.equal(loss_a, loss_b) and all(
        (a is None and b is None) or (a is not None and b is not None and torch.equal(a, b))
        for a, b in zip(grads_a, grads_b))


def state_round_trip(estimator_id, model, trained, x):
    """The step of ``trained`` and of a fresh estimator that loaded its state."""
    loaded = estimator_for(estimator_id, x) if isinstance(estimator_id, str) else estimator_id
    loaded.load_state_dict(trained.state_dict())
    loaded.check_model(model)
    return seeded_step(model, trained, x), seeded_step(model, loaded, x)


@pytest.mark.parametrize("key", list(MODELS))
def test_steps_reproduce_states_reload_and_evaluation_runs(key):
    twins = accepted_pairs(key)  # built again from the same seeds
    for estimator_id, model, estimator, x in accepted_pairs(key):
        twin_id, twin_model, twin, _ = next(twins)
        assert twin_id == estimator_id
        assert same(seeded_step(model, estimator, x), seeded_step(twin_model, twin, x)), estimator_id
        torch.manual_seed(0)
        for _ in range(2):  # learned parts (baselines, running statistics, eta, lam, psi) move
            estimator(model, x)[0].mean().backward()
            with torch.no_grad():
                for p in estimator.parameters():
                    if p.grad is not None:
                        p -= 0.1 * p.grad
        assert same(*state_round_trip(estimator_id, model, estimator, x)), estimator_id
        model.eval(), estimator.eval()
        with torch.no_grad():
            assert torch.isfinite(estimator(model, x)[0]).all(), estimator_id


class UnseededNoise(Reinforce):
    """Broken: a control variate drawn from a generator that the global seed does not reach."""

    def control_variate(self, x, log_weights, bound, weights, aux_log_weights, options):
        generator = torch.Generator()
        generator.seed()
        return torch.rand((), generator=generator)


class UnsavedOffset(Reinforce):
    """Broken: a learned offset kept in a plain attribute, outside the state dict."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.offset = torch.zeros(())

    def control_variate(self, x, log_weights, bound, weights, aux_log_weights, options):
        return self.offset


def test_an_unseeded_draw_or_an_unsaved_state_is_found():
    model, x = build("sbm")
    assert not same(seeded_step(model, UnseededNoise(mc=1, iw=3), x), seeded_step(model, UnseededNoise(mc=1, iw=3), x))
    trained = UnsavedOffset(mc=1, iw=3)
    trained.offset = torch.tensor(5.0)
    assert not same(*state_round_trip(UnsavedOffset(mc=1, iw=3), model, trained, x))
