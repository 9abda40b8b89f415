"""The rebar-comparison figure: close curves (RELAX beside dynamic REBAR) stay visible, legends
stay off the curves."""
import runpy
from pathlib import Path

import matplotlib
import pandas as pd

matplotlib.use("Agg")

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "rebar_comparison_figure.py"
FINAL = {"nvil": -2.66, "muprop": -3.44, "rebar": -4.01, "dynamic-rebar": -4.99, "relax": -4.99}


def run(dataset):
    rows = [{"step": step, "metric": f"train:grad_log_variance/{name}", "value": final + 1.0 / step}
            for name, final in FINAL.items() for step in (1, 2, 4, 8)]
    return {"dataset": dataset, "estimator": "dynamic-rebar", "iw": 1}, pd.DataFrame(rows)


def test_every_curve_has_its_own_style_and_the_legends_are_beside_the_panels():
    figure, lines = runpy.run_path(str(SCRIPT))["draw"]([run("binmnist"), run("omniglot")])
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    for axis in figure.axes:
        curves = {line.get_label(): line for line in axis.get_lines()}
        assert set(curves) == set(FINAL)
        looks = {(line.get_color(), line.get_linestyle(), line.get_marker()) for line in curves.values()}
        assert len({(style, marker) for _, style, marker in looks}) == len(FINAL)  # not told apart by colour alone
        assert curves["relax"].get_zorder() != curves["dynamic-rebar"].get_zorder()
        legend = axis.get_legend().get_window_extent(renderer)
        for other in figure.axes:
            assert not legend.overlaps(other.get_window_extent(renderer))  # no curve under a legend
    assert "| relax | -4.87 |" in "\n".join(lines)
