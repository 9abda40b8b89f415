"""``report.py``: turn an experiment's run records into figures, tables and one index page.

Output folder ``<output>/<report_id>/``: ``report_id = <exp>[-inc=..][-exc=..][-ema..][-<hash>]``,
where ``<hash>`` (8 hex digits) identifies the other options when they differ from the defaults,
so that reports with different options go to different folders. A report replaces the files
that it wrote before in its folder (listed in ``report.json``) and never deletes anything else:
``report_figure3.py``'s figures or notes of your own in the folder survive. Contents:

* ``index.md``     the page to open: description, run counts per status, missing and failed
                   runs, the pivot table and every figure;
* ``index.html``   the same page as one self-contained file for a browser (figures inline,
                   sortable tables, no server: ``ovis.reporting.html``);
* ``pivot.csv|md|tex``  per group (keys + variants): mean, std (ddof=1) and count over seeds
                   of each pivot metric;
* ``runs.csv``     one row per run: status, attributes, seed and its pivot aggregates;
* ``curves.csv``   the plotted curves (after ``--ema``/``--downsample``) with attributes;
* ``curves-<metric>.png|pdf``, ``detailed[-<category>=<v>].png|pdf``, ``pivot-plot.png|pdf``;
* ``run.log``      everything printed;
* ``report.json``  the options and the list of files written (what the next report may replace).
"""
import contextlib
import dataclasses
import datetime
import hashlib
import json
import logging
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import pandas as pd

from ovis import records
from ovis.cli import did_you_mean
from ovis.files import atomic_write
from ovis.reporting import figures, tables
from ovis.reporting.html import HTML_FILE, write_html
from ovis.reporting.aggregate import (SEED, PivotMetric, ReportError, attribute_table, constant_columns,
                                      downsample_curves, parse_ylims, run_aggregates, seed_statistics,
                                      smooth_curves, variant_columns)
from ovis.reporting.runs import (ABORTED, FAILED, QUEUED, RUNNING, SUCCESS, UNKNOWN, ExperimentRuns, Run,
                                 load_curves, parse_where, scan_experiment, select_runs)
from ovis.reporting.style import apply_style, estimator_style
from ovis.reporting.uncertainty import improvement_table

DEFAULT_METRICS = ("train:loss/L_k", "train:loss/kl_q_p", "train:loss/ess", "train:grads/snr")
DEFAULT_PIVOT_METRICS = ("max:train:loss/L_k", "min:train:loss/kl_q_p", "mean:train:grads/snr")
MANIFEST = "report.json"  # the options and the files of the report that wrote the folder
REPORT_MARKERS = ("index.md", "run.log")  # a report of an older version, without a manifest
# Options that say where things are, not what the report shows: not part of the report id.
_NOT_IN_ID = ("exp", "root", "output", "command", "include", "exclude", "ema")


@dataclass
class ReportOptions:
    """The options of ``report.py`` (lists already split on commas)."""
    exp: str
    root: str = "runs/"
    output: str = "reports/"
    keys: Sequence[str] = ("dataset", "estimator", "iw")
    metrics: Sequence[str] = DEFAULT_METRICS
    detailed_metrics: Sequence[str] = DEFAULT_METRICS
    pivot_metrics: Sequence[str] = DEFAULT_PIVOT_METRICS
    ylims: Sequence[str] = ()
    include: Sequence[str] = ()
    exclude: Sequence[str] = ()
    where: Sequence[str] = ()
    downsample: int = 0
    ema: float = 0.0
    parse_estimator_args: bool = False
    merge_args: Sequence[str] = ()
    float_format: str = "auto"
    non_completed: bool = False
    max_records: int = -1
    log_steps: bool = False
    latex: bool = False
    command: str = ""

    def normalized(self) -> Dict[str, object]:
        """The options as plain values (lists as lists, pivot metrics with their aggregation)."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        values = {k: list(v) if isinstance(v, (list, tuple)) else v for k, v in values.items()}
        values["pivot_metrics"] = [PivotMetric.parse(spec).name for spec in self.pivot_metrics]
        return values

    @property
    def report_id(self) -> str:
        """``<exp>[-inc=..][-exc=..][-ema..]`` (as the original), then ``-<hash>`` of the other
        options that differ from the defaults."""
        report_id = self.exp
        if self.include:
            report_id += "-inc=" + ",".join(self.include)
        if self.exclude:
            report_id += "-exc=" + ",".join(self.exclude)
        if self.ema:
            report_id += f"-ema{self.ema:g}"
        defaults, values = ReportOptions(exp=self.exp).normalized(), self.normalized()
        changed = {k: v for k, v in values.items() if k not in _NOT_IN_ID and v != defaults[k]}
        if changed:
            text = json.dumps(changed, sort_keys=True, default=str)
            report_id += "-" + hashlib.sha1(text.encode()).hexdigest()[:8]
        return report_id.replace(os.sep, "_")


@dataclass
class Report:
    """What ``build_report`` produced: the folder, the files, the per-run and pivot tables."""
    directory: str
    files: List[str] = field(default_factory=list)
    per_run: Optional[pd.DataFrame] = None
    pivot: Optional[pd.DataFrame] = None
    experiment: Optional[ExperimentRuns] = None


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=+-]+", "-", str(text)).strip("-")


def _prepare_directory(path: str) -> List[str]:
    """Create the report folder; return the files that the previous report there wrote (its
    manifest), which this report may replace. A non-empty folder that no report wrote is refused."""
    previous: List[str] = []
    if os.path.isdir(path) and os.listdir(path):
        manifest = os.path.join(path, MANIFEST)
        if os.path.exists(manifest):
            with open(manifest) as f:
                previous = [os.path.basename(name) for name in json.load(f).get("files", [])]
        elif not any(os.path.exists(os.path.join(path, marker)) for marker in REPORT_MARKERS):
            raise ReportError(f"output folder {path!r} exists and is not a report folder; "
                              f"choose another --output")
    os.makedirs(path, exist_ok=True)
    return previous


def _remove_stale(directory: str, previous: Sequence[str], written: Sequence[str]) -> None:
    """Remove the files of the previous report that this one did not write again (a figure of a
    category that is gone), once the new manifest is in place; nothing else."""
    for name in sorted(set(previous) - set(written)):
        target = os.path.join(directory, name)
        if os.path.isfile(target):
            os.remove(target)


@contextlib.contextmanager
def _report_log(directory: str) -> Iterator[logging.Logger]:
    """A logger to ``run.log`` and the console; an unregistered ``Logger``, so that nothing of it
    outlives the report but the file handler, closed at the end."""
    logger = logging.Logger(f"ovis.report.{directory}", logging.INFO)
    log_file = logging.FileHandler(os.path.join(directory, "run.log"), mode="w")
    for handler in (log_file, logging.StreamHandler()):
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    try:
        yield logger
    finally:
        log_file.close()


def experiment_description(experiment: ExperimentRuns, exp: str) -> str:
    """The experiment spec's ``description``: kept by the queue, else read from
    ``experiments/<exp>.json`` (here, then in the project)."""
    if experiment.description:
        return experiment.description
    project = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for folder in ("experiments", os.path.join(project, "experiments")):
        path = os.path.join(folder, f"{exp}.json")
        if os.path.exists(path):
            with open(path) as f:
                return str(json.load(f).get("description", ""))
    return ""


def _check_keys(attributes: pd.DataFrame, keys: List[str]) -> List[str]:
    if "dataset" in attributes.columns and attributes["dataset"].nunique() > 1 and "dataset" not in keys:
        keys = ["dataset"] + keys
    missing = [k for k in keys if k not in attributes.columns]
    if missing:
        raise ReportError(f"--keys: {missing} are not options of these runs; available: "
                          f"{sorted(attributes.columns)}")
    if len(keys) > 4:
        raise ReportError(f"--keys {','.join(keys)}: at most 4 keys (category, hue, x axis, style)")
    return keys


def _check_metrics(curves: pd.DataFrame, runs: Sequence[Run], wanted: Sequence[str]) -> Dict[str, List[str]]:
    """Raise if a metric is in no run; return, per metric, the runs that lack it."""
    found = set(curves["metric"].unique())
    never = [m for m in wanted if m not in found]
    if never:
        if not any(os.path.exists(os.path.join(r.path, records.METRICS_FILE)) for r in runs):
            raise ReportError(f"none of the {len(runs)} runs has a {records.METRICS_FILE} (runs of "
                              f"asymptotic_variance.py are reported by report_asymptotic_variance.py)")
        available = set(records.read_metrics(runs[0].path)["metric"].unique())
        told = ", ".join(repr(metric) + did_you_mean(metric, available) for metric in never)
        raise ReportError(f"metric(s) {told} logged by none of the {len(runs)} runs "
                          f"({records.METRICS_FILE} of a run lists what it logged)")
    present = curves.groupby("metric")["run_id"].unique().to_dict()
    return {m: sorted(set(r.run_id for r in runs) - set(present[m])) for m in wanted
            if len(present[m]) < len(runs)}


def _sorted_stats(stats: pd.DataFrame, layout: figures.Layout) -> pd.DataFrame:
    """Rows by category, x value, then hue in legend order and variants."""
    order = [c for c in (layout.category, layout.x) if c] + [layout.hue] + \
            ([layout.style] if layout.style else []) + list(layout.variants)
    index = stats.index.to_frame(index=False)

    def key(column):
        if column.name == "estimator" and layout.hue == "estimator":
            return column.map(lambda e: estimator_style(e).rank)
        return column.map(figures.sort_key)
    positions = index.sort_values(order, key=key, kind="stable").index
    return stats.iloc[positions].reorder_levels(order) if stats.index.nlevels > 1 else stats.iloc[positions]


def _run_listing(runs: Sequence[Run]) -> str:
    rows = [(run.run_id, run.status + (f" ({run.failure})" if run.failure else ""), run.message or "")
            for run in runs]
    return tables.markdown_list_table(rows, ["run", "status", "message"])


def _index_page(options: ReportOptions, experiment: ExperimentRuns, selected: List[Run], used: List[Run],
                missing_metrics: Dict[str, List[str]], global_attributes: Dict, pivot_md: str,
                figure_sections: List[tuple]) -> str:
    counts = ExperimentRuns(experiment.exp_dir, selected).status_counts()
    lines = [f"# Report: {options.exp}", ""]
    description = experiment_description(experiment, options.exp)
    if description:
        lines += [description, ""]
    lines += [f"Generated {datetime.datetime.now():%Y-%m-%d %H:%M} from `{experiment.exp_dir}`"
              + (f" with `{options.command}`" if options.command else "") + ".", ""]
    filters = [f"include={','.join(options.include)}" if options.include else "",
               f"exclude={','.join(options.exclude)}" if options.exclude else "",
               f"where={','.join(options.where)}" if options.where else ""]
    lines += ["## Runs", ""]
    if any(filters):
        lines += [f"{len(selected)} of {len(experiment.runs)} runs match "
                  f"{' '.join(f for f in filters if f)}.", ""]
    lines += [tables.markdown_list_table(sorted(counts.items()), ["status", "runs"]),
              f"{len(used)} runs are in the figures and tables"
              + ("" if options.non_completed else " (completed runs only; `--non_completed` adds the others)")
              + ".", ""]
    problems = [r for r in selected if r.status in (FAILED, ABORTED, UNKNOWN)]
    if problems:
        kinds = Counter(r.failure for r in problems if r.failure)
        lines += ["### Failed or aborted runs", ""]
        if kinds:
            lines += ["By kind: " + ", ".join(f"{n} {kind}" for kind, n in kinds.most_common())
                      + " (`dbutils.py --requeue --kinds KIND,...` requeues them).", ""]
        lines += [_run_listing(problems)]
    pending = [r for r in selected if r.status in (RUNNING, QUEUED)]
    if pending:
        lines += ["### Runs not finished (running or queued)", "", _run_listing(pending)]
    if experiment.skipped_folders:
        lines += ["### Folders without config.json (ignored)", "",
                  "\n".join(f"- `{name}`" for name in experiment.skipped_folders), ""]
    if missing_metrics:
        lines += ["### Metrics missing in some runs", ""]
        lines += [f"- `{metric}`: {', '.join(f'`{r}`' for r in runs)}" for metric, runs in missing_metrics.items()]
        lines += [""]
    lines += ["## Pivot table", "",
              "Mean ± standard deviation [95% bootstrap interval of the mean] over seeds of each run's "
              "aggregate (`agg:split:metric`); "
              "best `max:`/`min:` value per block in bold. Files: [CSV](pivot.csv), [LaTeX](pivot.tex), "
              "[per run](runs.csv).", "", pivot_md]
    for title, paths in figure_sections:
        lines += [f"## {title}", ""]
        for path in paths:
            name = os.path.basename(path)
            lines += [f"![{name}]({name})", f"([PDF]({name[:-4]}.pdf))", ""]
    if global_attributes:
        lines += ["## Options shared by all runs", "",
                  tables.markdown_list_table(sorted((k, str(v)) for k, v in global_attributes.items()),
                                             ["option", "value"])]
    return "\n".join(lines) + "\n"


def _write_tables(directory: str, per_run: pd.DataFrame, stats: pd.DataFrame, layout: figures.Layout,
                  options: ReportOptions) -> Tuple[str, str, List[str]]:
    """``runs.csv``, ``pivot.csv``, ``pivot.md`` and ``pivot.tex``; returns the Markdown, the
    LaTeX and the paths."""
    names = list(dict.fromkeys(stats.columns.get_level_values(0)))
    block = [c for c in (layout.category, layout.x) if c]
    pivot_md = tables.to_markdown(stats, block, options.float_format)
    pivot_tex = tables.to_latex(stats, block, options.float_format, caption=f"{options.exp}: {', '.join(names)}")
    improvements = improvement_tables(per_run, names, layout)
    improvement_md = tables.improvement_markdown(improvements)
    if improvement_md:
        pivot_md += ("\n### Probability of improvement\n\nOver seeds, per stratum (every other key's value) and "
                     "averaged over the strata where both ran; 95% stratified bootstrap interval. Files: "
                     "[CSV](improvement.csv).\n\n" + improvement_md)
    texts = {"runs.csv": per_run.sort_values(names[0], ascending=False).to_csv(),
             "pivot.csv": tables.flat_pivot(stats).to_csv(index=False), "pivot.md": pivot_md, "pivot.tex": pivot_tex,
             "improvement.csv": pd.concat([t.assign(metric=m) for m, t in improvements.items()] or [pd.DataFrame()])
             .to_csv(index=False)}
    for name, text in texts.items():
        atomic_write(os.path.join(directory, name), text)
    return pivot_md, pivot_tex, [os.path.join(directory, name) for name in texts]


def improvement_tables(per_run: pd.DataFrame, names: Sequence[str], layout: figures.Layout) -> Dict[str, pd.DataFrame]:
    """Probability of improvement between the hue values (estimators) for each ``max:``/``min:``
    pivot metric, strata = the other group columns (``ovis.reporting.uncertainty``)."""
    strata = [c for c in layout.group_columns if c != layout.hue]
    result = {}
    for name in names:
        agg = name.split(":", 1)[0]
        if agg in ("max", "min") and per_run[layout.hue].nunique() > 1:
            result[name] = improvement_table(per_run, name, layout.hue, strata, higher_is_better=agg == "max")
    return result


def _draw_figures(directory: str, per_run: pd.DataFrame, curves: pd.DataFrame, pivot_names: List[str],
                  palette: figures.Palette, layout: figures.Layout, ylims: Dict,
                  options: ReportOptions) -> Tuple[List[Tuple[str, List[str]]], List[str]]:
    """The pivot plot, one curve figure per metric and the detailed grids (one per category);
    returns ``(section title, PNG paths)`` for the index page (sections without a figure left
    out) and every path written (PNG and PDF)."""
    written = figures.plot_pivot(per_run, pivot_names, layout, palette, os.path.join(directory, "pivot-plot"), ylims)
    sections = [("Pivot metrics", written[:1]), ("Training curves", []), ("Detailed curves", [])]
    for metric in options.metrics:
        paths = figures.plot_curves(curves, metric, layout, palette, os.path.join(directory, f"curves-{slug(metric)}"),
                                    ylims, options.log_steps)
        sections[1][1].append(paths[0])
        written += paths
    for category in (figures.category_values(curves, layout) if options.detailed_metrics else []):
        suffix = "" if category is None else f"-{slug(layout.category)}={slug(category)}"
        paths = figures.plot_detailed(figures.in_category(curves, layout, category), list(options.detailed_metrics),
                                      layout, palette, os.path.join(directory, f"detailed{suffix}"), ylims,
                                      options.log_steps)
        sections[2][1].append(paths[0])
        written += paths
    return [(title, paths) for title, paths in sections if paths], written


def _used_runs(options: ReportOptions) -> Tuple[ExperimentRuns, List[Run], List[Run]]:
    """The experiment, the runs matching the filters, and those that the report reads."""
    experiment = scan_experiment(os.path.join(options.root, options.exp))
    try:
        where = parse_where(options.where)
    except ValueError as error:
        raise ReportError(str(error)) from None
    selected = select_runs(experiment.runs, options.include, options.exclude, where)
    readable = [SUCCESS] + ([RUNNING, FAILED, ABORTED, UNKNOWN] if options.non_completed else [])
    used = [run for run in selected if run.status in readable and run.has_records]
    if options.max_records > 0:
        used = used[:options.max_records]
    if not used:
        counts = ExperimentRuns(experiment.exp_dir, selected).status_counts()
        raise ReportError(f"no {'' if options.non_completed else 'completed '}run to report in "
                          f"{experiment.exp_dir} (runs matching the filters per status: {counts})")
    return experiment, selected, used


def build_report(options: ReportOptions) -> Report:
    """Read every run of ``<root>/<exp>``, write the report folder, return what was made."""
    pivot_metrics = [PivotMetric.parse(spec) for spec in options.pivot_metrics]
    if not pivot_metrics:
        raise ReportError("--pivot_metrics: give at least one <agg>:<split>:<key>, e.g. max:test:loss/L_k")
    ylims = parse_ylims(options.ylims)
    experiment, selected, used = _used_runs(options)
    directory = os.path.join(options.output, options.report_id)
    previous = _prepare_directory(directory)
    with _report_log(directory) as logger:
        report = Report(directory, experiment=experiment)
        apply_style()
        attributes = attribute_table(used, options.parse_estimator_args, options.merge_args)
        keys = _check_keys(attributes, list(options.keys))
        wanted = list(dict.fromkeys(list(options.metrics) + list(options.detailed_metrics)
                                    + [p.metric for p in pivot_metrics]))
        curves = load_curves(used, wanted)
        missing_metrics = _check_metrics(curves, used, wanted)
        for metric, runs in missing_metrics.items():
            logger.info(f"warning: {metric} is missing in {len(runs)} run(s): {', '.join(runs)}")

        layout = figures.Layout(tuple(keys), tuple(variant_columns(attributes, keys)))
        global_attributes = {k: v for k, v in constant_columns(attributes).items()
                             if k not in layout.group_columns and k != SEED}
        logger.info(f"report {options.report_id}: {len(used)} runs; keys {keys}; variants {list(layout.variants)}")
        logger.info("global attributes: " + ", ".join(f"{k}={v}" for k, v in sorted(global_attributes.items())))

        # Per-run table and pivot over seeds (exact aggregates of the records).
        seeds = [SEED] if SEED in attributes.columns else []
        per_run = attributes[layout.group_columns + seeds].join(run_aggregates(curves, pivot_metrics))
        per_run.insert(0, "status", [r.status for r in used])
        names = [p.name for p in pivot_metrics]
        stats = _sorted_stats(seed_statistics(per_run, layout.group_columns, names), layout)
        pivot_md, pivot_tex, written = _write_tables(directory, per_run, stats, layout, options)
        logger.info("\n" + pivot_md + (pivot_tex if options.latex else ""))
        report.per_run, report.pivot = per_run, stats

        # Curves: smoothing and down-sampling are for display only.
        shown = downsample_curves(smooth_curves(curves, options.ema), options.downsample)
        shown = shown.merge(attributes[layout.group_columns + seeds], left_on="run_id", right_index=True)
        atomic_write(os.path.join(directory, "curves.csv"), shown.to_csv(index=False))
        sections, figure_files = _draw_figures(directory, per_run, shown, names, figures.Palette(attributes, layout),
                                               layout, ylims, options)
        index = _index_page(options, experiment, selected, used, missing_metrics, global_attributes, pivot_md,
                            sections)
        atomic_write(os.path.join(directory, "index.md"), index)
        write_html(directory, index, f"Report: {options.exp}")
        report.files = sorted(os.path.basename(p) for p in written + figure_files
                              + ["curves.csv", "index.md", HTML_FILE, "run.log", MANIFEST])
        manifest = {"report_id": options.report_id, "options": options.normalized(), "files": report.files}
        atomic_write(os.path.join(directory, MANIFEST), json.dumps(manifest, indent=1, default=str) + "\n")
        _remove_stale(directory, previous, report.files)
        logger.info(f"report written to {directory}/index.md (and {HTML_FILE}: one file, figures inline)")
        return report
