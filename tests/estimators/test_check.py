"""``python -m ovis.apps.check``: the bias report on the enumerable and Gaussian models."""
from ovis.apps import check as command
from ovis.testing import check


def test_enumerable_report_separates_unbiased_and_biased_estimators():
    records = {r["estimator"]: r for r in check.check_enumerable([3]) if "error" not in r}
    for estimator_id in ("reinforce", "vimco-arithmetic", "vimco-geometric", "ovis-S2-exclusive", "ovis-gamma0",
                         "nvil", "reinforce-loo", "muprop"):
        assert records[estimator_id]["bias theta"] < 1e-10 and records[estimator_id]["bias phi"] < 1e-10
    for estimator_id in ("ovis-gamma1", "ovis-gamma0.5-geometric", "wake-wake", "tvo-part2-config1"):
        assert records[estimator_id]["bias phi"] > 1e-2
    assert records["ovis-S1"]["phi vs target"] < 1e-10  # L_{K-1}
    assert records["tvo-part1"]["phi vs target"] < 1e-10  # ELBO
    assert records["wake-sleep"]["phi vs target"] < 0.05  # Monte-Carlo estimate of the sleep objective


def test_command_prints_both_tables(capsys):
    command.main(["--iw", "2", "--samples", "300"])
    out = capsys.readouterr().out
    assert "1. Enumerable binary model" in out and "2. Linear Gaussian model" in out
    assert out.count("ovis-gamma1 ") >= 2 and "dreg" in out


def test_the_gaussian_reference_is_the_quadrature_gradient_not_an_estimator():
    import torch

    from ovis.testing import LinearGaussianModel
    model = LinearGaussianModel(dim=1, seed=0).double()
    x = torch.tensor([[0.7]], dtype=torch.float64)
    params = list(model.parameters())
    exact_elbo = torch.autograd.grad(model.elbo(x).sum(), params)  # closed form at K = 1
    quadrature = torch.autograd.grad(model.quadrature_iw_bound(x, 1, nodes=24).sum(), params)
    for a, b in zip(quadrature, exact_elbo):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    records = {r["estimator"]: r for r in check.check_linear_gaussian([2], samples=4000)}
    assert records["dreg"]["z phi"] < 5 and records["pathwise-iwae"]["z phi"] < 5  # unbiased for L_K
    assert records["stl"]["z phi"] > 5 and records["pathwise-vae"]["z phi"] > 5  # biased for L_K at K = 2
    assert records["dreg"]["quadrature error"] < 1e-5


def test_noise_controlled_report_shows_unbiased_and_relaxed_estimators():
    records = {(r["estimator"], r["iw"]): r for r in check.check_noise_controlled([2]) if "error" not in r}
    for estimator_id in ("arm", "disarm", "disarm-iw"):
        for iw in (1, 2):
            assert records[(estimator_id, iw)]["bias phi"] < 1e-12
    for estimator_id in ("rebar", "dynamic-rebar", "relax"):
        assert records[(estimator_id, 1)]["bias phi"] < 1e-4  # Gauss-Legendre accuracy
    theta_biases = [records[(f"gumbel-softmax tau={tau}", 1)]["bias theta"] for tau in (1.0, 0.5, 0.25, 0.1)]
    assert all(later < earlier for earlier, later in zip(theta_biases, theta_biases[1:])) and theta_biases[-1] > 1e-3
    assert records[("straight-through tau=0.25", 1)]["bias phi"] > 1e-2


def test_columns_line_up_whatever_the_length_of_the_estimator_label(capsys):
    """Right-aligned cells after a first column as wide as the longest label: equal line lengths."""
    records = [{"estimator": "straight-through tau=0.25", "iw": 1, "bias": 0.5},
               {"estimator": "arm", "iw": 12, "bias": 0.25}]
    command.print_table("title", records, ["estimator", "iw", "bias"])
    lines = capsys.readouterr().out.strip().splitlines()[1:]  # header and rows
    assert len({len(line) for line in lines}) == 1, lines


def test_every_declared_unbiased_for_holds_on_the_exact_models():
    """An estimator's ``unbiased_for`` is what the check measures: its phi gradient's mean matches the
    gradient of that objective (exactly by enumeration; to the quadrature's accuracy over the noise)."""
    enumerated = [r for r in check.check_enumerable([3]) if "error" not in r]
    claims = [r for r in enumerated if r["unbiased for"] not in ("biased", "sleep")]
    assert len(claims) >= 10
    for record in claims:
        assert record["phi vs target"] < 1e-9, record
    noise = [r for r in check.check_noise_controlled([2]) if "error" not in r and r["unbiased for"] == "∇ L_K"]
    assert {r["estimator"] for r in noise} >= {"arm", "disarm", "disarm-iw", "rebar", "relax"}
    for record in noise:
        assert record["bias phi"] < 1e-4, record
