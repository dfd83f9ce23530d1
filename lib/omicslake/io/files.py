"""Raw-file helpers shared by the ingest jobs."""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_and_lines(path: Path) -> tuple[str, int]:
    """SHA-256 and the number of lines, in one read. Lines end at LF, CRLF or a lone CR (as
    Hadoop's line reader splits them); a last line without an end counts too."""
    h = hashlib.sha256()
    lf = cr = crlf = 0
    last = b""
    with path.open("rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
            lf += chunk.count(b"\n")
            cr += chunk.count(b"\r")
            crlf += chunk.count(b"\r\n") + (1 if last == b"\r" and chunk[:1] == b"\n" else 0)
            last = chunk[-1:]
    lines = lf + cr - crlf + (1 if last not in (b"", b"\n", b"\r") else 0)
    return h.hexdigest(), lines


def blank_lines(path: Path) -> int:
    """Lines holding only white space (NDJSON allows them between records)."""
    with path.open("rb") as f:
        return sum(1 for line in f if not line.strip())


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes: how ingest jobs recognise a file they have seen."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()
