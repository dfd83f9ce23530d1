"""The ``omicslake`` command: run one job, the whole pipeline, or look at the lake."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pyspark.sql import SparkSession

from omicslake.config import Config
from omicslake.jobs import specs
from omicslake.jobs.base import common_args, run_from_args, with_session

_EPILOG = """examples:
  omicslake pipeline                          whole demo pipeline, local mode, ./lakehouse
  omicslake run generate --set jobs.generate.patients=10000
  omicslake generate --out /data/raw --patients 100000 --samples 2000 --variants 20000 --seed 7
  omicslake gwas --vcf cohort.vcf.bgz --pheno cohort.fam --pheno-col PHENO1 \\
      --covar pcs.tsv --covar-cols PC1,PC2 --model logistic --name t2d
  omicslake tables --set lake.root=/data/lake
  omicslake serve --port 5088                 the champion risk model on http://127.0.0.1:5088/predict
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="omicslake",
        description="Genomic (Hail) and EHR data into Delta Lake bronze/silver/gold, "
        "and Spark MLlib models tracked in MLflow.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p_run = sub.add_parser("run", help="run one job", description="Run one job, audited in ops.runs.")
    p_run.add_argument(
        "job",
        choices=list(specs()),
        help="the job to run: " + "; ".join(f"{s.name}: {s.description}" for s in specs().values()),
    )
    common_args(p_run)

    p_pipe = sub.add_parser(
        "pipeline",
        help="run the jobs of the DAG in dependency order",
        description="Run the DAG: "
        + " -> ".join(specs())
        + ". A job whose config, input tables, files and models are unchanged "
        "since its last successful run is skipped; --dry-run says which would run and why.",
    )
    p_pipe.add_argument("--only", help="comma-separated jobs to run (in DAG order)")
    p_pipe.add_argument("--from", dest="start", help="start at this job")
    p_pipe.add_argument("--dry-run", action="store_true", help="print which jobs would run or skip, and why, and stop")
    p_pipe.add_argument(
        "--force",
        action="store_true",
        help="run every planned job, even one whose inputs are unchanged since its last success",
    )
    p_pipe.add_argument(
        "--break-lease",
        action="store_true",
        help="take the lake's pipeline lease even from a live-looking holder (one known dead on another host)",
    )
    common_args(p_pipe)

    p_tab = sub.add_parser("tables", help="list lake tables with version and row count")
    common_args(p_tab)

    p_gen = sub.add_parser(
        "generate",
        help="write a synthetic cohort (Synthea CSV, FHIR NDJSON, VCF.bgz) with planted truth",
        description="Write raw source files for a synthetic cohort whose truth is known "
        "(manifest.json). Deterministic for a seed.",
    )
    p_gen.add_argument("--out", help="output folder (default: <lake.root>/landing)")
    p_gen.add_argument("--patients", type=int)
    p_gen.add_argument("--samples", type=int, help="genotyped samples")
    p_gen.add_argument("--variants", type=int)
    p_gen.add_argument("--seed", type=int)
    p_gen.add_argument(
        "--messy",
        action="store_true",
        help="turn on the messy-data knobs (duplicates, malformed lines, mixed units, a second batch with corrections and schema drift)",
    )
    common_args(p_gen)

    p_gwas = sub.add_parser(
        "gwas",
        help="association test per variant (like plink2 --glm) -> gold.gwas_<name>, Manhattan/QQ plots",
        description="Linear or logistic regression of a phenotype on each variant's alt-allele dosage, "
        "with covariates. Genotypes from --vcf, --bfile or (neither) silver.genotypes. Missing calls: "
        "'drop' (default) leaves the sample out of that variant's fit, as plink2 does; 'mean' "
        "mean-imputes them and runs Hail's own regression methods.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="PLINK files: .fam (PHENO1 = column 6, 1 = control, 2 = case, -9/0 = missing), "
        ".pheno/.cov with a #FID IID or #IID header. TSV/CSV: a header and a sample id column "
        "(IID, --id-col, or the first column). Samples without a phenotype or covariate are "
        "counted in the run's metrics, never imputed.",
    )
    src = p_gwas.add_mutually_exclusive_group()
    src.add_argument("--vcf", help="VCF / VCF.bgz (default genotypes: silver.genotypes)")
    src.add_argument("--bfile", help="PLINK bed/bim/fam prefix")
    p_gwas.add_argument("--pheno", help="phenotype file (.fam, .pheno, TSV, CSV)")
    p_gwas.add_argument("--pheno-col", help="phenotype column (default PHENO1, the .fam's 6th column)")
    p_gwas.add_argument("--covar", help="covariate file, or a lake table with sample_id such as gold.genetic_pcs")
    p_gwas.add_argument("--covar-cols", help="comma-separated covariate columns, e.g. age,sex,PC1,PC2")
    p_gwas.add_argument("--id-col", help="sample id column of the TSV/CSV files (default: IID, else the first)")
    p_gwas.add_argument("--model", choices=["logistic", "linear"])
    p_gwas.add_argument(
        "--missing", choices=["drop", "mean"], help="missing calls: drop (plink2, default) or mean (Hail)"
    )
    p_gwas.add_argument(
        "--firth", choices=["no", "fallback", "always"], help="Firth regression (default: fallback, as plink2)"
    )
    p_gwas.add_argument("--reference", help="reference genome of the input (GRCh37, GRCh38, none)")
    p_gwas.add_argument("--name", help="results table gold.gwas_<name> (default t2d)")
    p_gwas.add_argument("--plots-dir", help="where the PNGs go (default <lake.root>/reports/gwas_<name>)")
    common_args(p_gwas)

    sub.add_parser("fetch-jars", help="download Delta Lake's jars into the local cache (for offline use)")

    p_sub = sub.add_parser(
        "submit-args",
        help="print the spark-submit options (jars, class path, Kryo) a cluster run needs",
        description="Print the spark-submit options that must be set before the driver JVM starts: "
        "Delta's and Hail's jars, the driver class path, Kryo with Hail's registrator, the Delta SQL "
        "extension. Use: spark-submit $(omicslake submit-args --env cluster) --master spark://HOST:7077 "
        "--py-files dist/omicslake-*.whl jobs/<job>.py --env cluster",
    )
    p_sub.add_argument("--env", default="cluster")
    p_sub.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")

    p_srv = sub.add_parser(
        "serve",
        help="answer risk requests over HTTP on 127.0.0.1 with the champion model (jobs.score.model/alias)",
        description="POST /predict a patient's features as JSON -> calibrated risk, band, top reasons and the model "
        "version; GET /health. Missing, unknown or wrong-typed fields are a 400 naming them. Stop with Ctrl-C.",
    )
    p_srv.add_argument("--port", type=int, help="port on 127.0.0.1 (default jobs.score.serve_port; 0 = any free port)")
    common_args(p_srv)

    p_rep = sub.add_parser("report", help="write the static HTML report of the lake (<lake.root>/reports/report.html)")
    common_args(p_rep)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "run":
        return run_from_args(args.job, args)
    if args.command == "generate":
        for key in ("out", "patients", "samples", "variants", "seed"):
            value = getattr(args, key)
            if value is not None:
                args.overrides.append(f"jobs.generate.{key}={value}")
        if args.messy:
            args.overrides.append("jobs.generate.messy=true")
        return run_from_args("generate", args)
    if args.command == "gwas":
        import json

        for key, dest in (
            ("vcf", "vcf"),
            ("bfile", "bfile"),
            ("pheno", "pheno"),
            ("pheno_col", "pheno_col"),
            ("covar", "covar"),
            ("id_col", "id_col"),
            ("model", "model"),
            ("missing", "missing"),
            ("firth", "firth"),
            ("reference", "reference_genome"),
            ("name", "name"),
            ("plots_dir", "plots_dir"),
        ):
            value = getattr(args, key)
            if value is not None:
                args.overrides.append(f"jobs.gwas.{dest}={json.dumps(value)}")
        if args.covar_cols is not None:
            cols = [c.strip() for c in args.covar_cols.split(",") if c.strip()]
            args.overrides.append(f"jobs.gwas.covar_cols={json.dumps(cols)}")
        return run_from_args("gwas", args)
    if args.command == "fetch-jars":
        from omicslake.config import load_config
        from omicslake.jars import delta_jars

        cfg = load_config("local")
        for path in delta_jars(cfg.delta.version, cfg.delta.scala):
            print(path)
        return 0
    if args.command == "tables":
        return _tables(args)
    if args.command == "report":
        return run_from_args("report", args)
    if args.command == "serve":
        return _serve(args)
    if args.command == "submit-args":
        import shlex

        from omicslake.config import load_config
        from omicslake.session import spark_conf

        conf = spark_conf(load_config(args.env, overrides=args.overrides))
        out = []
        if "spark.jars" in conf:
            out += ["--jars", conf.pop("spark.jars")]
        if "spark.driver.extraClassPath" in conf:
            out += ["--driver-class-path", conf.pop("spark.driver.extraClassPath")]
        for key in (
            "spark.executor.extraClassPath",
            "spark.serializer",
            "spark.kryo.registrator",
            "spark.sql.extensions",
            "spark.sql.catalog.spark_catalog",
        ):
            if key in conf:
                out += ["--conf", f"{key}={conf[key]}"]
        print(" ".join(shlex.quote(x) for x in out))
        return 0
    if args.command == "pipeline":
        from omicslake.pipeline import run_pipeline_from_args

        return run_pipeline_from_args(args)
    raise AssertionError(args.command)


def _serve(args: argparse.Namespace) -> int:
    from omicslake.jobs.base import config_from_args, setup_logging
    from omicslake.ml.serve import load_service, make_server
    from omicslake.ml.tracking import scoring_model

    setup_logging(args.log_level)
    cfg = config_from_args(args, job="score")
    c = cfg.jobs.score
    name, mv = scoring_model(cfg)  # the version jobs.score names (version or alias)
    service = load_service(name, mv.version, c.band_thresholds, c.band_names, c.top_k)
    server = make_server(service, "127.0.0.1", cfg.jobs.score.serve_port if args.port is None else args.port)
    print(
        f"serving {service.name} v{service.version} on http://127.0.0.1:{server.server_address[1]}/predict", flush=True
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def _tables(args: argparse.Namespace) -> int:
    from omicslake.io.delta import Lake

    def action(spark: SparkSession, cfg: Config) -> int:
        rows = Lake(spark, cfg).tables()
        print(f"{'table':<36}{'version':>8}{'rows':>14}")
        for name, version, count in rows:
            print(f"{name:<36}{version:>8}{count:>14}")
        if not rows:
            print(f"(no tables under {cfg.layout.root})")
        return 0

    return with_session(args, "tables", action)


if __name__ == "__main__":
    sys.exit(main())
