"""get_model: names, hyper-parameters, defaults and errors."""
import pytest
import torch

from ovis.models import MODEL_DEFAULTS, MODEL_NAMES, get_model

RUN_PY_DEFAULTS = dict(N=32, K=8, hdim=64, nlayers=3, depth=3, prior="normal", learn_prior=False,
                       normalization="none", dropout=0.0, kdim=0)


def test_names():
    assert set(MODEL_NAMES) == {"vae", "shapes", "gaussian-vae", "sbm", "gaussian-toy", "gmm"}
    with pytest.raises(ValueError, match="available models: .*'sbm'"):
        get_model("sigmoid", (1, 28, 28))


def test_unknown_hyperparameter_lists_the_allowed_ones():
    with pytest.raises(ValueError, match=r"unknown hyper-parameter\(s\) \['width'\].*allowed: .*'hdim'"):
        get_model("vae", (1, 28, 28), width=3)
    with pytest.raises(ValueError, match="q_std"):
        get_model("gaussian-toy", (20,), x_mean=torch.zeros(20), q_hdim=3)


@pytest.mark.parametrize("hparams,message", [
    (dict(N=0), "N=0"), (dict(N=2.5), "N=2.5"), (dict(depth=True), "depth"), (dict(K=1), "K=1"),
    (dict(prior="gaussian"), "prior='gaussian'"), (dict(normalization="groupnorm"), "normalization"),
    (dict(dropout=1.0), "dropout"), (dict(learn_prior="yes"), "learn_prior"), (dict(kdim=4), "kdim=4"),
    (dict(hdim="wide"), "hdim='wide'"),
])
def test_bad_values_are_refused(hparams, message):
    with pytest.raises(ValueError, match=message):
        get_model("vae", (1, 28, 28), **hparams)


def test_none_means_the_model_default_and_shared_names_may_be_ignored():
    model = get_model("sbm", (1, 28, 28), **{k: None for k in RUN_PY_DEFAULTS})
    assert len(model.inference_network) == MODEL_DEFAULTS["sbm"]["depth"] == 3
    assert model.inference_network[0].net.out_features == 200  # linear map to N = 200 units
    # the trainer's defaults (prior=normal, hdim=64, ...) do not change the SBN's definition
    model = get_model("sbm", (1, 28, 28), **{**RUN_PY_DEFAULTS, "nlayers": 0, "N": 200})
    assert not model.supports_reparam
    assert model.inference_network[0].net.weight.shape == (200, 784)
    gmm = get_model("gmm", (1,), **{**RUN_PY_DEFAULTS, "N": 20, "hdim": None})  # run.py's --hdim default: None
    assert gmm.phi[0].out_features == 16 and gmm.log_theta.shape == (20,)  # the paper's 1-16-C network
    assert get_model("gmm", (1,), **{**RUN_PY_DEFAULTS, "N": 20}).phi[0].out_features == 64  # the gmm reads hdim
    toy = get_model("gaussian-toy", (20,), x_mean=torch.zeros(20), **RUN_PY_DEFAULTS)
    assert toy.A.shape == (20, 20)


def test_integral_floats_are_accepted():
    model = get_model("vae", (1, 4, 4), N=3.0, hdim=5.0, nlayers=1, depth=2.0)
    assert len(model.inference_network) == 2 and model.n_units == 3


def test_x_mean_size_is_checked():
    with pytest.raises(ValueError, match="x_mean has 3 values"):
        get_model("sbm", (1, 2, 2), x_mean=torch.zeros(3))
    with pytest.raises(ValueError, match="needs x_mean"):
        get_model("gaussian-toy", (20,))
    with pytest.raises(ValueError, match=r"x_shape must be \(1,\)"):
        get_model("gmm", (2,))
