"""Open an HTML file in headless Chromium and report what the browser saw: every section heading
(h2, h3), every image with its size once loaded and the section it sits in, and any console error
or uncaught exception (a probe script is added to a copy of the page)."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

PROBE = """<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message || e.type)), true);
const _ce = console.error; console.error = (...a) => { window.__errors.push(a.join(' ')); _ce(...a); };
window.addEventListener('load', () => {
  const imgs = Array.from(document.images);
  const bad = imgs.filter(i => !(i.complete && i.naturalWidth > 0)).length;
  const heads = Array.from(document.querySelectorAll('h2, h3'));
  const h2 = Array.from(document.querySelectorAll('h2'));
  const sectionOf = el => { const before = h2.filter(h => h.compareDocumentPosition(el) & Node.DOCUMENT_POSITION_FOLLOWING); return before.length ? before[before.length - 1].textContent : null; };
  const seen = {
    headings: heads.map(h => [h.tagName.toLowerCase(), h.textContent]),
    images: imgs.map(i => ({section: sectionOf(i), alt: i.alt, complete: i.complete, width: i.naturalWidth, height: i.naturalHeight})),
  };
  const d = document.createElement('pre'); d.id = '__probe';
  d.textContent = 'PROBE images=' + imgs.length + ' broken=' + bad + ' errors=' + window.__errors.length + ' ' + JSON.stringify(window.__errors);
  document.body.appendChild(d);
  const j = document.createElement('pre'); j.id = '__probe_json';
  j.textContent = JSON.stringify(seen);
  document.body.appendChild(j);
});
</script>"""


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def probe(page: Path, tmp: Path) -> dict[str, object]:
    """What Chromium saw of ``page``: images, broken (not complete or naturalWidth 0), errors and
    their messages, console lines with an error, headings [(tag, text)] and images [{section, alt,
    complete, width, height}] in document order."""
    exe = chromium()
    assert exe, "chromium is not installed (./dev test installs it)"
    copy = tmp / "probe.html"
    text = page.read_text()
    copy.write_text(text.replace("<head>", "<head>" + PROBE, 1))
    res = subprocess.run(
        [
            exe,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=5000",
            "--dump-dom",
            copy.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    m = re.search(r"PROBE images=(\d+) broken=(\d+) errors=(\d+) (.*?)</pre>", res.stdout, re.S)
    assert m, f"probe did not run: {res.stderr[-2000:]}"
    j = re.search(r'<pre id="__probe_json">(.*?)</pre>', res.stdout, re.S)
    assert j, f"probe wrote no JSON: {res.stdout[-2000:]}"
    seen = json.loads(html.unescape(j[1]))
    console = [ln for ln in res.stderr.splitlines() if "CONSOLE" in ln and ("ERROR" in ln or "Uncaught" in ln)]
    return {
        "images": int(m[1]),
        "broken": int(m[2]),
        "errors": int(m[3]),
        "messages": html.unescape(m[4]),
        "console": console,
        "headings": [tuple(h) for h in seen["headings"]],
        "image_list": seen["images"],
    }


def screenshot(page: Path, out: Path, width: int = 1200, height: int = 3000) -> None:
    exe = chromium()
    assert exe
    subprocess.run(
        [
            exe,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--window-size={width},{height}",
            f"--screenshot={out}",
            page.as_uri(),
        ],
        capture_output=True,
        timeout=180,
        check=True,
    )
