"""Synthetic omics with planted truth, for the genotyped samples of a generated cohort.

- RNA-seq counts (negative binomial, per-gene mean and dispersion, per-sample library size) with
  genes differentially expressed by T2D status and, separately, by ancestry (log2 fold change
  +-``LOG2FC``), written featureCounts-style (annotation columns, gzipped TSV);
- methylation betas (logit-normal around a per-CpG level) with CpGs shifted by T2D status,
  written as GCT 1.3 with row and column metadata;
- proteomics intensities (log-normal) with proteins shifted by T2D status and values missing not
  at random (the lower an intensity, the likelier it is missing), written as CSV;
- microbiome counts (Dirichlet-multinomial) with taxa whose abundance shifts with T2D status,
  written as BIOM 1.0 JSON with a taxonomy per taxon.

T2D status is the patient's T2D at any time (prevalent or incident). The truth goes to
``truth/omics_samples.tsv`` (sample id, t2d, ancestry and its 0/1 indicators: a phenotype file
for omics_assoc) and ``truth/omics_features.tsv`` (every planted feature and its effect); the
files to ingest are listed in ``omics/files.yaml`` (read by ingest_omics by default) and, with the
parameters and counts, in ``omics/manifest.json``.

Randomness: numpy generators seeded from (seed, ``STREAM``, assay, block), a stream of its own, so
nothing else the generator draws changes, and every file is the same for a seed.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

STREAM = 170_017  # this module's own random stream (issue 17)
BLOCK = 500  # features per generated block (part of the stream: do not change without new files)
LOG2FC = 1.0  # planted log2 fold change of a DE gene (sign random)
DE_T2D_FRACTION = 0.05  # share of genes DE by T2D status
DE_ANCESTRY_FRACTION = 0.05  # share of genes DE by ancestry (groups 1 and 2 against 0)
CPG_SHIFT = 1.0  # planted shift of a CpG's logit(beta) with T2D
CPG_FRACTION = 0.05
CPG_NOISE = 0.4  # per-sample sd of logit(beta)
PROTEIN_SHIFT = 1.0  # planted log2 shift of a protein with T2D
PROTEIN_FRACTION = 0.05
PROTEIN_NOISE = 0.5  # per-sample sd of log2 intensity
MNAR_LOG2 = 17.0  # a log2 intensity this low is missing half the time (detection limit)
TAXON_LOG2FC = 1.0  # planted log2 fold change of a taxon's Dirichlet weight with T2D
TAXON_FRACTION = 0.05
DM_CONCENTRATION = 200.0  # Dirichlet concentration: lower means more overdispersion between samples
READS = 20_000  # mean sequencing depth of a microbiome sample


@dataclass(frozen=True)
class OmicsSamples:
    """The samples the omics are drawn for, in order: ids, T2D status (0/1) and ancestry (0, 1, 2)."""

    ids: list[str]
    t2d: np.ndarray
    ancestry: np.ndarray


def _rng(seed: int, *parts: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, STREAM, *parts]))


def planted(n: int, fraction: float, offset: int = 0) -> np.ndarray:
    """Indices of the planted features: every round(1 / fraction)-th, from offset (spread over the file)."""
    step = max(1, round(1 / fraction))
    return np.arange(offset, n, step)


def rnaseq_blocks(
    s: OmicsSamples, n_genes: int, seed: int
) -> Iterator[tuple[list[str], np.ndarray, np.ndarray, np.ndarray]]:
    """Blocks of (gene ids, counts genes x samples, T2D log2FC, ancestry log2FC) per gene."""
    n = len(s.ids)
    lib = np.exp(_rng(seed, 1, 0).normal(0.0, 0.25, n))  # per-sample library size factor
    t2d_genes = set(planted(n_genes, DE_T2D_FRACTION).tolist())
    anc_genes = set(planted(n_genes, DE_ANCESTRY_FRACTION, offset=7).tolist())
    anc_effect = (s.ancestry > 0).astype(float)
    for b0 in range(0, n_genes, BLOCK):
        b1 = min(n_genes, b0 + BLOCK)
        rng = _rng(seed, 1, 1 + b0 // BLOCK)
        m = b1 - b0
        base = np.exp(rng.normal(5.5, 1.0, m))  # mean count of a gene
        disp = 0.05 + 1.0 / base  # NB dispersion, larger for lowly expressed genes
        sign = rng.choice([-1.0, 1.0], size=(m, 2))
        fc_t2d = np.array([LOG2FC * sign[i, 0] if b0 + i in t2d_genes else 0.0 for i in range(m)])
        fc_anc = np.array([LOG2FC * sign[i, 1] if b0 + i in anc_genes else 0.0 for i in range(m)])
        mu = (
            base[:, None]
            * lib[None, :]
            * 2.0 ** (fc_t2d[:, None] * s.t2d[None, :] + fc_anc[:, None] * anc_effect[None, :])
        )
        r = 1.0 / disp[:, None]
        counts = rng.negative_binomial(r, r / (r + mu))
        yield [f"GENE{g:06d}" for g in range(b0, b1)], counts, fc_t2d, fc_anc


def methylation_blocks(s: OmicsSamples, n_cpgs: int, seed: int) -> Iterator[tuple[list[str], np.ndarray, np.ndarray]]:
    """Blocks of (CpG ids, betas CpGs x samples, planted logit shift with T2D)."""
    n = len(s.ids)
    hits = set(planted(n_cpgs, CPG_FRACTION, offset=3).tolist())
    for b0 in range(0, n_cpgs, BLOCK):
        b1 = min(n_cpgs, b0 + BLOCK)
        rng = _rng(seed, 2, 1 + b0 // BLOCK)
        m = b1 - b0
        level = rng.normal(0.0, 2.0, m)  # logit of the CpG's typical beta
        sign = rng.choice([-1.0, 1.0], size=m)
        shift = np.array([CPG_SHIFT * sign[i] if b0 + i in hits else 0.0 for i in range(m)])
        logit = level[:, None] + shift[:, None] * s.t2d[None, :] + rng.normal(0.0, CPG_NOISE, (m, n))
        yield [f"cg{c:08d}" for c in range(b0, b1)], 1.0 / (1.0 + np.exp(-logit)), shift


def proteomics(s: OmicsSamples, n_proteins: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(intensities proteins x samples with NaN where missing not at random, planted log2 shift)."""
    rng = _rng(seed, 3, 1)
    n = len(s.ids)
    hits = planted(n_proteins, PROTEIN_FRACTION, offset=2)
    shift = np.zeros(n_proteins)
    shift[hits] = PROTEIN_SHIFT * rng.choice([-1.0, 1.0], size=len(hits))
    log2 = (
        rng.normal(20.0, 2.0, n_proteins)[:, None]
        + shift[:, None] * s.t2d[None, :]
        + rng.normal(0, PROTEIN_NOISE, (n_proteins, n))
    )
    p_missing = 1.0 / (1.0 + np.exp(2.0 * (log2 - MNAR_LOG2)))
    return np.where(rng.random(log2.shape) < p_missing, np.nan, 2.0**log2), shift


def microbiome(s: OmicsSamples, n_taxa: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(Dirichlet-multinomial counts taxa x samples, planted log2 fold change of the taxon's weight)."""
    rng = _rng(seed, 4, 1)
    n = len(s.ids)
    weight = rng.dirichlet(np.full(n_taxa, 0.8))
    # planted among the more abundant half of the taxa: a shift in a taxon seen a few times in 20,000
    # reads is below what any test (or the low-count QC rule) can see
    abundant = np.sort(np.argsort(-weight, kind="stable")[: max(1, n_taxa // 2)])
    hits = abundant[planted(len(abundant), 2 * TAXON_FRACTION, offset=1)]
    fc = np.zeros(n_taxa)
    fc[hits] = TAXON_LOG2FC * rng.choice([-1.0, 1.0], size=len(hits))
    counts = np.zeros((n_taxa, n), dtype=np.int64)
    depth = rng.poisson(READS, n)
    for j in range(n):
        w = weight * 2.0 ** (fc * s.t2d[j])
        p = rng.dirichlet(DM_CONCENTRATION * w / w.sum() + 1e-9)
        counts[:, j] = rng.multinomial(depth[j], p)
    return counts, fc


def write(out: Path, s: OmicsSamples, n_features: int, seed: int) -> dict[str, Any]:
    """Write the omics files, their list, the truth and the omics manifest under ``out``; the
    manifest (also ``omics/manifest.json``)."""
    folder = out / "omics"
    folder.mkdir(parents=True, exist_ok=True)
    (out / "truth").mkdir(parents=True, exist_ok=True)
    truth = ["assay\tfeature_id\teffect\tsize"]
    rna = folder / "rna_counts.txt.gz"
    n_de = {"t2d": 0, "ancestry": 0}
    with rna.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz:
        gz.write(b'# Program:featureCounts v2.0.6; Command:"featureCounts" "-a" "genes.gtf" (synthetic, omicslake)\n')
        gz.write(("Geneid\tChr\tStart\tEnd\tStrand\tLength\t" + "\t".join(s.ids) + "\n").encode())
        for ids, counts, fc_t2d, fc_anc in rnaseq_blocks(s, n_features, seed):
            lines = []
            for i, gid in enumerate(ids):
                g = int(gid[4:])
                start = 10_000 + 5_000 * g
                annot = f"chr{g % 22 + 1}\t{start}\t{start + 1999}\t{'+-'[g % 2]}\t2000"
                lines.append(gid + "\t" + annot + "\t" + "\t".join(map(str, counts[i].tolist())))
                if fc_t2d[i]:
                    truth.append(f"rna\t{gid}\tt2d\t{fc_t2d[i]:g}")
                    n_de["t2d"] += 1
                if fc_anc[i]:
                    truth.append(f"rna\t{gid}\tancestry\t{fc_anc[i]:g}")
                    n_de["ancestry"] += 1
            gz.write(("\n".join(lines) + "\n").encode())
    meth = folder / "methylation_beta.gct"
    n_cpg = 0
    with meth.open("w", encoding="utf-8", newline="\n") as f:
        f.write("#1.3\n")
        f.write(f"{n_features}\t{len(s.ids)}\t2\t1\n")
        f.write("id\tchr\tpos\t" + "\t".join(s.ids) + "\n")
        f.write("plate\t-666\t-666\t" + "\t".join(f"P{j // 96 + 1}" for j in range(len(s.ids))) + "\n")
        for ids, betas, shift in methylation_blocks(s, n_features, seed):
            for i, cid in enumerate(ids):
                c = int(cid[2:])
                f.write(
                    f"{cid}\tchr{c % 22 + 1}\t{100_000 + 731 * c}\t" + "\t".join(f"{b:.5f}" for b in betas[i]) + "\n"
                )
                if shift[i]:
                    truth.append(f"methylation\t{cid}\tt2d\t{shift[i]:g}")
                    n_cpg += 1
    n_prot, n_taxa = max(20, n_features // 5), max(20, n_features // 5)
    inten, p_shift = proteomics(s, n_prot, seed)
    prot = folder / "proteomics.csv"
    with prot.open("w", encoding="utf-8", newline="\n") as f:
        f.write("protein_id,gene," + ",".join(s.ids) + "\n")
        for i in range(n_prot):
            vals = ",".join("" if np.isnan(v) else f"{v:.1f}" for v in inten[i])
            f.write(f"P{i:05d},PG{i:05d},{vals}\n")
            if p_shift[i]:
                truth.append(f"proteomics\tP{i:05d}\tt2d\t{p_shift[i]:g}")
    counts, t_fc = microbiome(s, n_taxa, seed)
    levels = ("k__Bacteria", "p__Firmicutes", "c__Clostridia", "o__Clostridiales", "f__Lachnospiraceae")
    doc = {
        "id": "omicslake synthetic gut microbiome",
        "format": "Biological Observation Matrix 1.0.0",
        "format_url": "http://biom-format.org",
        "type": "OTU table",
        "generated_by": "omicslake.synth.omics",
        "date": "2019-01-01T00:00:00",
        "matrix_type": "sparse",
        "matrix_element_type": "int",
        "shape": [n_taxa, len(s.ids)],
        "rows": [{"id": f"OTU{i:04d}", "metadata": {"taxonomy": [*levels, f"g__G{i}", "s__"]}} for i in range(n_taxa)],
        "columns": [{"id": sid, "metadata": None} for sid in s.ids],
        "data": [[int(i), int(j), int(counts[i, j])] for i, j in zip(*np.nonzero(counts), strict=True)],
    }
    micro = folder / "microbiome.biom"
    micro.write_text(json.dumps(doc, separators=(",", ":")))
    truth += [f"microbiome\tOTU{i:04d}\tt2d\t{t_fc[i]:g}" for i in np.flatnonzero(t_fc)]
    (out / "truth" / "omics_features.tsv").write_text("\n".join(truth) + "\n")
    sample_lines = ["sample_id\tt2d\tancestry\tancestry_1\tancestry_2"]
    for sid, t, a in zip(s.ids, s.t2d.tolist(), s.ancestry.tolist(), strict=True):
        sample_lines.append(f"{sid}\t{int(t)}\t{int(a)}\t{int(a == 1)}\t{int(a == 2)}")
    (out / "truth" / "omics_samples.tsv").write_text("\n".join(sample_lines) + "\n")
    files = [
        {"path": rna.name, "assay": "rna", "assay_type": "rnaseq_counts", "format": "tsv"},
        {"path": meth.name, "assay": "methylation", "assay_type": "methylation_beta", "format": "gct"},
        {
            "path": prot.name,
            "assay": "proteomics",
            "assay_type": "proteomics_intensity",
            "format": "csv",
            "meta_columns": ["gene"],
        },
        {"path": micro.name, "assay": "microbiome", "assay_type": "microbiome_counts", "format": "biom"},
    ]
    (folder / "files.yaml").write_text(yaml.safe_dump(files, sort_keys=False))
    manifest = {
        "files": {
            f"omics/{f['path']}": {
                "assay": f["assay"],
                "assay_type": f["assay_type"],
                "format": f["format"],
                "features": n_features,
                "samples": len(s.ids),
            }
            for f in files
        },
        "truth": {"features": "truth/omics_features.tsv", "samples": "truth/omics_samples.tsv"},
        "planted": {
            "rna_de_t2d": n_de["t2d"],
            "rna_de_ancestry": n_de["ancestry"],
            "methylation_t2d": n_cpg,
            "proteomics_t2d": int((p_shift != 0).sum()),
            "microbiome_t2d": int((t_fc != 0).sum()),
            "proteomics_missing": float(np.isnan(inten).mean().round(4)),
            "log2fc": LOG2FC,
            "cpg_logit_shift": CPG_SHIFT,
        },
        "t2d_samples": int(s.t2d.sum()),
        "seed": seed,
        "stream": STREAM,
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return manifest


def from_cohort(link: Any, people: Any, out: Path, n_features: int, seed: int) -> dict[str, Any]:
    """The omics of a generated cohort's samples: ``link`` (sample_idx, sample_id, idx, ancestry)
    joined to ``people`` (idx, prevalent_t2d, t2d_incident) for T2D status; see ``write``."""
    from pyspark.sql import functions as F

    rows = (
        link.join(people.select("idx", (F.col("prevalent_t2d") | F.col("t2d_incident")).alias("t2d")), "idx")
        .orderBy("sample_idx")
        .select("sample_id", "t2d", "ancestry")
        .collect()
    )  # one row per sample: id, status, ancestry
    s = OmicsSamples(
        [r.sample_id for r in rows],
        np.array([1.0 if r.t2d else 0.0 for r in rows]),
        np.array([int(r.ancestry) for r in rows]),
    )
    return write(out, s, n_features, seed)
