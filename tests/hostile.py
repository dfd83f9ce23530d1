"""The check the hostile-input tests share: each file's ledger row against what it must say."""

from __future__ import annotations

from typing import Any


def wrong_outcomes(
    ledger: dict[str, Any],
    expect: dict[str, tuple[str, tuple[str, ...]]],
    case_sensitive: bool = True,
    whole_name: bool = True,
) -> dict[str, Any]:
    """{stem: what is wrong} for the ``expect`` entries (stem -> (status, words)) whose ops.ingested_files
        row (``ledger[stem]``) is missing, has another status, or, when failed, an error that lacks the
        file's name (``whole_name=False``: its stem and a dot, for a fileset whose error may name its .bim or
    .fam) or one of the words; {} when every file did what it must."""
    wrong: dict[str, Any] = {}
    for stem, (status, words) in expect.items():
        got = ledger.get(stem)
        if got is None or got.status != status:
            wrong[stem] = (status, got.status if got else None, got.error if got else None)
            continue
        if status != "failed":
            continue
        error = got.error or ""
        fold = (lambda x: x) if case_sensitive else str.lower
        name = got.path.split("/")[-1] if whole_name else f"{stem}."
        missing = [w for w in (name, *words) if fold(w) not in fold(error)]
        if missing:
            wrong[stem] = ("error lacks", missing, got.error)
    return wrong
