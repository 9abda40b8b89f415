"""rodeo-net's control network, evaluated as the piecewise linear function of its input that it is,
against the direct evaluation of its hidden layer: values and parameter gradients (float64)."""
import pytest
import torch
from torch.nn import functional as F

from ovis.estimators.rodeo import NEGATIVE_SLOPE, ControlNetwork, piecewise_linear_tables


def hidden_layer_evaluation(network, taylor, others_bound):
    """The network at every point through its hidden layer, ``[..., n, 2]``."""
    weight = network.inputs.weight  # [H, 2]
    hidden = taylor[..., None] * weight[:, 0] + (others_bound[..., None] * weight[:, 1]
                                                 + network.inputs.bias)[..., None, :]  # [..., n, H]
    return network.outputs(F.leaky_relu(hidden, NEGATIVE_SLOPE))  # [..., n, 2]


class BrokenControlNetwork(ControlNetwork):
    """Each point put on the piece one kink higher than its own."""

    def forward(self, taylor, others_bound):
        kinks, slopes, intercepts = piecewise_linear_tables(self.inputs, self.outputs, others_bound)
        piece = (torch.searchsorted(kinks, taylor.contiguous()) + 1).clamp(max=kinks.shape[-1])  # [..., n]
        piece = piece[..., None].expand(*piece.shape, 2)  # [..., n, 2]
        return slopes.gather(-2, piece) * taylor[..., None] + intercepts.gather(-2, piece)  # [..., n, 2]


@pytest.mark.parametrize("cls", [ControlNetwork, BrokenControlNetwork])
def test_the_piecewise_linear_network_is_its_hidden_layer(cls):
    """Random Gaussian weights, two units whose weight on t is zero (one of them off at every t),
    t spread over the kinks; the broken variant (points on the wrong piece) fails."""
    torch.manual_seed(0)
    network = cls(100).double()
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.normal_()
        network.inputs.weight[3, 0] = network.inputs.weight[5] = 0
        network.inputs.bias[5] = -1
    taylor = 3 * torch.randn(4, 3, 50, dtype=torch.float64)  # [bs, mc, n]
    others_bound = 2 * torch.randn(4, 3, dtype=torch.float64)  # [bs, mc]
    ours, direct = network(taylor, others_bound), hidden_layer_evaluation(network, taylor, others_bound)
    weights = torch.randn_like(direct)
    gradients = [torch.autograd.grad((values * weights).sum(), list(network.parameters()))
                 for values in (ours, direct)]
    errors = [(ours - direct).abs().max()] + [(a - b).abs().max() for a, b in zip(*gradients)]
    if cls is ControlNetwork:
        assert max(errors) < 1e-10, errors
    else:
        assert errors[0] > 1e-3
