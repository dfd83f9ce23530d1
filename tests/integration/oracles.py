"""Reference tools run on the same inputs as our jobs, for the tests to compare against."""

from __future__ import annotations

import csv
import math
import subprocess
from pathlib import Path


def plink2_glm(tmp: Path, geno_args: list[str], pheno: dict[str, float], covar: dict[str, list[float]] | None,
               covar_names: list[str], model: str, extra: tuple[str, ...] = ()) -> dict[tuple[str, int, str, str], dict[str, str]]:
    """plink2 --glm on the same genotypes: rows keyed by (contig, position, ref, alt)."""
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "pheno.tsv").write_text("#IID\tY\n" + "".join(f"{s}\t{v}\n" for s, v in pheno.items()))
    args = ["plink2", *geno_args, "--pheno", str(tmp / "pheno.tsv"), "--out", str(tmp / "r"), "--threads", "2", *extra]
    if covar:
        (tmp / "covar.tsv").write_text("#IID\t" + "\t".join(covar_names) + "\n" + "".join(
            f"{s}\t" + "\t".join(repr(x) for x in v) + "\n" for s, v in covar.items()))
        args += ["--covar", str(tmp / "covar.tsv")]
    glm = "hide-covar cols=+a1freq,+beta,+nobs,+firth" + (" allow-no-covars" if not covar else "")
    args += ["--glm", *glm.split()]
    subprocess.run(args, check=True, capture_output=True, text=True)
    (out,) = [p for p in tmp.glob("r.Y.glm.*") if not p.name.endswith(".id")]
    with out.open() as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return {(r["#CHROM"], int(r["POS"]), r["REF"], r["ALT"]): r for r in rows}


def compare(ours: list, theirs: dict, tested_is_a1: bool = True) -> int:
    """|delta beta| <= 1e-3 and |delta log10 p| <= 0.01 on every variant plink2 fitted without
    Firth; returns how many were compared."""
    n = 0
    for r in ours:
        p2 = theirs.get((r.contig, r.position, r.ref, r.alt)) or theirs.get((r.contig.removeprefix("chr"), r.position, r.ref, r.alt))
        if p2 is None or p2["ERRCODE"] != "." or p2.get("FIRTH?", "N") == "Y" or p2["BETA"] == "NA":
            continue
        sign = 1.0 if p2["A1"] == r.tested_allele else -1.0
        assert p2["A1"] in (r.ref, r.alt)
        assert r.status == "ok", (r, p2)
        assert abs(r.beta - sign * float(p2["BETA"])) <= 1e-3, (r, p2)
        assert abs(r.neg_log10_p + math.log10(float(p2["P"]))) <= 0.01, (r, p2)
        assert r.n == int(p2["OBS_CT"]), (r, p2)
        n += 1
    return n
