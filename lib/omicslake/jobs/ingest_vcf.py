"""Job ingest_vcf: VCF / VCF.bgz files and PLINK filesets through Hail into bronze.variants
and bronze.vcf_samples.

A path ending in .bed is a PLINK fileset (the .bim and .fam beside it; A2 is taken as REF, as
plink2 writes it); anything else is a VCF.

Each file is fingerprinted (SHA-256) and recorded in ops.ingested_files after its rows, whatever
it holds (a sites-only VCF has no samples but is recorded all the same); a file already there is
skipped, so ingesting the same file twice adds nothing. A file whose rows a killed run committed
without its ledger row is cleaned out and ingested again whole. The records counted in the text
must equal the rows in bronze plus the records Hail could not parse (quarantined), or the file's
rows are taken out again and the job fails.
"""

from __future__ import annotations

import datetime as dt
import glob
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from omicslake import quarantine
from omicslake.config import Config
from omicslake.contracts import Contract, enforce, load_contract
from omicslake.errors import InputError, MachineError, ReconciliationError, machine_error
from omicslake.io import ledger
from omicslake.io.delta import Lake
from omicslake.io.files import sha256
from omicslake.jobs.base import job_main
from omicslake.jobs.spec import JobSpec

SPEC = JobSpec(
    name="ingest_vcf",
    description="Ingest VCF / VCF.bgz files through Hail into bronze.variants and bronze.vcf_samples.",
    after=("generate",),
    config=("jobs.ingest_vcf", "jobs.generate.out", "hail.reference_genome"),
    always_run=True,
    hail=True,
)
NAME = SPEC.name
log = logging.getLogger(__name__)
# The tables a file's rows go to, with the column holding the file's digest.
_FILE_TABLES = {
    "bronze.variants": "file_sha256",
    "bronze.vcf_samples": "file_sha256",
    "quarantine.vcf_variants": "file_sha256",
}


def input_files(cfg: Config) -> list[Path]:
    from omicslake.io.layout import landing_folder

    patterns = cfg.jobs.ingest_vcf.paths or (
        str(landing_folder(cfg.layout, cfg.jobs.generate.out) / "vcf" / "*.vcf.bgz"),
    )
    files: list[Path] = []
    for pattern in patterns:
        matches = sorted(glob.glob(str(Path(pattern).expanduser())))
        if not matches:
            raise InputError(
                f"no VCF matches {pattern!r} (jobs.ingest_vcf.paths); check the path or run `omicslake generate`"
            )
        files += [Path(m).resolve() for m in matches]
    return files


def run(spark: SparkSession, cfg: Config, lake: Lake) -> dict[str, Any]:
    c = cfg.jobs.ingest_vcf
    reference = c.reference_genome or cfg.hail.reference_genome
    reference = None if reference.lower() == "none" else reference
    parts = c.min_partitions or 2 * spark.sparkContext.defaultParallelism
    done = ledger.known(lake, "bronze.variants")
    contracts = (load_contract("bronze.variants"), load_contract("bronze.vcf_samples"))
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    # seconds: per stage, summed over the files, where an ingest spends its time
    stats: dict[str, Any] = {"files": 0, "skipped_files": 0, "variants": 0, "invalid_records": 0, "seconds": {}}
    refused: list[tuple[Path, str]] = []
    for path in input_files(cfg):
        # Each file is its own unit: a refused file leaves nothing in the lake and is recorded in
        # ops.ingested_files with its error; the files after it are still read.
        try:
            if path.suffix == ".bed":
                _ingest_plink(spark, lake, path, reference, parts, done, *contracts, now, stats)
            else:
                _ingest_vcf(spark, cfg, lake, path, reference, parts, done, *contracts, now, stats)
        except (InputError, ReconciliationError) as exc:
            refused.append((path, str(exc)))
            _refuse(lake, path, str(exc), now)
            log.error("%s refused: %s", path.name, exc)
        except Exception as exc:
            machine = exc if isinstance(exc, MachineError) else machine_error(exc, str(path))
            if machine is None:
                raise
            # not the file's fault: no ledger row, the run stops; what the file left is deleted if the
            # JVM still can (else the next run's discard_partial does it before reading the file again)
            try:
                _discard(lake, path)
            except Exception:  # noqa: BLE001 - the JVM that failed may not run a DELETE either
                log.warning("%s: its partial rows are deleted by the next run", path.name)
            if machine is exc:
                raise
            raise machine from exc
    # seconds per stage of the VCF path (PLINK filesets are not split into stages), summed over the files,
    # a refused file's stages included
    stats["seconds"] = {k: round(v, 3) for k, v in stats["seconds"].items()}
    stats["failed_files"] = len(refused)
    stats["failed"] = [{"file": str(p), "error": e} for p, e in refused]
    if refused and c.on_bad_file == "fail_at_end":
        raise InputError(
            f"{len(refused)} of {len(refused) + stats['files'] + stats['skipped_files']} input file(s) refused "
            f"({stats['files']} landed, {stats['skipped_files']} already there); each is in ops.ingested_files with its "
            "error, nothing of it is in the lake, and the next run tries it again. "
            + " | ".join(e for _, e in refused[:5])
            + " (jobs.ingest_vcf.on_bad_file=skip lets the job succeed with refused files)"
        )
    return stats


def _discard(lake: Lake, path: Path) -> tuple[str, list[Path]]:
    """Delete whatever a file (a VCF, or a PLINK fileset by its .bed) left in the file's tables;
    returns its digest and its files."""
    bed = path.suffix == ".bed"
    files = [p for p in ((path, path.with_suffix(".bim"), path.with_suffix(".fam")) if bed else (path,)) if p.exists()]
    if bed:
        import hashlib

        digest = hashlib.sha256("".join(sha256(p) for p in files).encode()).hexdigest()
    else:
        digest = sha256(path) if path.exists() else "missing:" + str(path)
    ledger.discard_partial(lake, digest, _FILE_TABLES)
    return digest, files


def _refuse(lake: Lake, path: Path, error: str, now: dt.datetime) -> None:
    """A refused file: whatever it left is deleted and the ledger says why (status failed)."""
    bed = path.suffix == ".bed"
    digest, files = _discard(lake, path)
    size = sum(p.stat().st_size for p in files)
    source = "plink" if bed else "vcf"
    row = ledger.failed_row(
        "bronze.variants", source, str(path), digest, size, path.parent.name, lake.run_id, now, error
    )
    ledger.record(lake, [row])


@contextmanager
def _stage(stats: dict[str, Any], name: str) -> Iterator[None]:
    """Add the block's wall seconds to ``stats["seconds"][name]`` (rounded once, when the job ends)."""
    t = time.monotonic()
    try:
        yield
    finally:
        stats["seconds"][name] = stats["seconds"].get(name, 0.0) + time.monotonic() - t


def _ingest_vcf(
    spark: SparkSession,
    cfg: Config,
    lake: Lake,
    path: Path,
    reference: str | None,
    parts: int,
    done: set[str],
    variants_contract: Contract,
    samples_contract: Contract,
    now: dt.datetime,
    stats: dict[str, Any],
) -> None:
    """One VCF into bronze.variants, bronze.vcf_samples and quarantine.vcf_variants, then its ledger
    row; InputError (nothing of the file kept by the caller) when it is refused."""
    from hail.utils.java import FatalError
    from py4j.protocol import Py4JJavaError

    from omicslake.genomics import vcf

    c = cfg.jobs.ingest_vcf
    kind = vcf.sniff(path)
    if kind == "gzip" and not c.allow_plain_gzip:
        raise InputError(
            f"{path}: plain gzip, not block-gzipped (BGZF), so it cannot be split and read in parallel. "
            f"Recompress it: `zcat {path.name} | bgzip > {path.stem}.bgz` (from htslib/tabix), or set "
            "jobs.ingest_vcf.allow_plain_gzip=true to read it on one core."
        )
    with _stage(stats, "digest"):
        digest = sha256(path)
    if digest in done:
        log.info("%s: already ingested (sha256 %s...), skipped", path.name, digest[:12])
        stats["skipped_files"] += 1
        return
    with _stage(stats, "discard_partial"):  # a killed run's rows of this file, if any (a scan of its tables)
        ledger.discard_partial(lake, digest, _FILE_TABLES)
    with _stage(stats, "container_and_header"):
        vcf.check_container(path, kind)
        header = vcf.check_header(path, kind)
    try:
        records = vcf.text_records(path, kind, parts, header.lines)
        with _stage(stats, "text_pass"):
            n_text, keys, contigs = vcf.text_stats(records) if c.text_checks else (None, set(), set())
        problem = vcf.contig_problem(path, contigs, reference, dict(c.contig_recoding))
        if problem is not None:
            raise problem
        undeclared = sorted(keys - set(header.info))
        if undeclared:
            raise InputError(
                f"{path}: INFO key(s) {undeclared[:10]} are used by records but not declared in the header, "
                "and would be dropped silently. Declare them (`bcftools annotate --header-lines`) and rerun, "
                "or set jobs.ingest_vcf.text_checks=false to drop them knowingly."
            )
        with _stage(stats, "hail_import_to_bronze"):
            mt = vcf.import_vcf(path, kind, reference, dict(c.contig_recoding), parts)
            rows = vcf.variant_rows(mt, vcf.record_rules(mt, header, c.max_alleles))
            written = lake.write(
                _bronze_rows(rows.to_spark(flatten=False), path, digest, lake.run_id, now, variants_contract),
                "bronze.variants",
                mode="append",
            )
    except InputError:
        raise
    except (FatalError, Py4JJavaError) as exc:  # Hail's JVM side on a record it cannot parse
        machine = machine_error(exc, str(path))
        if machine is not None:  # the JVM, not the file: stop, never record a good file as bad
            raise machine from exc
        # a contig outside the reference (text_checks off), else a record Hail cannot parse
        err = vcf.reference_error(path, kind, exc, reference, dict(c.contig_recoding)) or vcf.hail_error(
            path, kind, exc
        )
        if err is None:  # any other failure reading this file refuses the file, not the whole run
            from omicslake.jobs.base import error_summary

            err = InputError(
                f"{path}: Hail could not read the file ({error_summary(exc)[:300]}). Check it with "
                f"`bcftools view {path.name} > /dev/null`; nothing of it was written"
            )
        raise err from None
    n_variants = written.rows
    with _stage(stats, "samples"):
        samples = spark.createDataFrame(
            [(s, i, str(path), digest, reference, n_variants, lake.run_id, now) for i, s in enumerate(header.samples)],
            samples_contract.struct(),
        )
        lake.write(samples, "bronze.vcf_samples", mode="append")
    with _stage(stats, "quarantine_and_reconcile"):
        mine = (
            lake.read("bronze.variants")
            .where(F.col("file_sha256") == digest)
            .select(*vcf.SITE, "rsid", "qual", "filters", "_invalid_rule", "_invalid_reason")
        )
        flagged = mine.where(F.col("_invalid_rule").isNotNull())
        skipped = None
        if n_text is not None and (n_text != n_variants or flagged.limit(1).count()):
            # The line of each flagged record, and the records Hail skipped (e.g. a REF that is not
            # a base): named, never dropped silently. Only when there is something to name.
            text = records.key_by().select("contig", "position", "ref", "alts", "line").to_spark()
            located, skipped = vcf.match_lines(text, mine if n_text != n_variants else flagged, dict(c.contig_recoding))
            flagged = located.where(F.col("_invalid_rule").isNotNull())
        else:
            flagged = flagged.withColumn("line", F.lit(None).cast("bigint"))
        if skipped is None or n_text == n_variants:
            skipped = spark.createDataFrame(
                [], "contig string, position int, ref string, alts array<string>, line bigint"
            )
        n_q = quarantine.write(
            lake, "quarantine.vcf_variants", vcf.quarantine_rows(flagged, skipped, str(path), digest, lake.run_id)
        )
        if n_text is not None:
            # Counted again from the tables as written: text records = bronze rows + unparsed records.
            n_unparsed = (
                lake.read("quarantine.vcf_variants")
                .where((F.col("file_sha256") == digest) & (F.col("rule") == "unparsed_record"))
                .count()
                if lake.exists("quarantine.vcf_variants")
                else 0
            )
            if n_text != n_variants + n_unparsed:
                ledger.discard_partial(lake, digest, _FILE_TABLES)
                raise ReconciliationError(
                    f"{path}: {n_text} records in the text but {n_variants} rows in bronze.variants and {n_unparsed} "
                    "unparsed records in quarantine.vcf_variants; the file's rows were taken out again. Report this "
                    "with the file (a record Hail reads differently from its text)."
                )
    with _stage(stats, "ledger"):
        ledger.record(
            lake,
            [
                ledger.row(
                    "bronze.variants",
                    "vcf",
                    str(path),
                    digest,
                    path.stat().st_size,
                    path.parent.name,
                    n_variants,
                    n_text,
                    0,
                    lake.run_id,
                    now,
                )
            ],
        )
    stats["files"] += 1
    stats["variants"] += n_variants
    stats["invalid_records"] += n_q
    log.info("%s: %d records (%d quarantined), %d samples", path.name, n_variants, n_q, len(header.samples))


def _bronze_rows(
    df: DataFrame, path: Path, digest: str, run_id: str, now: dt.datetime, contract: Contract
) -> DataFrame:
    """vcf.variant_rows as a DataFrame, with the file, its digest and the run: bronze.variants' shape."""
    return df.select(
        "*",
        F.lit(str(path)).alias("source_file"),
        F.lit(digest).alias("file_sha256"),
        F.lit(run_id).alias("_run_id"),
        F.lit(now).cast("timestamp").alias("_ingested_at"),
    ).transform(enforce(contract))


def _plink_unreadable(exc: Exception, bed: Path) -> NoReturn:
    """Hail failed on a PLINK fileset: MachineError when the JVM or the machine failed, else the
    fileset is refused (InputError naming it and the plink2 check)."""
    from omicslake.jobs.base import error_summary

    machine = machine_error(exc, str(bed))
    if machine is not None:
        raise machine from exc
    raise InputError(
        f"{bed}: Hail could not read the PLINK fileset ({error_summary(exc)[:300]}). Check it with "
        f"`plink2 --bfile {bed.with_suffix('').name} --validate`; nothing of it was written"
    ) from None


def _ingest_plink(
    spark: SparkSession,
    lake: Lake,
    bed: Path,
    reference: str | None,
    parts: int,
    done: set[str],
    variants_contract: Contract,
    samples_contract: Contract,
    now: dt.datetime,
    stats: dict[str, int],
) -> None:
    """One PLINK fileset into bronze (GT only; no QUAL, FILTER or INFO in PLINK); its records that
    break a rule go to quarantine.vcf_variants as a VCF's do (without a line: the .bim has one per
    variant, but the rows are not matched to it)."""
    import hashlib

    from hail.utils.java import FatalError
    from py4j.protocol import Py4JJavaError

    from omicslake.genomics import vcf

    files = (bed, bed.with_suffix(".bim"), bed.with_suffix(".fam"))
    try:
        mt = vcf.import_plink(bed, reference, parts)  # InputError (vcf.check_plink) when the parts do not fit
    except (FatalError, Py4JJavaError) as exc:
        _plink_unreadable(exc, bed)
    digest = hashlib.sha256("".join(sha256(p) for p in files).encode()).hexdigest()
    if digest in done:
        log.info("%s: already ingested, skipped", bed.name)
        stats["skipped_files"] += 1
        return
    ledger.discard_partial(lake, digest, _FILE_TABLES)
    try:
        samples = mt.s.collect()  # sample ids only
        df = _bronze_rows(
            vcf.variant_rows(mt, vcf.plink_rules(mt)).to_spark(flatten=False),
            bed,
            digest,
            lake.run_id,
            now,
            variants_contract,
        )
        written = lake.write(df, "bronze.variants", mode="append")
    except (FatalError, Py4JJavaError) as exc:  # check_plink passed, Hail still could not read it
        _plink_unreadable(exc, bed)
    rows = [(s, i, str(bed), digest, reference, written.rows, lake.run_id, now) for i, s in enumerate(samples)]
    lake.write(spark.createDataFrame(rows, samples_contract.struct()), "bronze.vcf_samples", mode="append")
    flagged = (
        lake.read("bronze.variants")
        .where((F.col("file_sha256") == digest) & F.col("_invalid_rule").isNotNull())
        .select(
            *vcf.SITE,
            "rsid",
            "qual",
            "filters",
            "_invalid_rule",
            "_invalid_reason",
            F.lit(None).cast("bigint").alias("line"),
        )
    )
    none = spark.createDataFrame([], "contig string, position int, ref string, alts array<string>, line bigint")
    n_q = quarantine.write(
        lake, "quarantine.vcf_variants", vcf.quarantine_rows(flagged, none, str(bed), digest, lake.run_id)
    )
    size = sum(p.stat().st_size for p in files)
    ledger.record(
        lake,
        [
            ledger.row(
                "bronze.variants",
                "plink",
                str(bed),
                digest,
                size,
                bed.parent.name,
                written.rows,
                None,
                0,
                lake.run_id,
                now,
            )
        ],
    )
    stats["files"] += 1
    stats["variants"] += written.rows
    stats["invalid_records"] += n_q
    log.info("%s: %d variants (%d quarantined), %d samples (PLINK)", bed.name, written.rows, n_q, len(samples))


def main(argv: Sequence[str] | None = None) -> int:
    return job_main(NAME, argv)
