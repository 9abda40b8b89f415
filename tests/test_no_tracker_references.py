"""Code and docs state facts, not history (developer guide): no tracked source or doc file cites
the issue tracker (an issue number, with or without '#') or the specification document (its
section numbers or its file name; the samples below show each form). A reader cannot follow such
a pointer: the statement must carry the fact itself. Paper references ("paper eq. 12",
"section 4") are fine."""
import re
import subprocess
from pathlib import Path
from typing import Iterable, List

ROOT = Path(__file__).resolve().parents[1]
SCANNED_SUFFIXES = (".py", ".md", ".sh", ".toml", ".txt")
TRACKER_REFERENCE = re.compile(
    r"\b(?i:issues?)[ -]?#?\d"  # an issue number, any case
    r"|\bSPEC(?: section)? ?\d"  # a section of the spec
    r"|\bSPEC\.md\b"  # the specification document itself
    r"|(?<![\w&#\"'/])#\d{1,4}\b(?![\w.;])"  # a bare tracker number (not a colour)
)


def tracker_references(lines: Iterable[str], name: str) -> List[str]:
    """``name:line: text`` for every line that cites the issue tracker or the spec document."""
    return [f"{name}:{number}: {line.strip()}" for number, line in enumerate(lines, 1)
            if TRACKER_REFERENCE.search(line)]


def tracked_files() -> List[Path]:
    names = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split("\n")
    return [ROOT / name for name in names if name.endswith(SCANNED_SUFFIXES)]


def test_the_scanner_flags_tracker_and_spec_references():
    # Built by concatenation so that this file does not flag itself.
    flagged = ["see issue " + "12", "(SPEC " + "5.3 step 5)", "Issue " + "14's items",
               "the issue-" + "9 refactor", "issues " + "4 and 5", "fixed in #" + "12",
               "SPEC" + ".md has the math", "SPEC " + "section 5.1"]
    clean = ["paper eq. 12, section 4", "SPEC_DEFAULTS = {", 'color = "#238b45"', "# 1 thread",
             "an issue with 12 runs", "x[#]", "see the spec",
             "body { color: #222; }"]
    assert tracker_references(flagged + clean, "sample") == [
        f"sample:{number}: {line}" for number, line in enumerate(flagged, 1)]


def test_no_tracked_file_cites_the_tracker_or_the_spec():
    files = tracked_files()
    assert any(path.name == "DESIGN.md" for path in files) and any(path.suffix == ".py" for path in files)
    found = [reference for path in files if path.exists()
             for reference in tracker_references(path.read_text(errors="replace").splitlines(),
                                                 str(path.relative_to(ROOT)))]
    assert not found, ("State the fact instead of citing the issue tracker or the spec:\n"
                       + "\n".join(found))
