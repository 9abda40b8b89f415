"""``index.html``: one self-contained page per report, checked in a real headless browser (Debian's
chromium): it loads from a copy of the file alone (no server, no other file), logs nothing to the
console, shows every figure, and sorts a table when a header is clicked."""
import json
import os
import re
import shutil
import subprocess
import tempfile

import pytest

from ovis.reporting.report import ReportOptions, build_report

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
METRICS = ("train:loss/L_k", "train:grads/snr")

# Opens the copied index.html in an iframe (same folder: --allow-file-access-from-files), then
# writes what it found into its own DOM, which --dump-dom prints.
PROBE = """<!DOCTYPE html><html><body><iframe id="page" src="index.html" width="1200" height="900"></iframe>
<pre id="result">not loaded</pre><script>
function firstColumn(table) { return Array.from(table.tBodies[0].rows).map(r => r.cells[0].textContent.trim()); }
document.getElementById("page").addEventListener("load", function () {
  const doc = this.contentDocument, images = Array.from(doc.images);
  const table = Array.from(doc.querySelectorAll("table")).find(t => t.tBodies[0] && t.tBodies[0].rows.length > 2);
  const header = table.tHead.rows[0].cells[0];
  header.click(); const ascending = firstColumn(table);
  header.click(); const descending = firstColumn(table);
  document.getElementById("result").textContent = JSON.stringify({
    images: images.length, shown: images.filter(i => i.complete && i.naturalWidth > 0).length,
    external: images.filter(i => !i.src.startsWith("data:")).length,
    tables: doc.querySelectorAll("table").length, ascending: ascending, descending: descending});
});
</script></body></html>
"""


def browser():
    return next((shutil.which(name) for name in BROWSERS if shutil.which(name)), None)


@pytest.fixture(scope="module")
def report(shared_experiment):
    options = ReportOptions(exp=shared_experiment["exp"], root=shared_experiment["root"],
                            output=shared_experiment["output"], keys=("dataset", "estimator", "iw"),
                            metrics=METRICS, detailed_metrics=METRICS, pivot_metrics=("max:test:loss/L_k",))
    return build_report(options)


def test_the_page_is_one_file_with_its_figures_inline(report):
    with open(os.path.join(report.directory, "index.md")) as f:
        figures = re.findall(r"!\[[^]]*\]\(([^)]+\.png)\)", f.read())
    with open(os.path.join(report.directory, "index.html")) as f:
        page = f.read()
    assert "index.html" in report.files and len(figures) >= 3
    assert page.count('src="data:image/png;base64,') == len(figures)
    assert not re.search(r'<(script|link|img)[^>]+(src|href)="(?!data:)', page)  # nothing fetched


def test_a_headless_browser_shows_the_figures_without_console_errors_and_sorts_tables(report, tmp_path):
    executable = browser()
    if executable is None:
        pytest.skip("no headless browser: apt-get install chromium (Debian) to run this test")
    folder = tmp_path / "copy"
    folder.mkdir()
    shutil.copy(os.path.join(report.directory, "index.html"), folder / "index.html")  # the page alone
    (folder / "probe.html").write_text(PROBE)
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run([executable, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                                 f"--user-data-dir={profile}", "--allow-file-access-from-files",
                                 "--enable-logging=stderr", "--v=0", "--virtual-time-budget=10000", "--dump-dom",
                                 (folder / "probe.html").as_uri()], capture_output=True, text=True, timeout=120)
    found = re.search(r'<pre id="result">([^<]*)</pre>', result.stdout)
    assert found, result.stderr[-2000:]
    probe = json.loads(found.group(1))
    assert probe["images"] == probe["shown"] >= 3 and probe["external"] == 0 and probe["tables"] >= 2
    assert probe["ascending"] == sorted(probe["ascending"], key=str.lower) != probe["descending"]
    assert probe["descending"] == probe["ascending"][::-1]
    console = [line for line in result.stderr.splitlines() if "CONSOLE" in line and "index.html" in line]
    assert console == []
