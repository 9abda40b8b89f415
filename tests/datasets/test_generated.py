"""Generated data sets: Gaussian toy, GMM, shapes."""
import math

import numpy as np
import torch

from ovis.datasets import get_datasets
from ovis.datasets.gaussian_toy import sample_toy_data, toy_true_mean
from ovis.datasets.shapes import SHAPE_COLOURS, shape_masks


def all_points(split):
    return split.batch(torch.arange(len(split)))


def test_gaussian_toy_matches_the_original_values():
    """Check values of the original code (torch CPU generator, data seed 42)."""
    datasets = get_datasets("gaussian-toy")
    assert datasets.x_shape == (20,)
    assert datasets.train is datasets.valid is datasets.test and len(datasets.train) == 1024
    x = all_points(datasets.train)
    torch.testing.assert_close(toy_true_mean()[:4], torch.tensor([1.9269, 1.4873, 0.9007, -2.1055]), atol=1e-4, rtol=0)
    torch.testing.assert_close(x.mean(0)[:4], torch.tensor([1.9459, 1.5690, 0.9091, -2.1564]), atol=1e-4, rtol=0)
    torch.testing.assert_close(datasets.train.mean(), x.mean(0))
    assert abs(x.var(0).mean() - 2.02) < 0.05  # p(x) = N(mu, 2 I)
    torch.testing.assert_close(sample_toy_data(), x)
    assert sample_toy_data(100, 5, seed=1).shape == (100, 5)


def test_gmm_train_is_drawn_afresh_and_held_out_sets_are_fixed():
    datasets = get_datasets("gmm")
    assert datasets.x_shape == (1,) and (len(datasets.train), len(datasets.valid), len(datasets.test)) == (100_000, 100, 100)
    index = torch.arange(5)
    first = datasets.train.batch(index, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(datasets.train.batch(index, generator=torch.Generator().manual_seed(0)), first)
    assert not torch.equal(datasets.train.batch(index, generator=torch.Generator().manual_seed(1)), first)
    assert first.shape == (5, 1) and datasets.train[7].shape == (1,)
    again = get_datasets("gmm")
    torch.testing.assert_close(all_points(again.valid), all_points(datasets.valid))
    assert not torch.equal(all_points(datasets.valid), all_points(datasets.test))
    c = torch.arange(20.0)
    expected_mean = ((5 + c) * 10 * c).sum() / (5 + c).sum()
    torch.testing.assert_close(datasets.train.mean(), expected_mean.reshape(1))
    draws = datasets.train.batch(torch.arange(50_000), generator=torch.Generator().manual_seed(2))
    std = math.sqrt(((5 + c) * ((10 * c) ** 2 + 25)).sum() / (5 + c).sum() - expected_mean ** 2)
    assert abs(draws.mean() - expected_mean) < 5 * std / math.sqrt(50_000)


def test_shapes_images():
    datasets = get_datasets("shapes")
    assert datasets.x_shape == (3, 16, 16)
    assert (len(datasets.train), len(datasets.valid), len(datasets.test)) == (940, 118, 118)
    x = torch.cat([all_points(s) for s in (datasets.train, datasets.valid, datasets.test)])
    assert set(x.unique().tolist()) == {0.0, 1.0}
    palette = {tuple(map(float, c)) for c in SHAPE_COLOURS.values()}
    lit = x.amax((2, 3))  # [n, 3]: the colour of each image (one colour, black background)
    assert {tuple(c.tolist()) for c in lit} == palette
    on = x.amax(1, keepdim=True).expand_as(x) > 0  # pixels of the shape
    assert torch.equal(x[on].view(-1), lit[:, :, None, None].expand_as(x)[on].view(-1))
    colour_counts = torch.stack([(lit == torch.tensor(c)).all(-1).sum() for c in sorted(palette)])
    assert colour_counts.tolist() == [168] * 7  # 3 kinds x 8 angles x 7 scales per colour


def test_shape_areas_match_the_geometry():
    masks = shape_masks()  # [kind, angle, scale, 16, 16]
    assert masks.shape == (3, 8, 7, 16, 16)
    radius = 0.9 * 8  # largest scale
    areas = masks[:, :, -1].sum((-1, -2)).mean(1)  # mean over angles
    expected = np.array([3 * math.sqrt(3) / 4 * radius ** 2, 2 * radius ** 2, math.pi * radius * radius / 2])
    assert np.all(np.abs(areas / expected - 1) < 0.08)
    assert np.all(np.diff(masks.sum((-1, -2)), axis=-1) >= 0)  # larger scale, larger shape
    assert masks[1, 0, -1].sum() == masks[1, 4, -1].sum()  # a square turned by pi/2 is the same square
