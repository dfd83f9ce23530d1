"""One bad file does not stop the rest (issue 15): a multi-file ingest_vcf lands every good file,
refuses each bad one with an error naming it (in ops.ingested_files, nothing of it in the lake),
and its exit says whether any was refused (jobs.ingest_vcf.on_bad_file). A VCF on another
reference (contigs 1..22 given GRCh38) is refused with the contigs found and the reference that fits.

Hand-made VCFs, written by the test; every count is read back from the tables."""

from __future__ import annotations

from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from omicslake.config import Config
from omicslake.errors import InputError
from omicslake.io.delta import Lake
from omicslake.jobs.base import execute

HEAD = (
    "##fileformat=VCFv4.2\n"
    '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n'
    "##contig=<ID={c}>\n"
    "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t{samples}\n"
)


def vcf_text(contig: str, positions: list[int], samples: list[str]) -> str:
    calls = "\t".join(["0/1"] * len(samples))
    body = "".join(f"{contig}\t{p}\t.\tA\tG\t50\tPASS\t.\tGT\t{calls}\n" for p in positions)
    return HEAD.format(c=contig, samples="\t".join(samples)) + body


@pytest.fixture()
def inputs(tmp_path: Path) -> dict[str, Path]:
    d = tmp_path / "in"
    d.mkdir()
    files = {
        "a_good": vcf_text("chr1", [100, 200, 300], ["s1", "s2", "s3"]),
        "b_dup_samples": vcf_text("chr1", [400], ["s1", "s1", "s3"]),
        "c_grch37": vcf_text("1", [500, 600], ["s1", "s2", "s3"]),
        "d_good": vcf_text("chr2", [700, 800], ["s1", "s2", "s3"]),
        "e_truncated": "",  # a zero-byte file
    }
    out = {}
    for name, text in files.items():
        p = d / f"{name}.vcf"
        p.write_text(text)
        out[name] = p
    return out


def _variants_by_file(lake: Lake) -> dict[str, int]:
    rows = lake.read("bronze.variants").groupBy("source_file").count().collect()  # one row per file
    return {Path(r.source_file).stem: int(r["count"]) for r in rows}


def test_good_files_land_bad_ones_are_refused_and_named(
    spark: SparkSession, cfg: Config, inputs: dict[str, Path]
) -> None:
    run_cfg = cfg.replace(**{"jobs.ingest_vcf.paths": (str(next(iter(inputs.values())).parent / "*.vcf"),)})
    with pytest.raises(InputError) as err:
        execute(spark, run_cfg, "ingest_vcf", run_id="bad1")
    msg = str(err.value)
    assert "3 of 5 input file(s) refused (2 landed" in msg
    for bad in ("b_dup_samples", "c_grch37", "e_truncated"):
        assert bad in msg
    lake = Lake(spark, run_cfg)
    # the good files are whole in bronze, the bad ones left nothing anywhere
    assert _variants_by_file(lake) == {"a_good": 3, "d_good": 2}
    samples = lake.read("bronze.vcf_samples").groupBy("source_file").count().collect()
    assert {Path(r.source_file).stem: r["count"] for r in samples} == {"a_good": 3, "d_good": 3}
    if lake.exists("quarantine.vcf_variants"):
        assert lake.read("quarantine.vcf_variants").where(~F.col("source_file").rlike("(a|d)_good")).count() == 0
    ledger = {Path(r.path).stem: r for r in lake.read("ops.ingested_files").collect()}  # five rows
    assert {k: r.status for k, r in ledger.items()} == {
        "a_good": "landed",
        "d_good": "landed",
        "b_dup_samples": "failed",
        "c_grch37": "failed",
        "e_truncated": "failed",
    }
    assert "sample id(s) ['s1'] appear more than once" in ledger["b_dup_samples"].error
    ref = ledger["c_grch37"].error
    assert "contig(s) 1 are not in the reference genome GRCh38" in ref and "GRCh37" in ref and "contig_recoding" in ref
    assert "c_grch37.vcf" in ref and "Nothing of this file was written" in ref
    assert "e_truncated.vcf" in ledger["e_truncated"].error
    runs = lake.read("ops.runs").where(F.col("run_id") == "bad1").collect()
    assert [r.status for r in runs] == ["failed"]

    # skip: the same files again -> the good ones are skipped, the bad ones refused again, the job succeeds
    before = lake.version("bronze.variants")
    skip_cfg = run_cfg.replace(**{"jobs.ingest_vcf.on_bad_file": "skip"})
    res = execute(spark, skip_cfg, "ingest_vcf", run_id="bad2")
    assert res.status == "succeeded"
    assert (res.metrics["files"], res.metrics["skipped_files"], res.metrics["failed_files"]) == (0, 2, 3)
    assert sorted(Path(f["file"]).stem for f in res.metrics["failed"]) == ["b_dup_samples", "c_grch37", "e_truncated"]
    assert lake.version("bronze.variants") == before

    # the GRCh37 file with the reference it fits: it lands, and the ledger says so
    grch37 = skip_cfg.replace(
        **{"jobs.ingest_vcf.paths": (str(inputs["c_grch37"]),), "jobs.ingest_vcf.reference_genome": "GRCh37"}
    )
    res = execute(spark, grch37, "ingest_vcf", run_id="bad3")
    assert (res.metrics["files"], res.metrics["failed_files"]) == (1, 0)
    assert _variants_by_file(lake) == {"a_good": 3, "d_good": 2, "c_grch37": 2}
    status = lake.read("ops.ingested_files").where(F.col("path") == str(inputs["c_grch37"])).collect()
    assert [(r.status, r.error) for r in status] == [("landed", None)]


# what the JVM printed in a CI run whose code cache filled up while Hail read a good VCF
CODE_CACHE = (
    "VirtualMachineError: Out of space in CodeCache for method handle intrinsic\n"
    "\tat is.hail.io.vcf.MatrixVCFReader.apply(LoadVCF.scala:1)"
)


def test_a_jvm_failure_stops_the_job_and_never_marks_a_good_file_bad(
    spark: SparkSession, cfg: Config, inputs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CI run once recorded a good VCF as refused ("Hail could not read the file ... check it with
    bcftools") when the JVM's code cache was full. The machine's failure stops the job instead: no
    ledger row says the file is bad, what the file left is deleted, and the next run lands it."""
    from hail.utils.java import FatalError

    from omicslake.errors import MachineError

    d = inputs["a_good"].parent
    for name in ("b_dup_samples", "c_grch37", "e_truncated"):
        inputs[name].unlink()
    run_cfg = cfg.replace(**{"jobs.ingest_vcf.paths": (str(d / "*.vcf"),)})
    real_write = Lake.write
    calls: list[str] = []

    def failing_write(self: Lake, df, table: str, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(table)
        if table == "bronze.vcf_samples" and calls.count(table) == 2:  # d_good's, after its variants committed
            raise FatalError(CODE_CACHE)
        return real_write(self, df, table, *args, **kwargs)

    monkeypatch.setattr(Lake, "write", failing_write)
    with pytest.raises(MachineError) as err:
        execute(spark, run_cfg, "ingest_vcf", run_id="jvm1")
    monkeypatch.setattr(Lake, "write", real_write)
    msg = str(err.value)
    assert "d_good.vcf" in msg and "not the file's fault" in msg and "Out of space in CodeCache" in msg
    lake = Lake(spark, run_cfg)
    assert _variants_by_file(lake) == {"a_good": 3}  # d_good's committed variants were deleted
    ledger = {Path(r.path).stem: r.status for r in lake.read("ops.ingested_files").collect()}
    assert ledger == {"a_good": "landed"}  # no "failed" row for a good file
    assert [r.status for r in lake.read("ops.runs").where(F.col("run_id") == "jvm1").collect()] == ["failed"]

    res = execute(spark, run_cfg, "ingest_vcf", run_id="jvm2")
    assert (res.metrics["files"], res.metrics["skipped_files"], res.metrics["failed_files"]) == (1, 1, 0)
    assert _variants_by_file(lake) == {"a_good": 3, "d_good": 2}
    samples = lake.read("bronze.vcf_samples").groupBy("source_file").count().collect()
    assert {Path(r.source_file).stem: r["count"] for r in samples} == {"a_good": 3, "d_good": 3}


def test_a_java_error_chain_is_told_apart_by_its_cause(spark: SparkSession) -> None:
    """Real Java exceptions through py4j: an ExecutionException caused by an OutOfMemoryError is the
    machine's failure, one caused by a record problem is not; error_summary names the root cause."""
    from omicslake.errors import java_chain, machine_error
    from omicslake.jobs.base import error_summary

    jvm = spark.sparkContext._jvm
    got = {}
    for cause in (jvm.java.lang.OutOfMemoryError("Java heap space"), jvm.java.lang.IllegalStateException("bad")):
        future = jvm.java.util.concurrent.CompletableFuture()
        future.completeExceptionally(cause)
        with pytest.raises(Exception) as err:
            future.get()
        got[str(cause.getClass().getSimpleName())] = (
            len(java_chain(err.value)),
            error_summary(err.value),
            machine_error(err.value, "f.vcf"),
        )
    n, summary, machine = got["OutOfMemoryError"]
    assert (n, summary) == (2, "OutOfMemoryError: Java heap space")
    assert machine is not None and str(machine).startswith(
        "f.vcf: the JVM or the machine failed while reading it (java.util.concurrent.ExecutionException: "
        "java.lang.OutOfMemoryError: Java heap space), which is not the file's fault"
    )
    assert got["IllegalStateException"] == (2, "IllegalStateException: bad", None)


def test_gwas_on_a_vcf_of_another_reference_names_the_contigs(spark: SparkSession, cfg: Config, tmp_path: Path) -> None:
    """`omicslake gwas --vcf` on contigs 1..22 with the GRCh38 default: an InputError naming the
    contigs and the reference that fits, not Hail's Java stack trace."""
    samples = [f"s{i}" for i in range(20)]
    vcf = tmp_path / "grch37.vcf"
    vcf.write_text(
        vcf_text("1", [1000, 2000, 3000], samples).replace("##contig=<ID=1>\n", "##contig=<ID=1>\n##contig=<ID=2>\n")
    )
    pheno = tmp_path / "pheno.tsv"
    pheno.write_text("IID\ty\n" + "".join(f"{s}\t{i % 2}\n" for i, s in enumerate(samples)))
    run_cfg = cfg.replace(**{"jobs.gwas.vcf": str(vcf), "jobs.gwas.pheno": str(pheno), "jobs.gwas.pheno_col": "y"})
    with pytest.raises(InputError) as err:
        execute(spark, run_cfg, "gwas", run_id="g37")
    msg = str(err.value)
    assert "grch37.vcf: contig(s) 1, 2 are not in the reference genome GRCh38" in msg  # records and ##contig lines
    assert "--reference GRCh37" in msg and "Traceback" not in msg and "is.hail" not in msg
