"""File IO under the lake root and raw-file helpers shared by the ingest jobs.

A location is a local path (``str`` or ``Path``) or a URI of an object store (``s3a://bucket/key``,
``gs://``, ``abfss://``, ``hdfs://``). Local paths go through ``pathlib`` exactly as before; URIs
through ``pyarrow.fs`` (S3 with the endpoint of ``lake.s3_endpoint`` / ``$AWS_ENDPOINT_URL`` and the
credentials of the standard AWS_* environment variables).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from omicslake.errors import ConfigError

if TYPE_CHECKING:
    from omicslake.config import Config


def is_remote(location: str | Path) -> bool:
    """True for an object-store URI given as a str (``scheme://...``, not ``file://``); a Path, a plain
    path or a ``file://`` URI is local."""
    return isinstance(location, str) and "://" in location and not location.startswith("file://")


def _filesystem(location: str, cfg: Config | None) -> tuple[Any, str]:
    """(pyarrow FileSystem, path inside it) for a remote location."""
    from pyarrow import fs as pafs

    scheme, _, rest = location.partition("://")
    if scheme in ("s3a", "s3", "s3n"):
        endpoint = (
            (cfg.lake.s3_endpoint if cfg else None)
            or os.environ.get("AWS_ENDPOINT_URL_S3")
            or os.environ.get("AWS_ENDPOINT_URL")
        )
        kwargs: dict[str, Any] = {
            "region": os.environ.get("AWS_REGION", os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
        }
        if endpoint:
            kind, _, host = endpoint.partition("://")
            kwargs.update(endpoint_override=host or kind, scheme=kind if host else "https")
        return pafs.S3FileSystem(**kwargs), rest
    try:
        filesystem, path = pafs.FileSystem.from_uri(location)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for an unsupported scheme
        raise ConfigError(
            f"{location}: no Python filesystem for {scheme}:// here ({exc}); Spark reads it through Hadoop, "
            "but reports and recorded files need pyarrow's support for it (or a local lake.root)"
        ) from exc
    return filesystem, path


def _local(location: str | Path) -> Path:
    text = str(location)
    return Path(text[len("file://") :]) if text.startswith("file://") else Path(text)


def open_read(location: str | Path, cfg: Config | None = None) -> IO[bytes]:
    """A binary stream of a file (local path or URI)."""
    if not is_remote(location):
        return _local(location).open("rb")
    filesystem, path = _filesystem(str(location), cfg)
    stream: IO[bytes] = filesystem.open_input_stream(path)
    return stream


def is_file(location: str | Path, cfg: Config | None = None) -> bool:
    """Whether a file (not a folder) is at the local path or URI. ConfigError for a URI scheme pyarrow
    cannot open."""
    if not is_remote(location):
        return _local(location).is_file()
    from pyarrow import fs as pafs

    filesystem, path = _filesystem(str(location), cfg)
    return bool(filesystem.get_file_info(path).type == pafs.FileType.File)


def write_bytes(location: str | Path, data: bytes, cfg: Config | None = None) -> None:
    """Write a whole file, creating its folders (object stores have none to create). A reader sees the
    old file or the new one, never a part: a local file is written beside its place and renamed onto
    it, an object is one PUT."""
    if not is_remote(location):
        p = _local(location)
        p.parent.mkdir(parents=True, exist_ok=True)
        part = p.with_name(f".{p.name}.{os.getpid()}.part")
        try:
            part.write_bytes(data)
            os.replace(part, p)
        finally:
            part.unlink(missing_ok=True)
        return
    filesystem, path = _filesystem(str(location), cfg)
    with filesystem.open_output_stream(path) as out:
        out.write(data)


def write_text(location: str | Path, text: str, cfg: Config | None = None) -> None:
    """Write ``text`` as the whole file, UTF-8 encoded, creating its folders (see ``write_bytes``)."""
    write_bytes(location, text.encode(), cfg)


def remove_tree(location: str | Path, cfg: Config | None = None) -> None:
    """Delete a folder and everything in it; nothing happens when it is not there."""
    if not is_remote(location):
        import shutil

        shutil.rmtree(_local(location), ignore_errors=True)
        return
    filesystem, path = _filesystem(str(location), cfg)
    try:
        filesystem.delete_dir(path)
    except (FileNotFoundError, OSError):
        pass


def read_bytes(location: str | Path, cfg: Config | None = None) -> bytes:
    """The whole file at a local path or URI."""
    with open_read(location, cfg) as f:
        return f.read()


def read_text(location: str | Path, cfg: Config | None = None) -> str:
    """The whole file at a local path or URI, decoded as UTF-8."""
    return read_bytes(location, cfg).decode()


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


def first_non_utf8(path: Path) -> tuple[int, int, int] | None:
    """(line, column, byte) of the first byte sequence that is not UTF-8 in a local file, both counted
    from 1 (lines split at LF), or None when the whole file is UTF-8 (a BOM is allowed)."""
    with path.open("rb") as f:
        for n, line in enumerate(f, 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as exc:
                return n, exc.start + 1, line[exc.start]
    return None


def blank_lines(path: Path) -> int:
    """Lines holding only white space (NDJSON allows them between records)."""
    with path.open("rb") as f:
        return sum(1 for line in f if not line.strip())


def sha256(path: Path | str, cfg: Config | None = None) -> str:
    """Hex SHA-256 of a file's bytes (local path or URI): how ingest jobs recognise a file they have seen."""
    h = hashlib.sha256()
    with open_read(path, cfg) as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()
