"""The phenotype file of omics_assoc: numbers, two-level labels, and every refusal naming the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from omicslake.errors import InputError
from omicslake.jobs.omics_assoc import read_pheno


def test_numbers_and_labels(tmp_path: Path) -> None:
    p = tmp_path / "pheno.tsv"
    p.write_text("sample_id\tstatus\tage\tsex\nS1\tcase\t50\tTRUE\nS2\tcontrol\t61.5\tfalse\nS3\t\t40\t1\n")
    f = read_pheno(str(p), "sample_id", ["status", "age", "sex"])
    assert f.loc["S1"].tolist() == [1.0, 50.0, 1.0]
    assert f.loc["S2"].tolist() == [0.0, 61.5, 0.0]
    assert f.loc["S3", "status"] != f.loc["S3", "status"]  # missing stays missing (NaN)
    c = tmp_path / "pheno.csv"
    c.write_text("id,t2d\nS1,1\nS2,0\n")
    assert read_pheno(str(c), "id", ["t2d"])["t2d"].tolist() == [1.0, 0.0]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sample_id\tt2d\nS1\t1\nS1\t0\n", r"sample id\(s\) appear more than once in column 'sample_id'"),
        ("sample_id\tother\nS1\t1\n", r"column\(s\) \['t2d'\] not found"),
        (
            "sample_id\tt2d\nS1\t1\nS2\tmaybe\n",
            r"column 't2d' has values that are neither numbers nor a 0/1 label \(first at sample 'S2'\)",
        ),
    ],
)
def test_bad_phenotype_files(tmp_path: Path, text: str, message: str) -> None:
    p = tmp_path / "pheno.tsv"
    p.write_text(text)
    with pytest.raises(InputError, match=message) as e:
        read_pheno(str(p), "sample_id", ["t2d"])
    assert str(p) in str(e.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        read_pheno(str(tmp_path / "none.tsv"), "sample_id", ["t2d"])
