"""Omics readers against the formats' reference libraries on real files written by others
(anndata's and biom-format's test archives, cmapPy's GCT files), round trips through anndata's
and biom-format's own writers, and every bad-input error with its file and line."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from omicslake.errors import InputError
from omicslake.omics.readers import open_matrix

CSR_CSC = ("csr", "csc")


def read_all(path: Path, fmt: str, size: int = 3, **kw: object) -> tuple[list[str], list[dict[str, str]], np.ndarray]:
    m = open_matrix(path, fmt, **kw)  # type: ignore[arg-type]
    ids: list[str] = []
    meta: list[dict[str, str]] = []
    vals = []
    for b in m.blocks(size):
        assert len(b.ids) <= size
        ids += b.ids
        meta += b.meta
        vals.append(b.values)
    return ids, meta, np.vstack(vals)


# ---------------------------------------------------------------------------------------------- GCT


def parse_gct_by_hand(path: Path) -> dict[str, object]:
    """An independent parse: split on tabs, the layout of the GCT spec, nothing shared with the reader."""
    lines = [ln.rstrip("\n").split("\t") for ln in path.read_text().splitlines()]
    dims = [int(x) for x in lines[1] if x.strip()]
    nr, nc, nrm, ncm = (dims + [1, 0])[:4] if len(dims) == 2 else dims
    header = lines[2][: 1 + nrm + nc]
    cmeta = {r[0]: r[1 + nrm : 1 + nrm + nc] for r in lines[3 : 3 + ncm]}
    body = lines[3 + ncm :]
    return {
        "samples": header[1 + nrm :],
        "rmeta_names": header[1 : 1 + nrm],
        "ids": [r[0] for r in body],
        "rmeta": [r[1 : 1 + nrm] for r in body],
        "values": np.array([[float(x) for x in r[1 + nrm :]] for r in body]),
        "cmeta": cmeta,
        "n": nr,
    }


def test_gct_13_equals_a_hand_parse(external: Path) -> None:
    path = external / "omics" / "gct" / "mini_gctoo_for_testing.gct"
    ref = parse_gct_by_hand(path)
    m = open_matrix(path, "gct")
    assert m.samples == ref["samples"]
    for name, values in ref["cmeta"].items():  # type: ignore[attr-defined]
        assert [s[name] for s in m.sample_meta] == values
    ids, meta, vals = read_all(path, "gct", size=4)
    assert ids == ref["ids"] and len(ids) == ref["n"] == 6
    assert [[md[k] for k in ref["rmeta_names"]] for md in meta] == ref["rmeta"]  # type: ignore[union-attr]
    np.testing.assert_array_equal(vals, ref["values"])
    # worked out by reading the file: the first data row is 1..6, the fifth the negated fourth
    np.testing.assert_array_equal(vals[0], [1, 2, 3, 4, 5, 6])
    np.testing.assert_array_equal(vals[4], -vals[3])
    assert m.sample_meta[0]["distil_ss"] == "9.822065353" and meta[2]["distil_nsample"] == "66"


def test_gct_12_with_padded_header_lines(external: Path) -> None:
    path = external / "omics" / "gct" / "test_v1point2_n5x10.gct"
    ref = parse_gct_by_hand(path)
    ids, meta, vals = read_all(path, "gct", size=4)
    assert ids == ref["ids"] and len(ids) == 10
    assert [md["Description"] for md in meta] == [r[0] for r in ref["rmeta"]]  # type: ignore[union-attr]
    assert open_matrix(path, "gct").samples == ref["samples"]
    np.testing.assert_array_equal(vals, ref["values"])
    assert vals[0, 0] == 11.3819 and ids[9] == "203627_at" and meta[9]["Description"] == "IGF1R"


GCT13 = "#1.3\n{dims}\nid\tgene\tS1\tS2\ntissue\t-666\tliver\tgut\n{body}"


@pytest.mark.parametrize(
    ("dims", "body", "message"),
    [
        ("3\t2\t1\t1", "f1\tA\t1\t2\nf2\tB\t3\t4\n", r"dimension line \(line 2\) says 3 data rows but the body has 2"),
        ("1\t2\t1\t1", "f1\tA\t1\t2\nf2\tB\t3\t4\n", r"line 6: more data rows than the 1 the dimension line"),
        ("2\t3\t1\t1", "f1\tA\t1\t2\nf2\tB\t3\t4\n", r"line 3: the header has 2 sample columns but the dimension line"),
        ("2\t2\t1\t1", "f1\tA\t1\t2\nf2\tB\t3\n", r"line 6: 3 fields, but the header \(line 3\) has 4"),
        (
            "2\t2\t1\t1",
            "f1\tA\t1\t2\nf1\tB\t3\t4\n",
            r"line 6: feature id 'f1' appears more than once \(first at line 5\)",
        ),
        ("2\t2\t1\t1", "f1\tA\t1\tx\nf2\tB\t3\t4\n", r"line 5, column 'S2': not a number"),
    ],
)
def test_gct_bad_input(tmp_path: Path, dims: str, body: str, message: str) -> None:
    p = tmp_path / "bad.gct"
    p.write_text(GCT13.format(dims=dims, body=body))
    with pytest.raises(InputError, match=f"{p}: .*{message}" if "line 3" not in message else message) as e:
        read_all(p, "gct")
    assert str(p) in str(e.value)


# ---------------------------------------------------------------------------------------------- h5ad


def frame_as_strings(df) -> list[dict[str, str]]:  # type: ignore[no-untyped-def]
    out = []
    for _, row in df.iterrows():
        out.append({k: (repr(float(v)) if isinstance(v, float) else str(v)) for k, v in row.items() if v == v})
    return out


def assert_same_as_anndata(path: Path, size: int = 3) -> None:
    import anndata
    import scipy.sparse as sp

    ad = anndata.read_h5ad(path)
    x = ad.X.toarray() if sp.issparse(ad.X) else np.asarray(ad.X)
    m = open_matrix(path, "h5ad")
    ids, meta, vals = read_all(path, "h5ad", size=size)
    assert m.samples == list(ad.obs_names)
    assert ids == list(ad.var_names)
    np.testing.assert_array_equal(vals, x.T.astype(np.float64))
    assert m.sample_meta == frame_as_strings(ad.obs)
    assert meta == frame_as_strings(ad.var)


def test_h5ad_written_by_anndata_0_7_8_equals_anndata(external: Path) -> None:
    """A CSR X, categorical (old encoding: a reference to __categories), ordered categorical, int and
    float columns in obs and var."""
    path = external / "omics" / "h5ad" / "anndata__v0.7.8_adata.h5ad"
    assert open_matrix(path, "h5ad").attrs["x"] == "csr"
    assert_same_as_anndata(path, size=7)


def test_h5ad_without_x_is_refused(external: Path) -> None:
    path = external / "omics" / "h5ad" / "anndata__v0.11.4_adata.h5ad"
    with pytest.raises(InputError, match=rf"{path}: the .h5ad has no X matrix"):
        open_matrix(path, "h5ad")


@pytest.mark.parametrize("layout", ["dense", *CSR_CSC])
def test_h5ad_round_trip_through_anndata_writer(tmp_path: Path, layout: str) -> None:
    import anndata
    import pandas as pd
    import scipy.sparse as sp

    rng = np.random.default_rng(3)
    x = rng.poisson(2.0, size=(11, 17)).astype(np.float32)
    x[rng.random(x.shape) < 0.4] = 0
    obs = pd.DataFrame(
        {"t2d": pd.Categorical(rng.choice(["case", "control"], 11)), "age": rng.integers(30, 80, 11)},
        index=[f"SM-{i}" for i in range(11)],
    )
    obs.loc["SM-3", "t2d"] = np.nan  # a missing categorical value is left out of the map
    var = pd.DataFrame(
        {"symbol": [f"G{j}" for j in range(17)], "gc": rng.random(17)}, index=[f"ENSG{j}" for j in range(17)]
    )
    data = {"dense": x, "csr": sp.csr_matrix(x), "csc": sp.csc_matrix(x)}[layout]
    path = tmp_path / f"{layout}.h5ad"
    anndata.AnnData(X=data, obs=obs, var=var).write_h5ad(path)
    assert open_matrix(path, "h5ad").attrs["x"] == layout
    assert_same_as_anndata(path, size=5)
    assert "t2d" not in open_matrix(path, "h5ad").sample_meta[3]


# ---------------------------------------------------------------------------------------------- BIOM


def assert_same_as_biom(path: Path) -> None:
    import biom

    t = biom.load_table(str(path))
    m = open_matrix(path, "biom")
    ids, meta, vals = read_all(path, "biom", size=2)
    assert ids == list(t.ids(axis="observation")) and m.samples == list(t.ids(axis="sample"))
    np.testing.assert_array_equal(vals, t.matrix_data.toarray())

    def as_strings(md):  # type: ignore[no-untyped-def]
        return {k: "; ".join(v) if isinstance(v, list) else str(v) for k, v in (md or {}).items()}

    assert meta == [as_strings(md) for md in (t.metadata(axis="observation") or [None] * len(ids))]
    assert m.sample_meta == [as_strings(md) for md in (t.metadata(axis="sample") or [None] * len(m.samples))]


@pytest.mark.parametrize("name", ["rich_sparse_otu_table.biom", "rich_sparse_otu_table_hdf5.biom"])
def test_biom_written_by_biom_format_equals_biom_format(external: Path, name: str) -> None:
    path = external / "omics" / "biom" / name
    assert_same_as_biom(path)
    ids, meta, vals = read_all(path, "biom")
    # by hand from the JSON file: GG_OTU_2 counts 5 1 0 2 3 1; its genus Dolichospermum
    assert ids[1] == "GG_OTU_2" and list(vals[1]) == [5, 1, 0, 2, 3, 1]
    assert meta[1]["taxonomy"].split("; ")[5] == "g__Dolichospermum"


@pytest.mark.parametrize("kind", ["json", "hdf5"])
def test_biom_round_trip_through_biom_writer(tmp_path: Path, kind: str) -> None:
    import biom
    import h5py

    rng = np.random.default_rng(5)
    data = rng.poisson(3.0, size=(9, 4)).astype(float)
    obs_md = [{"taxonomy": ["k__Bacteria", f"p__P{i}", f"g__G{i}"]} for i in range(9)]
    t = biom.Table(data, [f"OTU{i}" for i in range(9)], [f"SM-{j}" for j in range(4)], obs_md, [{"site": "gut"}] * 4)
    path = tmp_path / f"t.{kind}.biom"
    if kind == "json":
        path.write_text(t.to_json("omicslake test"))
    else:
        with h5py.File(path, "w") as f:
            t.to_hdf5(f, "omicslake test")
    assert_same_as_biom(path)


# ---------------------------------------------------------------------------------------------- text


FEATURECOUNTS = (
    '# Program:featureCounts v2.0.1; Command:"featureCounts" "-a" "genes.gtf"\n'
    "Geneid\tChr\tStart\tEnd\tStrand\tLength\tSM-1.bam\tSM-2.bam\tSM-3.bam\n"
    "ENSG1\tchr1;chr1\t11869;12010\t12227;12057\t+;+\t1735\t10\t0\t3\n"
    "ENSG2\tchr1\t14404\t14501\t-\t98\t4\t7\t\n"
    "ENSG3\tchr2\t100\t900\t+\t801\t0\t12\t5\n"
)


def test_featurecounts_gzipped_with_annotation_columns(tmp_path: Path) -> None:
    path = tmp_path / "counts.txt.gz"
    path.write_bytes(gzip.compress(FEATURECOUNTS.encode()))
    m = open_matrix(path, "tsv", nonnegative=True)
    assert m.samples == ["SM-1.bam", "SM-2.bam", "SM-3.bam"]
    blocks = list(m.blocks(2))
    assert [b.lines for b in blocks] == [[3, 4], [5]]
    ids, meta, vals = read_all(path, "tsv", size=2)
    assert ids == ["ENSG1", "ENSG2", "ENSG3"]
    assert meta[0] == {
        "Chr": "chr1;chr1",
        "Start": "11869;12010",
        "End": "12227;12057",
        "Strand": "+;+",
        "Length": "1735",
    }
    np.testing.assert_array_equal(vals, [[10, 0, 3], [4, 7, np.nan], [0, 12, 5]])


GEO = (
    '!Series_title\t"Expression in T2D islets"\n'
    '!Sample_title\t"islet donor 1"\t"islet donor 2"\n'
    '!Sample_geo_accession\t"GSM1"\t"GSM2"\n'
    '!Sample_characteristics_ch1\t"status: T2D"\t"status: control"\n'
    '!Sample_characteristics_ch1\t"sex: F"\t"sex: M"\n'
    "!series_matrix_table_begin\n"
    '"ID_REF"\t"GSM1"\t"GSM2"\n'
    '"1007_s_at"\t7.5\t8.25\n'
    '"1053_at"\tnull\t6.0\n'
    "!series_matrix_table_end\n"
)


def test_geo_series_matrix(tmp_path: Path) -> None:
    path = tmp_path / "GSE1_series_matrix.txt"
    path.write_text(GEO)
    m = open_matrix(path, "tsv")
    assert m.samples == ["GSM1", "GSM2"]
    assert m.sample_meta[0] == {
        "title": "islet donor 1",
        "geo_accession": "GSM1",
        "characteristics_ch1": "status: T2D",
        "characteristics_ch1_2": "sex: F",
    }
    ids, _, vals = read_all(path, "tsv")
    assert ids == ["1007_s_at", "1053_at"]
    np.testing.assert_array_equal(vals, [[7.5, 8.25], [np.nan, 6.0]])


@pytest.mark.parametrize(
    ("text", "kw", "message"),
    [
        ("id,S1,S2\nf1,1,2\nf2,3\n", {}, r"line 3: 2 fields, but the header \(line 1\) has 3"),
        ("id,S1,S2\nf1,1,2\nf2,3,abc\n", {}, r"line 3, column 'S2': not a number"),
        ("id,S1,S2\nf1,1,2\nf2,3,inf\n", {}, r"line 3, column 'S2': not a finite number"),
        (
            "id,S1,S2\nf1,1,2\nf3,3,4\nf1,5,6\n",
            {},
            r"line 4: feature id 'f1' appears more than once \(first at line 2\)",
        ),
        ("id,S1,S1\nf1,1,2\n", {}, r"sample id\(s\) \['S1'\] appear more than once"),
        (
            "id,S1,S2\nf1,1,2\nf2,-3,4\n",
            {"nonnegative": True},
            r"line 3 \(feature 'f2'\), sample 'S1': a negative value where counts",
        ),
        (
            "id,S1,S2\nf1,0.1,0.9\nf2,0.3,1.2\n",
            {"bounds": (0.0, 1.0)},
            r"line 3 \(feature 'f2'\), sample 'S2': a value outside \[0.0, 1.0\]",
        ),
    ],
)
def test_text_bad_input(tmp_path: Path, text: str, kw: dict[str, object], message: str) -> None:
    path = tmp_path / "m.csv"
    path.write_text(text)
    with pytest.raises(InputError, match=f"{path}: {message}"):
        read_all(path, "csv", size=1, **kw)


def test_negative_counts_in_h5ad_name_the_row(tmp_path: Path) -> None:
    import anndata

    x = np.ones((3, 4), dtype=np.float32)
    x[1, 2] = -1
    path = tmp_path / "neg.h5ad"
    anndata.AnnData(X=x).write_h5ad(path)
    with pytest.raises(InputError, match=rf"{path}: row 3 \(feature '2'\), sample '1': a negative value"):
        read_all(path, "h5ad", nonnegative=True)
