"""The README is the front door (issue 20): short enough to read in ten minutes, with every job of
the specs in its table and every docs page it links present."""

from __future__ import annotations

import re
from pathlib import Path

from omicslake.jobs import specs

ROOT = Path(__file__).resolve().parents[2]


def test_readme_is_under_10_kb_lists_every_job_and_links_existing_pages() -> None:
    text = (ROOT / "README.md").read_text()
    assert len(text.encode()) < 10_000, "README.md over 10 KB (10,000 bytes): move depth to docs/"
    listed = set(re.findall(r"^\| `([a-z_]+)` \|", text, flags=re.M))
    assert set(specs()) <= listed, sorted(set(specs()) - listed)
    for link in re.findall(r"\]\(((?:docs|bench)/[^)#]+)\)", text):
        assert (ROOT / link).exists(), link
