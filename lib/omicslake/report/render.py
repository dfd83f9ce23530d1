"""The report's HTML pieces: the page around the sections, tables, inline PNG images, histograms.

Everything is inline (CSS in the head, images as data URIs), so the page is one self-contained file.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

CSS = """body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1100px;color:#222}
h1{font-size:1.6rem}h2{border-bottom:1px solid #ccc;padding-bottom:.2rem;margin-top:2.2rem}
table{border-collapse:collapse;font-size:.85rem;margin:.6rem 0}td,th{border:1px solid #ddd;padding:.25rem .5rem;text-align:left}
th{background:#f3f5f8}.ok{color:#1e7b34}.bad{color:#b03a2e}img{max-width:100%;border:1px solid #eee;margin:.3rem}
.grid{display:flex;flex-wrap:wrap;gap:.5rem;align-items:flex-start}.grid img{max-width:48%;height:auto}small{color:#666}"""


@dataclass(frozen=True)
class Section:
    """One section of the report: its HTML (empty when the lake has nothing for it) and what it shows
    (item -> count, e.g. ``{"runs": 40}``; these become the report job's metrics)."""

    html: str = ""
    found: Mapping[str, int] = field(default_factory=dict)


def document(parts: Sequence[str]) -> str:
    """The whole page: the HTML ``parts`` in order inside a document with the report's title and CSS."""
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>omicslake report</title><style>{CSS}</style></head>"
        f"<body>{''.join(parts)}</body></html>"
    )


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png(fig: Any, alt: str = "") -> str:
    """The matplotlib figure ``fig`` as an inline ``<img>`` (PNG at 100 dpi, ``alt`` as its alt text); the figure is closed."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return img(buf.getvalue(), alt)


def img(data: bytes, alt: str = "") -> str:
    """An ``<img>`` showing the PNG bytes ``data`` as a data URI, with ``alt`` (escaped) as its alt text."""
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'


def table(rows: Sequence[Mapping[str, Any]] | Sequence[Any], columns: Sequence[str]) -> str:
    """An HTML table of ``rows`` (dicts or Spark Rows, read by column name) with a header of ``columns``.
    Values are escaped, None shows as empty; succeeded/passed cells get class ``ok``, failed/quarantined
    cells class ``bad``."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for r in rows:
        get = r.get if isinstance(r, dict) else (lambda k, r=r: r[k])
        cells = []
        for c in columns:
            v = get(c)
            cls = (
                ' class="ok"'
                if v in ("succeeded", "passed")
                else ' class="bad"'
                if v in ("failed", "quarantined")
                else ""
            )
            cells.append(f"<td{cls}>{html.escape('' if v is None else str(v))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def hist(values: Sequence[float | None], title: str, xlabel: str) -> str:
    """A 40-bin histogram of ``values`` (None left out) titled ``title``, as an inline ``<img>``."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.hist([v for v in values if v is not None], bins=40, color="#1f4e79")
    ax.set(title=title, xlabel=xlabel, ylabel="count")
    fig.tight_layout()
    return png(fig)
