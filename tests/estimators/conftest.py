"""Fixtures of the estimator tests: small float64 models with exact answers and a data point."""
import pytest
import torch

from ovis.testing import EnumerableModel, LinearGaussianModel


@pytest.fixture
def enumerable():
    """Binary model with 2 latent units (4 states) and 3 pixels."""
    model = EnumerableModel(x_dim=3, z_dims=(2,), seed=0).double()
    return model, torch.tensor([[1.0, 0.0, 1.0]], dtype=torch.float64)


@pytest.fixture
def hierarchical():
    """Binary model with two latent layers of one unit each (4 states, G = 2 groups)."""
    model = EnumerableModel(x_dim=3, z_dims=(1, 1), seed=1).double()
    return model, torch.tensor([[0.0, 1.0, 1.0]], dtype=torch.float64)


@pytest.fixture
def gaussian():
    """Linear Gaussian model in 2 dimensions."""
    model = LinearGaussianModel(dim=2, seed=0).double()
    return model, torch.tensor([[0.7, -1.2]], dtype=torch.float64)


@pytest.fixture
def matched():
    """Binary model whose q(z|x) is close to p(z|x) at the data point (high ESS)."""
    model = EnumerableModel(x_dim=4, z_dims=(2,), seed=0).double()
    return model, torch.tensor([[1.0, 0.0, 1.0, 1.0]], dtype=torch.float64)


@pytest.fixture(autouse=True)
def single_thread():
    """The test tensors are tiny: intra-op threads only add synchronisation (which stalls on a busy
    machine); every test of this folder runs single-threaded."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
