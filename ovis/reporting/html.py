"""``index.html``: a report's index page as one self-contained file that any browser opens from
disk, without a server: the Markdown of ``index.md`` rendered (``markdown``, tables extension),
every figure inlined as a base64 ``data:`` URI, and every table sortable by a click on a column
header (numbers by value, the rest as text; a second click reverses the order). Links to the
report's other files (CSV, LaTeX, PDF) stay relative.
"""
import base64
import html
import mimetypes
import os
import re

import markdown

from ovis.files import atomic_write

HTML_FILE = "index.html"

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f3f3f3; cursor: pointer; user-select: none; }
th[aria-sort="ascending"]::after { content: " \\25B2"; }
th[aria-sort="descending"]::after { content: " \\25BC"; }
td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; }
code { background: #f6f6f6; padding: 0 0.2em; }
"""

# Click a header to sort its table's body rows by that column (numbers first compared as numbers).
SORT_SCRIPT = """
function cellValue(row, index) {
  const text = row.cells[index] ? row.cells[index].textContent.trim() : "";
  const number = parseFloat(text.replace(/\\*\\*/g, "").replace(/\\u2212/g, "-"));
  return isNaN(number) ? text.toLowerCase() : number;
}
function sortBy(header) {
  const table = header.closest("table"), body = table.tBodies[0];
  const index = Array.from(header.parentNode.children).indexOf(header);
  const ascending = header.getAttribute("aria-sort") !== "ascending";
  const rows = Array.from(body.rows).sort(function (a, b) {
    const x = cellValue(a, index), y = cellValue(b, index);
    if (typeof x === typeof y) { return (x < y ? -1 : x > y ? 1 : 0) * (ascending ? 1 : -1); }
    return (typeof x === "number" ? -1 : 1) * (ascending ? 1 : -1);
  });
  table.querySelectorAll("th").forEach(function (th) { th.removeAttribute("aria-sort"); });
  header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  rows.forEach(function (row) { body.appendChild(row); });
}
document.querySelectorAll("table th").forEach(function (th) {
  th.title = "sort by this column";
  th.addEventListener("click", function () { sortBy(th); });
});
"""


def inline_images(body: str, directory: str) -> str:
    """``<img src="name.png">`` of files in ``directory`` -> ``data:`` URIs (others unchanged)."""
    def inline(match: re.Match) -> str:
        source = html.unescape(match.group(2))
        path = os.path.join(directory, source)
        if "/" in source or not os.path.isfile(path):
            return match.group(0)
        kind = mimetypes.guess_type(path)[0] or "application/octet-stream"
        with open(path, "rb") as f:
            data = base64.b64encode(f.read()).decode("ascii")
        return f'{match.group(1)}data:{kind};base64,{data}{match.group(3)}'
    return re.sub(r'(<img[^>]*\ssrc=")([^"]+)(")', inline, body)


def write_html(directory: str, index_markdown: str, title: str) -> str:
    """Write ``<directory>/index.html`` from the index page's Markdown; returns its path."""
    body = inline_images(markdown.markdown(index_markdown, extensions=["tables"]), directory)
    page = (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}\n"
            f"<script>{SORT_SCRIPT}</script>\n</body>\n</html>\n")
    path = os.path.join(directory, HTML_FILE)
    atomic_write(path, page)
    return path
