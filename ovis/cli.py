"""Command-line conventions shared by every script: the one definition.

* Option names use underscores (``--iw_test``); each is also accepted with dashes
  (``--iw-test``), everywhere, through ``ArgumentParser``.
* ``--help`` shows every default (``DefaultsHelpFormatter``).
* Comma-separated lists are parsed by ``comma_list``.
* Integer options (step counts, sizes) accept integral float literals (``--nsteps 4e6``), since
  the experiment files print numbers with Python's ``str``: ``integer_option``.
* A misspelt name (an option, a metric, a spec key) gets the names probably meant, in one line:
  ``did_you_mean``; an unknown option is one line, ``unknown option --grad-keys (did you mean
  --grad_key?)``, without the usage text.
"""
import argparse
import difflib
import math
import sys
from typing import Callable, List, Optional, TypeVar

T = TypeVar("T")


class ArgumentError(ValueError):
    """Bad or incompatible options: a script says so in one line and exits with code 2
    (``ovis.exit_codes.BAD_ARGUMENTS``) before doing any work."""


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


def did_you_mean(name: str, allowed, prefix: str = "", n: int = 1) -> str:
    """`` (did you mean 'x'?)`` naming the (at most ``n``) entries of ``allowed`` closest to
    ``name`` (``difflib``; dashes and underscores alike), ``""`` when none is close. ``prefix``
    is written before each name (``"--"`` for options)."""
    by_key = {}
    for entry in sorted(set(allowed), key=lambda a: ("_" in a, a)):  # the underscored spelling wins
        by_key[entry.replace("-", "_").lower()] = entry
    close = difflib.get_close_matches(name.replace("-", "_").lower(), list(by_key), n=n, cutoff=0.6)
    if not close:
        return ""
    return f" (did you mean {' or '.join(repr(prefix + by_key[c]) for c in close)}?)"


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

    def parse_args(self, args=None, namespace=None):
        namespace, extras = self.parse_known_args(args, namespace)
        if extras:
            self.error(self.unknown_options_message(extras))
        return namespace

    def unknown_options_message(self, extras) -> str:
        """``unknown option --grad-keys (did you mean '--grad_key'?)`` for argparse's left-overs."""
        names = [name[2:] for name in self._option_string_actions if name.startswith("--")]
        options = [token for token in extras if token.startswith("-")]
        if not options:
            return f"unexpected arguments: {' '.join(extras)}"
        told = [token + did_you_mean(token.lstrip("-").split("=")[0], names, "--") for token in options]
        return f"unknown option{'s' if len(told) > 1 else ''} {', '.join(told)}"

    def error(self, message: str):
        """One line on stderr (``--help`` lists the options) and exit code 2, without the usage text."""
        sys.stderr.write(f"{self.prog}: error: {message} ({self.prog} --help lists every option)\n")
        sys.exit(2)

    def add_argument_group(self, *args, **kwargs) -> ArgumentGroup:
        group = ArgumentGroup(self, *args, **kwargs)
        self._action_groups.append(group)
        return group


def add_run_folder_options(group, default_exp: str, data_help: str) -> None:
    """The options every script that the queue launches accepts (docs/DESIGN.md, sections 5 and 7; ``ovis.launch``): where
    the run folder is (``--root``/``--exp``/``--run_id``), the data, and what to do with an
    existing folder (``--resume``, ``--rf``). One definition for run.py and asymptotic_variance.py."""
    group.add_argument("--root", default="runs/", help="experiments root directory")
    group.add_argument("--exp", default=default_exp, help="experiment name (sub-folder of --root)")
    group.add_argument("--run_id", default=None, help="run folder name (None: derived from the options)")
    group.add_argument("--data_root", default=None, help=data_help)
    group.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoint")
    group.add_argument("--rf", action="store_true", help="delete an existing run folder first")
