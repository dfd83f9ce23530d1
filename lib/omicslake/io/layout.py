"""Where everything under the lake root lives, as URIs: the one module that builds those locations.

The root (``lake.root``) is a local folder (``./lakehouse``, ``/data/lake``, ``file:///data/lake``)
or an object store / HDFS URI (``s3a://bucket/lake``, ``abfss://c@acct.dfs.core.windows.net/lake``,
``gs://bucket/lake``, ``hdfs://nn/lake``). Under it:

- ``<layer>/<table>``: a Delta table (unless ``lake.catalog`` puts tables in a metastore)
- ``landing/``: raw inputs written by ``generate`` (default input folders of the ingests)
- ``reports/``: Markdown/HTML reports
- ``mlflow/``: the default local MLflow store (local roots only; see ml/tracking.py)
- ``_tmp/``: scratch data of a job run (Hail matrix tables, GWAS parquet, generator output)
- ``_warehouse/``: Spark's warehouse folder

A local root is held as an absolute path (no scheme), so every location built from it is a plain
path string that ``pathlib`` and Spark both read as before. Locations recorded in ops tables are
kept relative to the root (``<root>/...``, see :meth:`Layout.portable`): a lake copied or moved to
another root is the same lake.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from omicslake.errors import ConfigError

#: URI schemes taken for a remote lake root (read through Hadoop's FileSystem in Spark).
REMOTE_SCHEMES = ("s3a", "s3", "s3n", "gs", "abfs", "abfss", "wasb", "wasbs", "hdfs", "dbfs", "viewfs")
ROOT_MARK = "<root>/"


def normalize_root(root: str) -> str:
    """The canonical form of a lake root: an absolute local path, or ``scheme://authority/path``
    without a trailing slash. ConfigError for a scheme no lake can live on."""
    text = str(root).strip()
    if not text:
        raise ConfigError("lake.root is empty; set it to a folder or an object-store URI such as s3a://bucket/lake")
    scheme, sep, rest = text.partition("://")
    if not sep:
        return str(Path(text).expanduser().resolve())
    scheme = scheme.lower()
    if scheme == "file":
        return str(Path(rest if rest.startswith("/") else "/" + rest).resolve())
    if scheme not in REMOTE_SCHEMES:
        raise ConfigError(
            f"lake.root {text!r}: unknown scheme {scheme!r}; use a local folder or one of "
            f"{', '.join(s + '://' for s in REMOTE_SCHEMES)}"
        )
    if scheme in ("s3", "s3n"):
        raise ConfigError(
            f"lake.root {text!r}: Spark reads S3 through the s3a connector; write s3a://{rest.rstrip('/')}"
        )
    if not rest.split("/", 1)[0]:
        raise ConfigError(f"lake.root {text!r} names no bucket/container/host after {scheme}://")
    return f"{scheme}://{rest.rstrip('/')}"


def landing_folder(layout: Layout, out: str | None) -> Path:
    """The folder of raw inputs: ``out`` (jobs.generate.out) when set, else ``<root>/landing``,
    which must then be local (the ingests read their inputs as local files)."""
    if out:
        return Path(out).expanduser().resolve()
    if not layout.is_local:
        raise ConfigError(
            f"lake.root is {layout.root}: the landing folder must be local for now; set jobs.generate.out "
            "(and the ingests' input folders) to a local folder"
        )
    return Path(layout.landing())


@dataclass(frozen=True)
class Layout:
    """Every location under one lake root. ``root`` is normalized (see :func:`normalize_root`)."""

    root: str

    @classmethod
    def of(cls, root: str) -> Layout:
        """The Layout of ``root`` normalized by ``normalize_root`` (ConfigError for an empty root or a scheme
        no lake can live on)."""
        return cls(normalize_root(root))

    # ------------------------------------------------------------------ what kind of root
    @property
    def scheme(self) -> str | None:
        """The URI scheme of a remote root (``s3a``, ``abfss``, ...); None for a local folder."""
        scheme, sep, _ = self.root.partition("://")
        return scheme if sep else None

    @property
    def is_local(self) -> bool:
        """True for a local folder root (no URI scheme)."""
        return self.scheme is None

    @property
    def needs_s3a(self) -> bool:
        """Whether Spark needs the hadoop-aws connector to reach the root."""
        return self.scheme == "s3a"

    def local_root(self) -> Path:
        """The root as a local Path; ConfigError for a remote root (say what to use instead)."""
        if not self.is_local:
            raise ConfigError(
                f"lake.root is {self.root}, an object-store URI; this code path needs a local folder. "
                "Build locations with omicslake.io.layout.Layout (cfg.layout) and read/write files with "
                "omicslake.io.files"
            )
        return Path(self.root)

    # ------------------------------------------------------------------ locations
    def uri(self, *parts: str) -> str:
        """root/part/part/... (a plain path for a local root)."""
        clean = [p.strip("/") for p in parts if p and p.strip("/")]
        return "/".join([self.root, *clean]) if clean else self.root

    def table(self, layer: str, table: str) -> str:
        """The Delta folder of ``<layer>.<table>``: root/layer/table."""
        return self.uri(layer, table)

    def landing(self, *parts: str) -> str:
        """root/landing/parts...: the raw inputs ``generate`` writes."""
        return self.uri("landing", *parts)

    def reports(self, *parts: str) -> str:
        """root/reports/parts...: the Markdown/HTML reports."""
        return self.uri("reports", *parts)

    def mlflow(self, *parts: str) -> str:
        """root/mlflow/parts...: the default local MLflow store and its artifacts."""
        return self.uri("mlflow", *parts)

    def tmp(self, *parts: str) -> str:
        """Scratch data of a run (large: Hail matrix tables, parquet), under <root>/_tmp."""
        return self.uri("_tmp", *parts)

    def warehouse(self) -> str:
        """root/_warehouse: Spark's warehouse folder."""
        return self.uri("_warehouse")

    def local_scratch(self, *parts: str) -> Path:
        """A local folder for what must be on this machine's disk (Derby's home, Hail's log and
        local temp files): under the root for a local root, else under the system temp folder."""
        base = Path(self.root) if self.is_local else Path(tempfile.gettempdir()) / "omicslake-local"
        return base.joinpath(*parts)

    # ------------------------------------------------------------------ portability
    def portable(self, location: str | Path) -> str:
        """``<root>/rel`` for a location under the root, else the location unchanged (as a string).
        What ops tables record: the same lake under another root records the same text."""
        text = str(location)
        if self.is_local and "://" not in text:
            text = str(Path(text).expanduser().resolve())
        if text == self.root:
            return ROOT_MARK.rstrip("/")
        if text.startswith(self.root + "/"):
            return ROOT_MARK + text[len(self.root) + 1 :]
        return text

    def resolve(self, portable: str) -> str:
        """The inverse of :meth:`portable`: a location under this root, or the text unchanged."""
        if portable.startswith(ROOT_MARK):
            return self.uri(portable[len(ROOT_MARK) :])
        if portable == ROOT_MARK.rstrip("/"):
            return self.root
        return portable
