"""Open an HTML file in headless Chromium and report whether every image loaded and whether any
console error or uncaught exception happened (a probe script is added to a copy of the page)."""

from __future__ import annotations

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
  const d = document.createElement('pre'); d.id = '__probe';
  d.textContent = 'PROBE images=' + imgs.length + ' broken=' + bad + ' errors=' + window.__errors.length + ' ' + JSON.stringify(window.__errors);
  document.body.appendChild(d);
});
</script>"""


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def probe(page: Path, tmp: Path) -> dict[str, object]:
    exe = chromium()
    assert exe, "chromium is not installed (./dev test installs it)"
    copy = tmp / "probe.html"
    text = page.read_text()
    copy.write_text(text.replace("<head>", "<head>" + PROBE, 1))
    res = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
                          "--virtual-time-budget=5000", "--dump-dom", copy.as_uri()], capture_output=True, text=True, timeout=180)
    m = re.search(r"PROBE images=(\d+) broken=(\d+) errors=(\d+) (.*)", res.stdout)
    assert m, f"probe did not run: {res.stderr[-2000:]}"
    console = [ln for ln in res.stderr.splitlines() if "CONSOLE" in ln and ("ERROR" in ln or "Uncaught" in ln)]
    return {"images": int(m[1]), "broken": int(m[2]), "errors": int(m[3]), "messages": m[4], "console": console}


def screenshot(page: Path, out: Path, width: int = 1200, height: int = 3000) -> None:
    exe = chromium()
    assert exe
    subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--window-size={width},{height}",
                    f"--screenshot={out}", page.as_uri()], capture_output=True, timeout=180, check=True)
