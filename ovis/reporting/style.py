"""One place for how estimators look in every figure and table.

Each estimator id maps to a paper display name (matplotlib mathtext, no LaTeX needed), a
colour that is fixed across figures (it depends on the id only, never on which runs a
report happens to contain) and a legend rank, all from the ``Style`` its family registers
(``ovis.estimators.registry``; the built-ins follow the paper's palette: OVIS~ golds, OVIS-MC
oranges and browns, VIMCO greens, TVO blue, RWS light blue, pathwise estimators greys and
purples, Reinforce grey-blue).
"""
import functools
import hashlib
from dataclasses import dataclass
from typing import Optional, Sequence

import matplotlib

matplotlib.use("Agg")  # reports are written to files; never open a window
import matplotlib.colors as mcolors  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402

from ovis.estimators.config import describe_estimator_id  # noqa: E402
from ovis.estimators.registry import family_of  # noqa: E402

# Axes drawn on a log scale when the x variable is one of these run options.
LOG_SCALE_KEYS = ("iw", "mc", "gamma", "S", "S_per_K", "iw_aux", "bs", "K")
# Metric groups whose values span decades (drawn with a log y axis when positive).
LOG_SCALE_GROUPS = ("grads", "snr", "gmm", "gaussian_toy")
# Line styles and markers for the successive values of the style key (K = 5, 10, 50, ...).
LINE_STYLES = (":", "--", "-", "-.", (0, (3, 1, 1, 1, 1, 1)))
MARKERS = ("x", "^", "o", "s", "D", "v")
DPI = 150  # PNG resolution (PDFs are vector graphics)

# Metric names as printed on axes.
METRIC_LABELS = {
    "loss/L_k": r"$\mathcal{L}_K$",
    "loss/elbo": "ELBO",
    "loss/kl_q_p": r"$\mathrm{KL}(q_\phi(\mathbf{z}|\mathbf{x})\,||\,p_\theta(\mathbf{z}|\mathbf{x}))$",
    "loss/nll": "NLL",
    "loss/kl": r"$\mathrm{KL}(q\,||\,p(\mathbf{z}))$",
    "loss/ess": "ESS",
    "loss/overfitting": r"$\mathcal{L}_K(\mathrm{train}) - \mathcal{L}_K(\mathrm{test})$",
    "grads/snr": "SNR",
    "grads/dsnr": "DSNR",
    "grads/variance": "gradient variance",
    "grads/magnitude": r"$|\mathbb{E}[g]|$",
    "gmm/posterior_distance": r"$||q_\phi(z|x) - p_{\theta^*}(z|x)||_2$",
    "gmm/prior_distance": r"$||p_\theta(z) - p_{\theta^*}(z)||_2$",
    "active_units/au": "active units",
}
# Run options as printed in legends and axis labels.
KEY_LABELS = {"iw": "$K$", "mc": "$M$", "gamma": r"$\gamma$", "alpha": r"$\alpha$", "beta": r"$\beta$",
              "S": "$S$", "S_per_K": "$S/K$", "estimator": "estimator", "dataset": "dataset", "seed": "seed"}


@dataclass(frozen=True)
class EstimatorStyle:
    """How one estimator id is drawn: ``label`` (mathtext), ``color`` (RGB), ``rank`` (legend
    order: paper order of families, then the parameter), ``marker`` and ``linestyle`` (None: the
    figure's own)."""
    label: str
    color: tuple
    rank: tuple
    marker: Optional[str] = None
    linestyle: Optional[str] = None


def _shade(hex_color: str, amount: float) -> tuple:
    """Mix a colour with black (``amount`` > 0) or white (``amount`` < 0)."""
    rgb = mcolors.to_rgb(hex_color)
    target = (0.0, 0.0, 0.0) if amount > 0 else (1.0, 1.0, 1.0)
    a = min(abs(amount), 1.0)
    return tuple((1 - a) * c + a * t for c, t in zip(rgb, target))


def _gradient(colors: Sequence[str], position: float) -> tuple:
    """Colour at ``position`` in [0, 1] along a piecewise-linear ramp through ``colors``."""
    position = min(max(position, 0.0), 1.0)
    n = len(colors) - 1
    i = min(int(position * n), n - 1)
    t = position * n - i
    a, b = mcolors.to_rgb(colors[i]), mcolors.to_rgb(colors[i + 1])
    return tuple((1 - t) * x + t * y for x, y in zip(a, b))


def _fallback_color(estimator: str) -> tuple:
    """Ids without a registered style still get a colour that is the same in every figure (hash of the id)."""
    palette = plt.get_cmap("tab20").colors
    digest = int(hashlib.md5(estimator.encode()).hexdigest(), 16)
    return tuple(palette[digest % len(palette)])


UNKNOWN_RANK = (99, 0, 0, 0)


def _rank(order: tuple) -> tuple:
    """A family's legend order padded to four numbers, so that every rank compares with every other."""
    return tuple(order)[:4] + (0,) * (4 - len(order))


def _registered_style(name: str) -> Optional[EstimatorStyle]:
    try:
        description = describe_estimator_id(name)
    except ValueError:
        return None
    style = family_of(name).style_of(description)
    if style is None:
        return EstimatorStyle(description.label, _fallback_color(description.key), UNKNOWN_RANK + (description.key,))
    color = (_gradient(style.color, style.position) if isinstance(style.color, tuple)
             else mcolors.to_rgb(style.color))
    if style.shade:
        color = _shade(mcolors.to_hex(color), style.shade)
    return EstimatorStyle(style.label or description.label, color, _rank(style.order) + (description.key,),
                          style.marker, style.linestyle)


@functools.lru_cache(maxsize=None)
def estimator_style(estimator: str) -> EstimatorStyle:
    """Display name, colour, legend rank, marker and line style of an estimator id (``ovis-gamma1``,
    ``ovis-S50-exclusive``, ``vimco-arithmetic``, ``tvo-part5-config2``, ...), from its family's
    registered ``Style`` (``ovis.estimators.registry``). Unknown ids (and family names, the
    estimator column of ``--parse_estimator_args``) keep their text and get a colour that is a
    hash of it."""
    name = str(estimator)
    return _registered_style(name) or EstimatorStyle(name, _fallback_color(name), UNKNOWN_RANK + (name,))


def estimator_label(estimator: str) -> str:
    return estimator_style(estimator).label


def estimator_color(estimator: str) -> tuple:
    return estimator_style(estimator).color


def sort_estimators(estimators: Sequence[str]) -> list:
    """Estimator ids in legend order (family as in the paper, then parameter)."""
    return sorted(set(estimators), key=lambda e: estimator_style(e).rank)


def variant_color(base: tuple, index: int, count: int) -> tuple:
    """Colour of the ``index``-th of ``count`` variants of one estimator (e.g. with and
    without warm-up): the base colour, then darker shades, so variants stay in the family."""
    if count <= 1 or index == 0:
        return base
    return _shade(mcolors.to_hex(base), 0.45 * index / (count - 1))


def metric_label(metric: str) -> str:
    """``train:loss/L_k`` -> ``$\\mathcal{L}_K$ (train)``."""
    split, _, key = metric.partition(":")
    if not key:
        split, key = "", metric
    label = METRIC_LABELS.get(key, key)
    return f"{label} ({split})" if split else label


def key_label(key: str) -> str:
    return KEY_LABELS.get(key, key)


def value_text(value) -> str:
    """``5.0`` -> ``5``, ``1000000.0`` -> ``1e+06``, strings unchanged."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e5:
        return str(int(value))
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def uses_log_scale(metric: str) -> bool:
    key = metric.split(":", 1)[-1]
    return key.split("/", 1)[0] in LOG_SCALE_GROUPS


def plain_log_ticks(axis, span: float) -> None:
    """Label a log axis ``0.1, 1, 10`` rather than ``10^-1``. ``span`` = max / min of the
    data: below two decades the ticks are 1, 2, 5 x 10^n, below one the minor ticks are
    labelled too, so that every axis shows a few numbers."""
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    if span < 100:
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(plain)
    axis.set_minor_formatter(plain if span < 10 else NullFormatter())


def apply_style() -> None:
    """Readable defaults for paper figures: mathtext only (no LaTeX), light grid."""
    plt.rcParams.update({
        "figure.dpi": 100,
        "savefig.dpi": DPI,
        "savefig.bbox": "tight",
        "font.size": 10,
        "axes.titlesize": 11,
        "axes.labelsize": 10,
        "legend.fontsize": 9,
        "legend.frameon": False,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "grid.linestyle": "-",
        "axes.spines.top": False,
        "axes.spines.right": False,
        "text.usetex": False,
        "mathtext.fontset": "cm",
        "lines.linewidth": 1.5,
    })


def save_figure(fig, path_without_extension: str, formats: Sequence[str] = ("png", "pdf")) -> list:
    """Write ``fig`` as PNG and PDF next to each other, close it, return the paths."""
    paths = []
    for ext in formats:
        path = f"{path_without_extension}.{ext}"
        fig.savefig(path, dpi=DPI if ext == "png" else None)
        paths.append(path)
    plt.close(fig)
    return paths
