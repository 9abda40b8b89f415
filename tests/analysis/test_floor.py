"""The hardware floor of a training step: which matrix products, on how many rows."""
import torch

from ovis.analysis.floor import LinearShape, MatmulFloor, evaluation_floor_of, floor_of, step_shapes, timed
from ovis.models import get_model

X_SHAPE = (1, 28, 28)


def test_sbn_floor_takes_the_first_inference_layer_once_per_data_point_and_no_input_gradient():
    model = get_model("sbm", x_shape=X_SHAPE, N=200, depth=3, nlayers=0)
    shapes = step_shapes(model, batch_size=24, particles=50, pathwise=False)
    assert shapes[0] == LinearShape(24, 784, 200, False)  # q(z_2 | x): once per data point
    assert sorted((s.rows, s.in_features, s.out_features) for s in shapes[1:]) == sorted(
        [(1200, 200, 200)] * 4 + [(1200, 200, 784)])  # q(z_1|z_2), q(z_0|z_1), p(z_1|z_0), p(z_2|z_1), p(x|z_2)
    assert not any(s.input_gradient for s in shapes)
    # forward and weight gradients: 2 x (24 x 784 x 200 + 1200 x (4 x 200 x 200 + 200 x 784))
    assert MatmulFloor(shapes, torch.device("cpu")).multiply_adds == 2 * (24 * 784 * 200 + 1200 * (4 * 40000 + 156800))


def test_gaussian_vae_floor_has_input_gradients_except_into_x():
    model = get_model("gaussian-vae", x_shape=X_SHAPE)
    shapes = step_shapes(model, batch_size=24, particles=5, pathwise=True)
    encoder = [s for s in shapes if s.rows == 24]
    decoder = [s for s in shapes if s.rows == 120]
    assert [(s.in_features, s.out_features, s.input_gradient) for s in encoder] == [
        (784, 200, False), (200, 200, True), (200, 400, True)]
    assert [(s.in_features, s.out_features) for s in decoder] == [(200, 200), (200, 200), (200, 784)]
    assert all(s.input_gradient for s in decoder)


def test_floor_runs_its_products_and_is_undefined_for_other_models():
    model = get_model("sbm", x_shape=X_SHAPE, N=8, depth=2, nlayers=0)
    floor = floor_of(model, torch.zeros(3, *X_SHAPE), particles=4, pathwise=False)
    before = [t["weight_grad"].clone() for t in floor.tensors]
    wall, cpu = timed(floor.run, torch.device("cpu"))
    assert wall > 0 and cpu >= 0
    for t, old in zip(floor.tensors, before):
        torch.testing.assert_close(t["weight_grad"], t["grad"].t() @ t["x"])  # dW = dout^T x
        assert not torch.equal(t["weight_grad"], old)
    assert floor_of(torch.nn.Linear(2, 2), torch.zeros(3, 2), particles=4, pathwise=False) is None


def test_evaluation_floor_is_the_forward_products_with_the_first_layer_once_per_data_point():
    model = get_model("sbm", x_shape=X_SHAPE, N=200, depth=3, nlayers=0)
    floor = evaluation_floor_of(model, points=2, particles=5000, device=torch.device("cpu"))
    # L_5000 of the 3 x 200 SBN: about 3.2 GFLOP per data point
    assert floor.multiply_adds == 2 * 784 * 200 + 2 * 5000 * (4 * 40000 + 156800)
    small = evaluation_floor_of(get_model("sbm", x_shape=X_SHAPE, N=8, depth=2, nlayers=0), 3, 4, torch.device("cpu"))
    small.run()
    for t in small.tensors:
        torch.testing.assert_close(t["out"], torch.addmm(t["bias"], t["x"], t["weight"].t()))
        assert "weight_grad" not in t  # no gradient products, no buffers for them
