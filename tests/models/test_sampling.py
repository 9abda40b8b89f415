"""The sampler hook of the model protocol (docs/DESIGN.md, section 1b)."""
import pytest
import torch

from ovis.models import get_model
from ovis.models.sampling import Given, Sample, resolve_sampler

X_SHAPE = (1, 4, 4)


def binary_batch(n):
    return (torch.rand(n, *X_SHAPE, generator=torch.Generator().manual_seed(3)) > 0.5).float()


def test_given_sampler_equals_the_z_shorthand_and_checks_rows():
    torch.manual_seed(0)
    model = get_model("sbm", X_SHAPE, N=3, depth=2)
    x = binary_batch(4)
    z = model(x)["z"]
    by_keyword, by_sampler = model(x, z=z), model(x, sampler=Given(z))
    for a, b in zip(by_keyword["qz"] + by_keyword["pz"], by_sampler["qz"] + by_sampler["pz"]):
        torch.testing.assert_close(a.logits, b.logits)
    with pytest.raises(ValueError, match="rows"):
        model(x[:2], sampler=Given(z))
    with pytest.raises(ValueError, match="not both"):
        resolve_sampler(Sample(), z=z)


@pytest.mark.parametrize("name, hparams, x", [
    ("gaussian-toy", {}, torch.randn(3, 2, generator=torch.Generator().manual_seed(0))),
    ("gmm", dict(N=5), 10 * torch.randn(3, 1, generator=torch.Generator().manual_seed(0)))])
def test_small_models_accept_x_once_with_a_particle_count(name, hparams, x):
    torch.manual_seed(0)
    model = get_model(name, tuple(x.shape[1:]), x_mean=x.mean(0) if name == "gaussian-toy" else None, **hparams)
    torch.manual_seed(1)
    once = model(x, particles=4)
    torch.manual_seed(1)
    rows = model(x.repeat_interleave(4, 0))
    assert once["z"][0].shape[0] == 12
    torch.testing.assert_close(once["z"][0], rows["z"][0])
    for a, b in zip(once["qz"] + once["pz"], rows["qz"] + rows["pz"]):
        torch.testing.assert_close(a.log_prob(once["z"][0]), b.log_prob(rows["z"][0]))
