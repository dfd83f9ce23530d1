"""Readers of omics matrices, streamed in blocks of features so that no matrix has to fit in memory.

``open_matrix(path, fmt)`` gives a ``Matrix``: its sample ids and sample metadata (small: one entry
per sample) and ``blocks(rows)``, an iterator of ``Block``s of at most ``rows`` features each (ids,
metadata, a ``rows x samples`` float64 array with NaN for a missing value, and the line or row of
each feature in the file). Formats:

- ``tsv`` / ``csv``: a feature x sample text matrix, optionally gzipped (detected from the bytes).
  The first column holds the feature id; ``meta_columns`` name annotation columns (featureCounts'
  ``Chr Start End Strand Length`` are recognised after a ``Geneid`` id column). Lines starting with
  ``#`` before the header are skipped (featureCounts' command line). A GEO series matrix is read as
  well: ``!Sample_<key>`` lines become sample metadata (a repeated key gets ``_2``, ``_3``...), the
  table lies between ``!series_matrix_table_begin`` and ``!series_matrix_table_end``, quotes go.
  Missing: an empty field, ``NA``, ``NaN``, ``null``, ``.``.
- ``gct``: GCT 1.2 (``Name``, ``Description``) and 1.3 (row and column metadata), Broad/CMap.
- ``h5ad``: AnnData; features are the ``var`` axis, samples the ``obs`` axis; ``X`` dense, CSR or
  CSC, read by h5py in blocks of ``var`` columns (CSR: one pass over the rows per block).
- ``biom``: BIOM 1.0 (JSON, read whole: JSON has no random access) and 2.1 (HDF5, read in blocks
  of observations); observation metadata such as a taxonomy list is joined with ``"; "``.

Every error is an ``InputError`` naming the file and the line (text) or row (HDF5/JSON): ragged
rows, values that are not numbers, duplicate feature or sample ids, a GCT dimension line that
disagrees with the body, an ``.h5ad`` without ``X``, and (``nonnegative=True``) negative counts.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np

from omicslake.errors import InputError

Format = Literal["tsv", "csv", "gct", "h5ad", "biom"]
FORMATS: tuple[str, ...] = ("tsv", "csv", "gct", "h5ad", "biom")
MISSING = frozenset({"", "na", "nan", "null", ".", "n/a"})
FEATURECOUNTS_META = ("Chr", "Start", "End", "Strand", "Length")


@dataclass(frozen=True)
class Block:
    """A block of consecutive features: ids, metadata, values (features x samples, NaN = missing),
    the 0-based feature row of each (``rows``) and, for text files, its 1-based line (``lines``)."""

    ids: list[str]
    meta: list[dict[str, str]]
    values: np.ndarray
    rows: list[int]
    lines: list[int] | None = None


@dataclass
class Matrix:
    """An opened matrix: samples (ids and metadata) known, features streamed by ``blocks``."""

    path: Path
    fmt: str
    samples: list[str]
    sample_meta: list[dict[str, str]]
    _blocks: Callable[[int], Iterator[Block]]
    nonnegative: bool = False
    bounds: tuple[float, float] | None = None
    n_features: int | None = None  # known up front for GCT and HDF5 formats
    attrs: dict[str, str] = field(default_factory=dict)

    def blocks(self, rows: int = 1000) -> Iterator[Block]:
        """Blocks of at most ``rows`` features, in file order, each checked: no feature id twice in
        the file, no negative value when ``nonnegative``, values within ``bounds`` when set."""
        seen: dict[str, int] = {}
        for block in self._blocks(max(1, rows)):
            for i, fid in enumerate(block.ids):
                where = self._where(block, i)
                if fid in seen:
                    raise InputError(
                        f"{self.path}: {where}: feature id {fid!r} appears more than once (first at "
                        f"{'line' if block.lines is not None else 'row'} {seen[fid]}); feature ids must be unique"
                    )
                seen[fid] = block.lines[i] if block.lines is not None else block.rows[i] + 1
            self._check_values(block)
            yield block

    def _where(self, block: Block, i: int) -> str:
        return f"line {block.lines[i]}" if block.lines is not None else f"row {block.rows[i] + 1}"

    def _check_values(self, block: Block) -> None:
        v = block.values
        if self.nonnegative:
            bad = np.argwhere(v < 0)
            if bad.size:
                i, j = bad[0]
                raise InputError(
                    f"{self.path}: {self._where(block, int(i))} (feature {block.ids[i]!r}), sample "
                    f"{self.samples[j]!r}: a negative value where counts are expected "
                    f"({int((v < 0).sum())} negative in this block); counts cannot be below 0"
                )
        if self.bounds is not None:
            lo, hi = self.bounds
            bad = np.argwhere((v < lo) | (v > hi))
            if bad.size:
                i, j = bad[0]
                raise InputError(
                    f"{self.path}: {self._where(block, int(i))} (feature {block.ids[i]!r}), sample "
                    f"{self.samples[j]!r}: a value outside [{lo}, {hi}], the range of this assay type"
                )


def open_matrix(
    path: str | Path,
    fmt: str,
    meta_columns: Sequence[str] = (),
    nonnegative: bool = False,
    bounds: tuple[float, float] | None = None,
) -> Matrix:
    """The matrix in ``path`` (format ``fmt``, one of FORMATS) with its samples read and its features
    ready to stream; ``meta_columns``: annotation columns of a text matrix; ``nonnegative``: refuse
    negative values (counts); ``bounds``: refuse values outside (e.g. betas in [0, 1])."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such file")
    if fmt in ("tsv", "csv"):
        m = _open_text(p, "\t" if fmt == "tsv" else ",", tuple(meta_columns))
    elif fmt == "gct":
        m = _open_gct(p)
    elif fmt == "h5ad":
        m = _open_h5ad(p)
    elif fmt == "biom":
        m = _open_biom(p)
    else:
        raise InputError(f"{p}: unknown matrix format {fmt!r}; choose one of {list(FORMATS)}")
    m.nonnegative, m.bounds = nonnegative, bounds
    _check_unique_samples(p, m.samples)
    return m


def _check_unique_samples(path: Path, samples: list[str]) -> None:
    seen: set[str] = set()
    dup = [s for s in samples if s in seen or seen.add(s)]  # type: ignore[func-returns-value]
    if dup:
        raise InputError(
            f"{path}: sample id(s) {sorted(set(dup))[:10]} appear more than once in the header; sample ids must be "
            "unique (rename the repeated columns)"
        )


# ------------------------------------------------------------------------------------------------
# Text matrices (TSV/CSV, featureCounts, GEO series matrix) and GCT


def _text(path: Path) -> IO[str]:
    with path.open("rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    if gz:
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return path.open("r", encoding="utf-8", newline="")


class _Lines:
    """csv rows with their 1-based physical line numbers."""

    def __init__(self, path: Path, delimiter: str) -> None:
        self.path = path
        self.f = _text(path)
        self.reader = csv.reader(self.f, delimiter=delimiter)

    def __iter__(self) -> Iterator[tuple[int, list[str]]]:
        last = 0
        try:
            for row in self.reader:
                start = last + 1
                last = self.reader.line_num
                yield start, row
        except csv.Error as exc:
            raise InputError(f"{self.path}: line {self.reader.line_num}: {exc}") from None
        except (UnicodeDecodeError, OSError, EOFError) as exc:
            raise InputError(f"{self.path}: not readable as text ({exc})") from None
        finally:
            self.f.close()


def _numbers(path: Path, line: int, fields: list[str], names: list[str]) -> np.ndarray:
    """Fields as float64 (NaN for a missing value); InputError naming the line and column otherwise."""
    try:
        out = np.array(fields, dtype=np.float64)
        if np.isfinite(out).all():
            return out
    except ValueError:
        pass
    out = np.empty(len(fields), dtype=np.float64)
    for j, text in enumerate(fields):
        t = text.strip()
        if t.lower() in MISSING:
            out[j] = math.nan
            continue
        try:
            x = float(t)
        except ValueError:
            raise InputError(
                f"{path}: line {line}, column {names[j]!r}: not a number; values must be numbers, or empty / NA for "
                "missing"
            ) from None
        if not math.isfinite(x):
            raise InputError(f"{path}: line {line}, column {names[j]!r}: not a finite number (infinite values)")
        out[j] = x
    return out


def _emit(
    path: Path, rows: Iterator[tuple[int, str, dict[str, str], list[str]]], names: list[str], size: int
) -> Iterator[Block]:
    """Blocks from (line, feature id, metadata, value fields) tuples."""
    ids: list[str] = []
    meta: list[dict[str, str]] = []
    vals: list[np.ndarray] = []
    lines: list[int] = []
    n = 0
    for line, fid, md, fields in rows:
        if not fid.strip():
            raise InputError(f"{path}: line {line}: empty feature id")
        ids.append(fid)
        meta.append(md)
        vals.append(_numbers(path, line, fields, names))
        lines.append(line)
        if len(ids) == size:
            yield Block(ids, meta, np.vstack(vals), list(range(n, n + len(ids))), lines)
            n += len(ids)
            ids, meta, vals, lines = [], [], [], []
    if ids:
        yield Block(ids, meta, np.vstack(vals), list(range(n, n + len(ids))), lines)


def _open_text(path: Path, delimiter: str, meta_columns: tuple[str, ...]) -> Matrix:
    sample_meta: dict[str, list[list[str]]] = {}
    header: list[str] | None = None
    header_line = 0
    geo = False
    for line, row in _Lines(path, delimiter):
        if not row or not any(x.strip() for x in row):
            continue
        first = row[0]
        if first.startswith("!"):
            geo = True
            if first.startswith("!Sample_"):
                sample_meta.setdefault(first[len("!Sample_") :], []).append([x.strip() for x in row[1:]])
            continue
        if first.startswith("#"):
            continue
        header, header_line = [x.strip() for x in row], line
        break
    if header is None:
        raise InputError(f"{path}: no header line (a feature id column and sample columns)")
    meta_cols = meta_columns
    if not meta_cols and header[0] == "Geneid" and tuple(header[1:6]) == FEATURECOUNTS_META:
        meta_cols = FEATURECOUNTS_META
    missing = [c for c in meta_cols if c not in header[1:]]
    if missing:
        raise InputError(f"{path}: line {header_line}: annotation column(s) {missing} not in the header")
    meta_idx = [header.index(c) for c in meta_cols]
    sample_idx = [j for j in range(1, len(header)) if j not in meta_idx]
    samples = [header[j] for j in sample_idx]
    if not samples:
        raise InputError(f"{path}: line {header_line}: no sample columns after the id and annotation columns")
    metas: list[dict[str, str]] = [{} for _ in samples]
    for key, occurrences in sample_meta.items():
        for k, values in enumerate(occurrences):
            name = key if k == 0 else f"{key}_{k + 1}"
            if len(values) != len(samples):
                continue  # a series-level line that does not run per sample
            for j, v in enumerate(values):
                metas[j][name] = v
    width = len(header)

    def rows() -> Iterator[tuple[int, str, dict[str, str], list[str]]]:
        for line, row in _Lines(path, delimiter):
            if line <= header_line:
                continue
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if row[0].startswith("!"):
                if row[0].startswith("!series_matrix_table_end"):
                    return
                continue
            if len(row) != width:
                raise InputError(
                    f"{path}: line {line}: {len(row)} fields, but the header (line {header_line}) has {width}; "
                    "every row needs an id, its annotation columns and one value per sample"
                )
            yield line, row[0].strip(), {header[j]: row[j] for j in meta_idx}, [row[j] for j in sample_idx]

    return Matrix(
        path,
        "tsv" if delimiter == "\t" else "csv",
        samples,
        metas,
        lambda n: _emit(path, rows(), samples, n),
        attrs={"geo": str(geo).lower()},
    )


def _gct_fields(row: list[str]) -> list[str]:
    """A GCT header row without the empty fields some writers pad it with."""
    out = list(row)
    while out and not out[-1].strip():
        out.pop()
    return out


def _open_gct(path: Path) -> Matrix:
    it = iter(_Lines(path, "\t"))
    try:
        _, version_row = next(it)
        _, dims_row = next(it)
        header_line, header = next(it)
    except StopIteration:
        raise InputError(f"{path}: a GCT file needs a version line, a dimension line and a header") from None
    version = (_gct_fields(version_row) or [""])[0].strip()
    if version not in ("#1.2", "#1.3"):
        raise InputError(f"{path}: line 1: {version[:20]!r} is not a GCT version line (#1.2 or #1.3)")
    try:
        dims = [int(x) for x in _gct_fields(dims_row)]
    except ValueError:
        raise InputError(f"{path}: line 2: the dimension line must hold integers") from None
    want = 2 if version == "#1.2" else 4
    if len(dims) != want:
        raise InputError(f"{path}: line 2: GCT {version[1:]} needs {want} dimensions, found {len(dims)}")
    n_rows, n_cols = dims[0], dims[1]
    n_rmeta, n_cmeta = (1, 0) if version == "#1.2" else (dims[2], dims[3])
    header = _gct_fields(header) if version == "#1.2" else header
    if len(header) != 1 + n_rmeta + n_cols:
        raise InputError(
            f"{path}: line {header_line}: the header has {len(header) - 1 - n_rmeta} sample columns but the dimension "
            f"line (line 2) says {n_cols}"
        )
    rmeta_names = header[1 : 1 + n_rmeta]
    samples = header[1 + n_rmeta :]
    metas: list[dict[str, str]] = [{} for _ in samples]
    last = header_line
    for _ in range(n_cmeta):
        try:
            last, row = next(it)
        except StopIteration:
            raise InputError(
                f"{path}: the dimension line says {n_cmeta} column-metadata rows; the file ends before"
            ) from None
        if len(row) != 1 + n_rmeta + n_cols:
            raise InputError(f"{path}: line {last}: {len(row)} fields, expected {1 + n_rmeta + n_cols}")
        for j, v in enumerate(row[1 + n_rmeta :]):
            metas[j][row[0]] = v
    body_start = last
    width = 1 + n_rmeta + n_cols

    def rows() -> Iterator[tuple[int, str, dict[str, str], list[str]]]:
        n = 0
        for line, row in _Lines(path, "\t"):
            if line <= body_start:
                continue
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) != width:
                raise InputError(
                    f"{path}: line {line}: {len(row)} fields, but the header (line {header_line}) has {width}"
                )
            n += 1
            if n > n_rows:
                raise InputError(
                    f"{path}: line {line}: more data rows than the {n_rows} the dimension line (line 2) says"
                )
            yield line, row[0], dict(zip(rmeta_names, row[1 : 1 + n_rmeta], strict=True)), row[1 + n_rmeta :]
        if n != n_rows:
            raise InputError(f"{path}: the dimension line (line 2) says {n_rows} data rows but the body has {n}")

    return Matrix(
        path,
        "gct",
        samples,
        metas,
        lambda k: _emit(path, rows(), samples, k),
        n_features=n_rows,
        attrs={"version": version[1:]},
    )


# ------------------------------------------------------------------------------------------------
# HDF5: AnnData .h5ad and BIOM 2.1


def _h5py() -> Any:
    try:
        import h5py
    except ImportError as exc:  # pragma: no cover - h5py is a dependency
        raise InputError("reading .h5ad / BIOM 2.1 files needs h5py (pip install h5py)") from exc
    return h5py


def _text_of(x: Any) -> str:
    if isinstance(x, bytes):
        return x.decode("utf-8")
    if isinstance(x, (float, np.floating)):
        return repr(float(x))
    if isinstance(x, (np.integer,)):
        return str(int(x))
    if isinstance(x, (np.bool_,)):
        return str(bool(x))
    return str(x)


def _strings(ds: Any) -> list[str]:
    return [_text_of(x) for x in ds[()]]


def _h5ad_frame(path: Path, h5: Any, name: str) -> tuple[list[str], list[dict[str, str]]]:
    """An AnnData obs/var dataframe (index and columns, all as strings; a missing value left out)."""
    grp = h5[name]
    index_name = _text_of(grp.attrs.get("_index", "_index"))
    index = _strings(grp[index_name])
    order = grp.attrs.get("column-order", [])
    columns = [_text_of(c) for c in np.atleast_1d(order)] if len(np.atleast_1d(order)) else []
    meta: list[dict[str, str]] = [{} for _ in index]
    for col in columns:
        node = grp[col]
        values: list[str | None]
        if hasattr(node, "keys"):  # a group: categorical (categories, codes) or nullable (values, mask)
            enc = _text_of(node.attrs.get("encoding-type", ""))
            if "codes" in node:
                cats = _strings(node["categories"])
                values = [cats[c] if c >= 0 else None for c in node["codes"][()]]
            elif "values" in node:
                mask = node["mask"][()] if "mask" in node else np.zeros(len(index), bool)
                values = [None if m else _text_of(v) for v, m in zip(node["values"][()], mask, strict=True)]
            else:
                raise InputError(f"{path}: {name}/{col}: unsupported column encoding {enc!r}")
        elif "categories" in node.attrs:  # anndata < 0.8: codes with a reference to the categories
            cats = _strings(h5[node.attrs["categories"]])
            values = [cats[c] if c >= 0 else None for c in node[()]]
        else:
            values = [_text_of(v) for v in node[()]]
        for i, v in enumerate(values):
            if v is not None:
                meta[i][col] = v
    return index, meta


def _open_h5ad(path: Path) -> Matrix:
    h5py = _h5py()
    try:
        h5 = h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"{path}: not an HDF5 file ({exc})") from None
    with h5:
        if "X" not in h5:
            raise InputError(
                f"{path}: the .h5ad has no X matrix (it holds {sorted(h5.keys())}); nothing to ingest. Write the values "
                "into X (adata.X = ...) or export the layer that holds them"
            )
        samples, sample_meta = _h5ad_frame(path, h5, "obs")
        features, feature_meta = _h5ad_frame(path, h5, "var")
        x = h5["X"]
        if hasattr(x, "keys"):
            enc = _text_of(x.attrs.get("encoding-type", x.attrs.get("h5sparse_format", "")))
            shape = tuple(int(s) for s in x.attrs.get("shape", x.attrs.get("h5sparse_shape", (0, 0))))
            kind = "csr" if "csr" in enc else "csc" if "csc" in enc else enc
        else:
            kind, shape = "dense", tuple(int(s) for s in x.shape)
    if kind not in ("dense", "csr", "csc"):
        raise InputError(f"{path}: X has the encoding {kind!r}; dense, csr_matrix and csc_matrix are read")
    if shape != (len(samples), len(features)):
        raise InputError(f"{path}: X is {shape} but obs has {len(samples)} and var {len(features)} entries")

    def blocks(size: int) -> Iterator[Block]:
        n_obs, n_var = shape
        with h5py.File(path, "r") as f:
            x = f["X"]
            for j0 in range(0, n_var, size):
                j1 = min(n_var, j0 + size)
                if kind == "dense":
                    vals = np.asarray(x[:, j0:j1], dtype=np.float64).T
                elif kind == "csc":
                    ptr = x["indptr"][j0 : j1 + 1]
                    data = np.asarray(x["data"][ptr[0] : ptr[-1]], dtype=np.float64)
                    rows = x["indices"][ptr[0] : ptr[-1]]
                    vals = np.zeros((j1 - j0, n_obs))
                    cols = np.repeat(np.arange(j1 - j0), np.diff(ptr))
                    vals[cols, rows] = data
                else:  # csr: rows are samples; one pass over them per block of features
                    vals = np.zeros((j1 - j0, n_obs))
                    ptr_all = x["indptr"]
                    step = max(1, 1_000_000 // max(1, n_var))
                    for r0 in range(0, n_obs, step):
                        r1 = min(n_obs, r0 + step)
                        ptr = ptr_all[r0 : r1 + 1]
                        idx = x["indices"][ptr[0] : ptr[-1]]
                        data = x["data"][ptr[0] : ptr[-1]]
                        rows = np.repeat(np.arange(r0, r1), np.diff(ptr))
                        keep = (idx >= j0) & (idx < j1)
                        vals[idx[keep] - j0, rows[keep]] = data[keep]
                yield Block(features[j0:j1], feature_meta[j0:j1], vals, list(range(j0, j1)))

    return Matrix(path, "h5ad", samples, sample_meta, blocks, n_features=len(features), attrs={"x": kind})


def _biom_meta(md: Any) -> dict[str, str]:
    if not md:
        return {}
    out = {}
    for k, v in md.items():
        if v is None:
            continue
        out[str(k)] = "; ".join(_text_of(x) for x in v) if isinstance(v, (list, tuple, np.ndarray)) else _text_of(v)
    return out


def _open_biom(path: Path) -> Matrix:
    with path.open("rb") as f:
        head = f.read(8)
    if head.startswith(b"\x89HDF"):
        return _open_biom_hdf5(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: neither BIOM 2.x (HDF5) nor BIOM 1.0 (JSON): {exc}") from None
    for key in ("rows", "columns", "data", "shape", "matrix_type"):
        if key not in doc:
            raise InputError(f"{path}: BIOM 1.0 JSON without {key!r}")
    features = [str(r["id"]) for r in doc["rows"]]
    feature_meta = [_biom_meta(r.get("metadata")) for r in doc["rows"]]
    samples = [str(c["id"]) for c in doc["columns"]]
    sample_meta = [_biom_meta(c.get("metadata")) for c in doc["columns"]]
    n, m = (int(s) for s in doc["shape"])
    if (n, m) != (len(features), len(samples)):
        raise InputError(f"{path}: shape {[n, m]} but {len(features)} rows and {len(samples)} columns")
    dense = np.zeros((n, m))
    if doc["matrix_type"] == "sparse":
        for k, entry in enumerate(doc["data"]):
            if len(entry) != 3 or not (0 <= entry[0] < n and 0 <= entry[1] < m):
                raise InputError(f"{path}: data entry {k + 1} is not [row, column, value] within the shape")
            dense[int(entry[0]), int(entry[1])] = float(entry[2])
    else:
        for i, row in enumerate(doc["data"]):
            if len(row) != m:
                raise InputError(f"{path}: row {i + 1} of the dense data has {len(row)} values, expected {m}")
            dense[i] = np.asarray(row, dtype=np.float64)

    def blocks(size: int) -> Iterator[Block]:
        for i0 in range(0, n, size):
            i1 = min(n, i0 + size)
            yield Block(features[i0:i1], feature_meta[i0:i1], dense[i0:i1].copy(), list(range(i0, i1)))

    return Matrix(path, "biom", samples, sample_meta, blocks, n_features=n, attrs={"version": "1.0"})


def _biom_h5_meta(grp: Any, n: int) -> list[dict[str, str]]:
    out: list[dict[str, str]] = [{} for _ in range(n)]
    if "metadata" not in grp:
        return out
    for key in grp["metadata"]:
        arr = grp["metadata"][key][()]
        for i in range(n):
            v = arr[i]
            text = "; ".join(_text_of(x) for x in v) if getattr(v, "ndim", 0) else _text_of(v)
            out[i][key] = text
    return out


def _open_biom_hdf5(path: Path) -> Matrix:
    h5py = _h5py()
    with h5py.File(path, "r") as h5:
        for key in ("observation/ids", "sample/ids", "observation/matrix/indptr"):
            if key not in h5:
                raise InputError(f"{path}: BIOM 2.1 HDF5 without {key}")
        features = _strings(h5["observation/ids"])
        samples = _strings(h5["sample/ids"])
        feature_meta = _biom_h5_meta(h5["observation"], len(features))
        sample_meta = _biom_h5_meta(h5["sample"], len(samples))
        version = ".".join(str(int(x)) for x in h5.attrs.get("format-version", (2, 1)))
    n, m = len(features), len(samples)

    def blocks(size: int) -> Iterator[Block]:
        with h5py.File(path, "r") as f:
            mat = f["observation/matrix"]
            for i0 in range(0, n, size):
                i1 = min(n, i0 + size)
                ptr = mat["indptr"][i0 : i1 + 1]
                cols = mat["indices"][ptr[0] : ptr[-1]]
                data = np.asarray(mat["data"][ptr[0] : ptr[-1]], dtype=np.float64)
                if cols.size and (cols.min() < 0 or cols.max() >= m):
                    raise InputError(f"{path}: observations {i0 + 1}-{i1}: a column index outside the {m} samples")
                vals = np.zeros((i1 - i0, m))
                vals[np.repeat(np.arange(i1 - i0), np.diff(ptr)), cols] = data
                yield Block(features[i0:i1], feature_meta[i0:i1], vals, list(range(i0, i1)))

    return Matrix(path, "biom", samples, sample_meta, blocks, n_features=n, attrs={"version": version})
