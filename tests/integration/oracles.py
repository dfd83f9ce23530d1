"""Reference tools run on the same inputs as our jobs, for the tests to compare against."""

from __future__ import annotations

import csv
import math
import subprocess
from collections.abc import Collection
from pathlib import Path
from typing import Any

Key = tuple[str, int, str, str]


def plink2_glm(
    tmp: Path,
    geno_args: list[str],
    pheno: dict[str, float],
    covar: dict[str, list[float]] | None,
    covar_names: list[str],
    model: str,
    extra: tuple[str, ...] = (),
    modifiers: tuple[str, ...] = (),
) -> dict[Key, dict[str, str]]:
    """plink2 --glm on the same genotypes: rows keyed by (contig, position, ref, alt). ``modifiers``
    go to --glm (e.g. ``firth``: Firth on every variant; plink2 then writes no FIRTH? column, so
    the rows get FIRTH?=Y here)."""
    tmp.mkdir(parents=True, exist_ok=True)
    pheno_file = tmp / "pheno.tsv"
    pheno_file.write_text("#IID\tY\n" + "".join(f"{s}\t{v}\n" for s, v in pheno.items()))
    args = ["plink2", *geno_args, "--pheno", str(pheno_file), "--out", str(tmp / "r"), "--threads", "2"]
    args += extra
    if covar:
        (tmp / "covar.tsv").write_text(
            "#IID\t"
            + "\t".join(covar_names)
            + "\n"
            + "".join(f"{s}\t" + "\t".join(repr(x) for x in v) + "\n" for s, v in covar.items())
        )
        args += ["--covar", str(tmp / "covar.tsv")]
    glm = "hide-covar cols=+a1freq,+beta,+nobs,+firth" + (" allow-no-covars" if not covar else "")
    args += ["--glm", *glm.split(), *modifiers]
    subprocess.run(args, check=True, capture_output=True, text=True)
    (out,) = [p for p in tmp.glob("r.Y.glm.*") if not p.name.endswith(".id")]
    with out.open() as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if "firth" in modifiers:
        for r in rows:
            r["FIRTH?"] = "Y"
    return {(r["#CHROM"], int(r["POS"]), r["REF"], r["ALT"]): r for r in rows}


def _key(contig: str, position: int, ref: str, alt: str) -> Key:
    return contig.removeprefix("chr"), position, ref, alt


def compare(ours: list[Any], theirs: dict[Key, dict[str, str]], keys: Collection[Key] | None = None) -> int:
    """Every variant plink2 fitted (ERRCODE '.'; only those in ``keys`` if given) must be one of
    our rows with status ok, the same kind of fit (plink2's FIRTH? against our firth flag), the
    same n, |delta beta| <= 1e-3 and |delta log10 p| <= 0.01. A row plink2 marks UNFINISHED
    (iteration limit) must be ours with status unfinished and the same kind of fit; its values
    are where each tool's iteration stopped, so they are not compared. Returns how many rows
    with ERRCODE '.' were compared."""
    by_key = {_key(r.contig, r.position, r.ref, r.alt): r for r in ours}
    wanted = None if keys is None else {_key(*k) for k in keys}
    n = 0
    for key, p2 in theirs.items():
        k = _key(*key)
        if (wanted is not None and k not in wanted) or p2["ERRCODE"] not in (".", "UNFINISHED"):
            continue
        r = by_key.get(k)
        assert r is not None, f"plink2 fitted {key}; we have no row for it"
        firth = p2.get("FIRTH?", "N") == "Y"
        assert r.firth == firth, (f"{key}: plink2 {'did' if firth else 'did not'} fit it by Firth", r, p2)
        if p2["ERRCODE"] == "UNFINISHED":
            assert r.status == "unfinished", (r, p2)
            continue
        assert p2["A1"] in (r.ref, r.alt)
        sign = 1.0 if p2["A1"] == r.tested_allele else -1.0
        assert r.status == "ok", (r, p2)
        assert abs(r.beta - sign * float(p2["BETA"])) <= 1e-3, (r, p2)
        assert abs(r.neg_log10_p + math.log10(float(p2["P"]))) <= 0.01, (r, p2)
        assert r.n == int(p2["OBS_CT"]), (r, p2)
        n += 1
    absent = set() if wanted is None else wanted - {_key(*k) for k in theirs}
    assert not absent, f"plink2 has no row for {sorted(absent)}"
    return n
