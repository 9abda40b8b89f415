"""The report scripts' command lines follow ovis.cli: every default in --help, dashed aliases."""
import re

import pytest

from ovis.reporting.cli import asymptotic_main, figure3_main, figure3_options, report_main, report_options


@pytest.mark.parametrize("main", [report_main, figure3_main, asymptotic_main])
def test_help_shows_every_default(main, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    options = [o for o in re.findall(r"^  (--\w+)", text, flags=re.MULTILINE) if o != "--help"]
    assert len(options) >= 6
    blocks = re.split(r"^  (?=--)", text, flags=re.MULTILINE)[1:]
    missing = [block.split()[0] for block in blocks if "(default:" not in " ".join(block.split())]
    assert missing == [], missing


def test_dashed_aliases_and_comma_lists():
    options = report_options(["--exp", "e", "--pivot-metrics", "train:loss/L_k, max:test:loss/L_k",
                              "--non-completed", "--merge-args", "a,b"])
    assert options.pivot_metrics == ["train:loss/L_k", "max:test:loss/L_k"] and options.non_completed
    assert options.merge_args == ["a", "b"]
    assert figure3_options(["--style-key", "seed", "--ylim", ""]).style_key == "seed"


def test_bad_ylim_is_refused_with_code_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        figure3_options(["--ylim=-80,-90"])
    assert exit_info.value.code == 2 and "min < max" in capsys.readouterr().err


def test_metrics_under_their_old_names_are_read_under_the_current_ones():
    options = report_options(["--metrics", "test:gmm/posterior_mse,train:loss/L_k",
                              "--pivot_metrics", "min:test:gmm/prior_mse,train:reinforce/mse"])
    assert options.metrics == ["test:gmm/posterior_distance", "train:loss/L_k"]
    assert options.pivot_metrics == ["min:test:gmm/prior_distance", "train:control_variate/mse"]


def test_a_metric_typo_gets_the_suggestion_in_one_line(experiment, capsys):
    code = report_main(["--exp", experiment["exp"], "--root", experiment["root"], "--output", experiment["output"],
                        "--metrics", "train:loss/L_kk"])
    err = capsys.readouterr().err
    assert code == 2
    line = [row for row in err.splitlines() if "train:loss/L_kk" in row]
    assert len(line) == 1 and "(did you mean 'train:loss/L_k'?)" in line[0]
    assert "train:loss/kl_q_p" not in err  # not every metric
