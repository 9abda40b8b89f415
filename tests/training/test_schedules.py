import pytest
import torch

from ovis.training.schedules import AlphaSchedule, LearningRateSchedule


def test_constant_alpha_without_warmup():
    schedule = AlphaSchedule(alpha=0.7, alpha_init=None, period=0)
    assert [schedule(step) for step in (0, 10, 10 ** 7)] == [0.7, 0.7, 0.7]


def test_log_warmup_matches_the_spec_example():
    # the original's example: a0 = 0.99, a1 = 0 gives 0.99, 0.968, 0.9, 0.684, 0 at x = 0, .25, .5, .75, 1
    schedule = AlphaSchedule(alpha=0.0, alpha_init=0.99, period=1000, mode="log")
    values = [schedule(step) for step in (0, 250, 500, 750, 1000, 5000)]
    expected = [0.99, 1 - 0.01 ** 0.75, 0.9, 1 - 0.01 ** 0.25, 0.0, 0.0]
    assert values == pytest.approx(expected, abs=1e-12)
    assert values[1] == pytest.approx(0.968, abs=5e-4) and values[3] == pytest.approx(0.684, abs=5e-4)


def test_linear_warmup_with_offset():
    schedule = AlphaSchedule(alpha=0.2, alpha_init=0.6, period=100, offset=50, mode="linear")
    assert [schedule(s) for s in (0, 50, 100, 150, 400)] == pytest.approx([0.6, 0.6, 0.4, 0.2, 0.2])


def test_sigmoid_warmup_reaches_the_end_value_and_is_monotone():
    schedule = AlphaSchedule(alpha=0.0, alpha_init=0.9, period=1000, mode="sigmoid")
    values = [schedule(step) for step in range(0, 1201, 25)]
    assert values[0] == pytest.approx(0.9, abs=1e-12)
    assert schedule(1000) == pytest.approx(0.0, abs=1e-12) and schedule(1200) == pytest.approx(0.0, abs=1e-12)
    assert schedule(500) == pytest.approx(0.45, abs=1e-12)  # symmetric around the midpoint
    assert all(later <= earlier for earlier, later in zip(values, values[1:]))


@pytest.mark.parametrize("kwargs, message", [
    (dict(alpha=0.0, period=10), "alpha_init"),
    (dict(alpha=0.0, alpha_init=1.0, period=10, mode="log"), "alpha_init < 1"),
    (dict(alpha=0.0, alpha_init=0.5, period=10, mode="cosine"), "linear, log, sigmoid"),
])
def test_alpha_schedule_refuses_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AlphaSchedule(**kwargs)


def test_learning_rate_halvings_split_training_into_equal_phases():
    schedule = LearningRateSchedule(epochs=10, reduce_steps=1)
    assert [schedule.factor(e) for e in range(10)] == [1.0] * 5 + [0.5] * 5
    schedule = LearningRateSchedule(epochs=9, reduce_steps=2)
    assert [schedule.factor(e) for e in range(9)] == [1.0] * 3 + [0.5] * 3 + [0.25] * 3


def test_learning_rate_more_halvings_than_epochs_does_not_divide_by_zero():
    # the original computes epochs // (reduce_steps + 1) = 0 and divides by it
    schedule = LearningRateSchedule(epochs=2, reduce_steps=3)
    assert [schedule.factor(e) for e in range(2)] == [1.0, 0.25]
    assert LearningRateSchedule(epochs=2, reduce_steps=0).factor(1) == 1.0


def test_learning_rate_apply_sets_every_group_of_every_optimizer():
    weights = [torch.nn.Parameter(torch.zeros(1)) for _ in range(3)]
    model_optimizer = torch.optim.Adam([{"params": [weights[0]], "lr": 1e-3}, {"params": [weights[1]], "lr": 1e-2}])
    baseline_optimizer = torch.optim.Adam([weights[2]], lr=5e-3)
    optimizers = [model_optimizer, baseline_optimizer]
    base = [[1e-3, 1e-2], [5e-3]]
    schedule = LearningRateSchedule(epochs=4, reduce_steps=1)
    schedule.apply(optimizers, base, epoch=3)
    assert [g["lr"] for o in optimizers for g in o.param_groups] == pytest.approx([5e-4, 5e-3, 2.5e-3])
    schedule.apply(optimizers, base, epoch=0)  # a pure function of the epoch: resuming recomputes it
    assert [g["lr"] for o in optimizers for g in o.param_groups] == pytest.approx([1e-3, 1e-2, 5e-3])
