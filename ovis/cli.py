"""Command-line conventions shared by every script: the one definition.

* Option names use underscores (``--iw_test``); each is also accepted with dashes
  (``--iw-test``), everywhere, through ``ArgumentParser``.
* ``--help`` shows every default (``DefaultsHelpFormatter``).
* Comma-separated lists are parsed by ``comma_list``.
* Integer options (step counts, sizes) accept integral float literals (``--nsteps 4e6``), since
  the experiment files print numbers with Python's ``str``: ``integer_option``.
"""
import argparse
import math
from typing import Callable, List, Optional, TypeVar

T = TypeVar("T")


def comma_list(text: Optional[str], kind: Callable[[str], T] = str) -> List[T]:
    """``"a, b,,c"`` -> ``[kind("a"), kind("b"), kind("c")]``; ``None`` or ``""`` -> ``[]``."""
    return [kind(item.strip()) for item in (text or "").split(",") if item.strip()]


def integer_option(text: str) -> int:
    """An integer option that also accepts integral float literals such as ``4e6``."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if not math.isfinite(value) or value != int(value):
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}")
    return int(value)


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: ...)`` for every option that has one, including ``None`` and flags."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "%(default)" in text or action.default is argparse.SUPPRESS or not action.option_strings:
            return text
        return text + " (default: %(default)s)"


class ExamplesHelpFormatter(argparse.RawDescriptionHelpFormatter, DefaultsHelpFormatter):
    """Every default in ``--help`` and the description and epilog (usage examples) as written."""


def dashed_aliases(names) -> List[str]:
    """``("--iw_test",)`` -> ``["--iw-test"]``: the dashed alias of each underscored option name."""
    return [n.replace("_", "-") for n in names if n.startswith("--") and "_" in n and n.replace("_", "-") not in names]


class ArgumentGroup(argparse._ArgumentGroup):
    """An argument group of ``ArgumentParser``: its options get dashed aliases too."""

    def add_argument(self, *names, **kwargs):
        return super().add_argument(*names, *dashed_aliases(names), **kwargs)


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` with the project's conventions: every default in ``--help``
    and a dashed alias for each underscored option name (in argument groups too)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", DefaultsHelpFormatter)
        super().__init__(*args, **kwargs)

    def add_argument(self, *names, **kwargs):
        return super().add_argument(*names, *dashed_aliases(names), **kwargs)

    def add_argument_group(self, *args, **kwargs) -> ArgumentGroup:
        group = ArgumentGroup(self, *args, **kwargs)
        self._action_groups.append(group)
        return group


def add_run_folder_options(group, default_exp: str, data_help: str) -> None:
    """The options every script that the queue launches accepts (docs/DESIGN.md, section 5): where
    the run folder is (``--root``/``--exp``/``--run_id``), the data, and what to do with an
    existing folder (``--resume``, ``--rf``). One definition for run.py and asymptotic_variance.py."""
    group.add_argument("--root", default="runs/", help="experiments root directory")
    group.add_argument("--exp", default=default_exp, help="experiment name (sub-folder of --root)")
    group.add_argument("--run_id", default=None, help="run folder name (None: derived from the options)")
    group.add_argument("--data_root", default=None, help=data_help)
    group.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoint")
    group.add_argument("--rf", action="store_true", help="delete an existing run folder first")
