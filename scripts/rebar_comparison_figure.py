"""Figure and table of the ``rebar-comparison`` experiment: the gradient log-variance of every
tracked estimator (``train:grad_log_variance/<id>``, ``--track_grad_variances``) along each run's
training trajectory, one panel per run, one line per estimator. Each estimator has its own colour,
marker and line style, lower final log-variances are drawn on top (close curves such as RELAX's
and dynamic REBAR's stay visible), and each panel's legend sits beside it, off the curves.

    python scripts/rebar_comparison_figure.py --root experiments-root [--exp rebar-comparison]

writes ``reports/<exp>/grad-log-variances.png`` and ``grad-log-variances.md`` (the values at the
last evaluation, sorted, per run).
"""
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from ovis.cli import ArgumentParser  # noqa: E402
from ovis.reporting.runs import add_experiment_options, read_experiment  # noqa: E402
from ovis.reporting.style import apply_style  # noqa: E402

PREFIX = "train:grad_log_variance/"
LINE_STYLES = ("-", "--", "-.", ":")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")


def run_title(config: dict) -> str:
    return f"{config.get('dataset')}, {config.get('estimator')} trains, iw={config.get('iw')}"


def draw(loaded):
    """The figure (one panel per ``(config, metrics)`` run) and the Markdown table lines."""
    columns = min(2, len(loaded))
    rows = -(-len(loaded) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(7.5 * columns, 3.8 * rows), squeeze=False, layout="constrained")
    ids = sorted({m for _, metrics in loaded for m in metrics.metric if m.startswith(PREFIX)})
    # one colour per estimator: the 10 dark tab20 colours first, then the light ones
    colors = {m: plt.get_cmap("tab20")((2 * i) % 20 + (2 * i) // 20 % 2) for i, m in enumerate(ids)}
    styles = {m: dict(color=colors[m], linestyle=LINE_STYLES[i % len(LINE_STYLES)], marker=MARKERS[i % len(MARKERS)])
              for i, m in enumerate(ids)}
    lines = []
    for axis, (config, metrics) in zip(axes.flat, loaded):
        tracked = metrics[metrics.metric.str.startswith(PREFIX)]
        last = tracked[tracked.step == tracked.step.max()].sort_values("value", ascending=False)
        for rank, metric in enumerate(last.metric):  # legend in decreasing order of the final log-variance
            curve = tracked[tracked.metric == metric].sort_values("step")
            axis.plot(curve.step, curve.value, markersize=4, linewidth=1.3, alpha=0.9, zorder=2 + rank,
                      label=metric[len(PREFIX):], **styles[metric])
        axis.set_title(run_title(config), fontsize=9)
        axis.set_xlabel("step")
        axis.set_ylabel("log variance of the q gradient")
        axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
        lines += [f"## {run_title(config)} (step {int(last.step.max())})", "", "| estimator | log-variance |",
                  "|---|---|"] + [f"| {m[len(PREFIX):]} | {v:.2f} |" for m, v in zip(last.metric, last.value)] + [""]
    for axis in list(axes.flat)[len(loaded):]:
        axis.set_visible(False)
    return figure, lines


def main(argv=None) -> None:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    add_experiment_options(parser, "rebar-comparison", "folder receiving <exp>/", root_required=True)
    args = parser.parse_args(argv)
    runs = read_experiment(parser, args.root, args.exp)
    apply_style()
    figure, lines = draw(runs)
    out_dir = os.path.join(args.output, args.exp)
    os.makedirs(out_dir, exist_ok=True)
    figure.savefig(os.path.join(out_dir, "grad-log-variances.png"))
    with open(os.path.join(out_dir, "grad-log-variances.md"), "w") as f:
        f.write("\n".join([f"# Gradient log-variance at the last evaluation ({args.exp})", ""] + lines))
    print(f"wrote {out_dir}/grad-log-variances.png and grad-log-variances.md")


if __name__ == "__main__":
    main()
