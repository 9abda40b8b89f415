"""The quickstart's report: from runs shaped like those of
experiments/quickstart.json (fabricated, so that the test takes seconds), the report that
scripts/quickstart.sh asks for has no empty section, at least three K values in its plot against
K, and curves with enough evaluation points to read a trend from."""
import math
import os
import re
import shlex

import pandas as pd

from ovis.queue.spec import load_spec
from ovis.reporting.cli import report_options
from ovis.reporting.report import build_report
from ovis.training.arguments import parse_args

from .helpers import read_text, write_run

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def quickstart_report_argv() -> list:
    """The options of the report.py command of scripts/quickstart.sh."""
    with open(os.path.join(REPO, "scripts", "quickstart.sh")) as f:
        lines = [line for line in f if "report.py" in line and not line.lstrip().startswith("#")]
    assert len(lines) == 1, lines
    words = shlex.split(lines[0])
    return words[words.index("report.py") + 1:]


def fabricate_quickstart_runs(root: str) -> int:
    """One run folder per grid point, with the evaluation steps its options give; returns the
    smallest number of evaluations of a run."""
    spec = load_spec("quickstart", os.path.join(REPO, "experiments"))
    fewest = math.inf
    for point in spec.grid():
        args = parse_args(list(point.argv))
        evaluations = args.epochs // args.eval_freq + 1
        fewest = min(fewest, evaluations)

        def values(step, iw=args.iw):
            return {"loss/L_k": -100 + math.log(iw) + 5 * (1 - math.exp(-step / 3)), "loss/kl_q_p": 5 / (1 + step),
                    "loss/ess": 1 + math.log(iw), "grads/snr": 0.1 * iw ** 0.5 * (1 + 0.01 * step)}
        write_run(os.path.join(root, "quickstart"), point.run_id, {**vars(args), "exp": "quickstart"},
                  steps=range(evaluations), values=values)
    return fewest


def sections(markdown: str) -> dict:
    """Heading -> the text below it up to the next heading."""
    parts = re.split(r"^(#+ .*)$", markdown, flags=re.MULTILINE)
    return {heading: body.strip() for heading, body in zip(parts[1::2], parts[2::2])}


def test_quickstart_report_has_no_empty_section_and_three_k_values(tmp_path):
    fewest_evaluations = fabricate_quickstart_runs(str(tmp_path / "runs"))
    assert fewest_evaluations >= 5  # a curve, not two or three points
    argv = quickstart_report_argv() + ["--root", str(tmp_path / "runs"), "--output", str(tmp_path / "reports")]
    report = build_report(report_options(argv))
    index = read_text(report.directory, "index.md")
    assert all(sections(index).values()), [h for h, body in sections(index).items() if not body]
    assert "## Detailed curves" not in index or "](detailed" in index
    # The pivot plot is drawn against K: at least three values of K in every panel (data set).
    assert report.pivot.index.names[:2] == ["dataset", "iw"]
    k_per_dataset = report.per_run.groupby("dataset")["iw"].nunique()
    assert len(k_per_dataset) >= 2 and (k_per_dataset >= 3).all(), k_per_dataset
    curves = pd.read_csv(os.path.join(report.directory, "curves.csv"))
    assert curves.groupby(["run_id", "metric"])["step"].nunique().min() >= 5
    for name in re.findall(r"\]\(([^)]+\.png)\)", index):
        assert os.path.getsize(os.path.join(report.directory, name)) > 0
