import torch

from ovis.training.data import FixedSubset, TrainingBatches, derive_seed, epoch_count, steps_per_epoch

from .toys import ToySplit


def _split(n=23):
    return ToySplit(torch.randint(0, 256, (n, 1, 2, 2), generator=torch.Generator().manual_seed(0), dtype=torch.uint8))


def test_epoch_count_follows_the_spec():
    # binmnist, bs 24, 4e6 steps -> 2084 steps per epoch, 1920 epochs; gmm bs 100, 1e5 steps -> 101
    assert steps_per_epoch(50000, 24) == 2084 and epoch_count(-1, 4_000_000, 50000, 24) == 1920
    assert epoch_count(-1, 100_000, 100_000, 100) == 101
    assert epoch_count(7, 4_000_000, 50000, 24) == 7


def test_derived_seeds_are_stable_and_distinct():
    assert derive_seed(1, "order", 3) == derive_seed(1, "order", 3)
    seeds = {derive_seed(s, key, e) for s in (1, 2) for key in ("order", "batch") for e in range(50)}
    assert len(seeds) == 200 and all(0 <= s < 2 ** 63 for s in seeds)


def test_each_epoch_is_a_permutation_with_its_own_order():
    batches = TrainingBatches(_split(), batch_size=5, seed=1)
    assert len(batches) == 5
    orders = [batches.order(e) for e in range(3)]
    assert all(torch.equal(order.sort().values, torch.arange(23)) for order in orders)
    assert not torch.equal(orders[0], orders[1])
    assert [x.shape[0] for x in batches.epoch(0)] == [5, 5, 5, 5, 3]


def test_a_resumed_epoch_continues_with_the_same_batches_and_binarisation():
    batches = TrainingBatches(_split(), batch_size=4, seed=7)
    full = list(batches.epoch(2))
    resumed = list(TrainingBatches(_split(), batch_size=4, seed=7).epoch(2, start=3))
    assert len(resumed) == len(full) - 3
    assert all(torch.equal(a, b) for a, b in zip(full[3:], resumed))
    # dynamic binarisation: another epoch over the same points draws other values
    assert not all(torch.equal(a, b) for a, b in zip(full, batches.epoch(3)))


def test_worker_processes_load_the_same_batches():
    batches = list(TrainingBatches(_split(), batch_size=6, seed=3).epoch(1, start=1))
    loaded = list(TrainingBatches(_split(), batch_size=6, seed=3, workers=2).epoch(1, start=1))
    assert len(loaded) == 3 and all(torch.equal(a, b) for a, b in zip(batches, loaded))


def test_training_batches_do_not_touch_the_global_rng():
    torch.manual_seed(0)
    list(TrainingBatches(_split(), batch_size=4, seed=1).epoch(0))
    after = torch.rand(1)
    torch.manual_seed(0)
    assert torch.equal(after, torch.rand(1))


def test_fixed_subsets_repeat_points_and_binarisation():
    subset = FixedSubset(_split(), max_points=10, seed=1, name="train")
    first = torch.cat(list(subset.batches(4, torch.device("cpu"))))
    again = torch.cat(list(FixedSubset(_split(), 10, 1, "train").batches(4, torch.device("cpu"))))
    assert first.shape == (10, 1, 2, 2) and torch.equal(first, again)
    assert len(set(subset.index.tolist())) == 10
    assert torch.equal(torch.cat(list(subset.batches(4, torch.device("cpu"), limit=8))), first[:8])
    whole = FixedSubset(_split(), max_points=None, seed=1, name="test")
    assert torch.equal(whole.index, torch.arange(23))
    assert not torch.equal(FixedSubset(_split(), 10, 1, "test").index, subset.index)
