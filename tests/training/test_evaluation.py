import numpy as np
import pytest
import torch

from ovis.training.evaluation import MetricAverager, evaluate_bound
from ovis.training.images import image_grid, interleave_rows


class RecordingEvaluator:
    """Returns per-point values x[:, 0] and a scalar; remembers the batch sizes it saw."""

    def __init__(self):
        self.sizes = []

    def __call__(self, model, x):
        self.sizes.append(x.shape[0])
        return -x[:, 0], {"loss/L_k": x[:, 0], "gmm/prior_distance": torch.tensor(2.0)}, {}


def test_per_point_values_are_weighted_by_points_and_scalars_by_batch():
    averager = MetricAverager()
    averager.update({"loss/L_k": torch.tensor([1.0, 2.0, 3.0]), "scalar": torch.tensor(4.0)})
    averager.update({"loss/L_k": torch.tensor([10.0]), "scalar": torch.tensor(0.0)})
    assert averager.result() == pytest.approx({"loss/L_k": 4.0, "scalar": 2.0})
    assert averager.batches == 2


def test_evaluation_weights_points_across_batches_of_different_sizes():
    x = torch.arange(10.0).view(10, 1)
    evaluator = RecordingEvaluator()
    values = evaluate_bound(evaluator, None, list(torch.split(x, 4)))  # 4, 4, 2 points
    assert evaluator.sizes == [4, 4, 2]
    assert values["loss/L_k"] == pytest.approx(4.5) and values["gmm/prior_distance"] == pytest.approx(2.0)
    assert values["info/iters"] == 3.0


def test_image_grid_tiles_and_normalises():
    images = torch.arange(12.0).view(3, 1, 2, 2)
    grid = image_grid(images, nrow=2, padding=1)
    assert grid.shape == (7, 7, 1) and grid.dtype == np.uint8
    assert grid[1, 1, 0] == 0 and grid[5, 2, 0] == 255  # first pixel of image 0, last of image 2
    assert (grid[0] == 0).all() and (grid[:, 6] == 0).all() and (grid[4:6, 4:6] == 0).all()  # padding, empty tile
    colour = image_grid(torch.rand(4, 3, 5, 5), nrow=4)
    assert colour.shape == (2 + 7, 2 + 4 * 7, 3)
    with pytest.raises(ValueError, match=r"\[n, C, H, W\]"):
        image_grid(torch.zeros(3, 4, 4))


def test_reconstructions_alternate_with_their_originals():
    originals, reconstructions = torch.zeros(20, 1, 1, 1), torch.ones(20, 1, 1, 1)
    rows = interleave_rows(originals, reconstructions, nrow=10).view(4, 10)
    assert rows[:, 0].tolist() == [0.0, 1.0, 0.0, 1.0]
    few = interleave_rows(originals[:4], reconstructions[:4], nrow=10)  # a test set of 4 points (--max_eval 4)
    assert few.view(2, 4).tolist() == [[0.0] * 4, [1.0] * 4]
