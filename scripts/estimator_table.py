"""The README's estimator table, rendered from the built-in families of the estimator registry
(``ovis.estimators.registry.estimator_table``; each family's ``table`` rows).

    python scripts/estimator_table.py           # rewrite the table in README.md
    python scripts/estimator_table.py --check   # exit 1 when README.md's table differs
"""
import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ovis.estimators.builtin import builtin_families  # noqa: E402
from ovis.estimators.registry import TABLE_HEADER, estimator_table  # noqa: E402

README = ROOT / "README.md"


def replace_table(readme: str, table: str) -> str:
    """``readme`` with its estimator table (the header line and the table lines after it) replaced."""
    lines = readme.split("\n")
    header = "| " + " | ".join(TABLE_HEADER) + " |"
    if header not in lines:
        raise SystemExit(f"README.md has no estimator table: its header line {header!r} is missing")
    start = lines.index(header)
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    return "\n".join(lines[:start] + table.split("\n") + lines[end:])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when the table differs")
    args = parser.parse_args(argv)
    readme = README.read_text(encoding="utf-8")
    updated = replace_table(readme, estimator_table(builtin_families()))
    if args.check:
        if updated != readme:
            print("README.md's estimator table differs from the registry's; run python scripts/estimator_table.py")
            return 1
        return 0
    README.write_text(updated, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
