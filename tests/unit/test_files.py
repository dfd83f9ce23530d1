"""File IO under the lake root (omicslake.io.files): a page or plot is written whole or not at all."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from omicslake.io import files


def test_a_write_replaces_the_file_whole_and_leaves_no_part_behind(tmp_path: Path) -> None:
    page = tmp_path / "reports" / "risk_m.html"  # the folder is made
    files.write_text(page, "old page")
    files.write_text(str(page), "new page")
    assert files.read_text(page) == "new page" and files.read_bytes(str(page)) == b"new page"
    assert sorted(p.name for p in page.parent.iterdir()) == ["risk_m.html"]
    assert files.is_file(page) and not files.is_file(page.parent)


def test_a_write_that_fails_before_it_lands_leaves_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The moment a reader could see half a page (the process killed while writing) is the moment before
    the rename: the old page is whole until then, and the part file is cleaned up."""
    page = tmp_path / "report.html"
    files.write_text(page, "the page of the last run")

    def killed(src: object, dst: object) -> None:
        raise OSError("killed before the rename")

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(OSError, match="before the rename"):
        files.write_text(page, "a new page that never lands")
    assert page.read_text() == "the page of the last run"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]
