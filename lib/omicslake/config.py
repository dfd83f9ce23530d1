"""Typed, frozen configuration from layered YAML.

Layers, later ones winning: ``conf/base.yaml``, ``conf/<env>.yaml``, ``conf/jobs/<job>.yaml``
(merged under ``jobs.<job>``), any ``--conf-file`` the user gives, then ``--set key=value``
overrides. The merged mapping is checked against the dataclasses below: an unknown key or a
value of the wrong type is a :class:`ConfigError` naming the dotted key and the file that set it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Union, get_args, get_origin

import yaml

from omicslake.errors import ConfigError
from omicslake.resources import resource_dir

if TYPE_CHECKING:
    from omicslake.io.layout import Layout

# --------------------------------------------------------------------------------------------
# The schema of the configuration. Defaults here are the embedded defaults of local mode.


@dataclass(frozen=True)
class SparkConfig:
    # local: a session in this process; cluster: spark-submit's master; databricks: the runtime's session
    mode: Literal["local", "cluster", "databricks"] = "local"
    master: str | None = "local[2]"  # Spark master URL in local mode (cluster mode takes spark-submit's)
    app_name: str = "omicslake"  # the Spark application name
    driver_memory: str = "6g"  # driver heap in local mode (spark-submit's --driver-memory on a cluster)
    shuffle_partitions: int = 4  # spark.sql.shuffle.partitions
    ui: bool = False  # start the Spark UI
    conf: dict[str, str] = field(default_factory=dict)  # any other Spark settings, key -> value


@dataclass(frozen=True)
class DeltaConfig:
    version: str = "3.3.2"  # Delta Lake version whose jars are fetched (must match delta-spark)
    scala: str = "2.12"  # Scala version of the jars
    maven_repo: str = "https://repo1.maven.org/maven2"  # where the jars come from
    jar_cache: str | None = None  # default: $OMICSLAKE_JAR_CACHE or ~/.cache/omicslake/jars


@dataclass(frozen=True)
class HailConfig:
    enabled: bool = True  # initialise Hail on the session (the genomic jobs need it)
    reference_genome: Literal["GRCh37", "GRCh38"] = "GRCh38"  # default reference of the genomic inputs
    tmp_dir: str | None = None  # default: <lake.root>/_tmp/hail
    log_dir: str | None = None  # default: <lake.root>/_logs


@dataclass(frozen=True)
class LakeConfig:
    # the lake's folder or object-store URI (s3a://bucket/lake, abfss://..., gs://..., hdfs://...); every table, landing/, reports/ and mlflow/ live
    # under it
    root: str = "./lakehouse"
    # fs.s3a.endpoint of an S3-compatible server (e.g. http://127.0.0.1:9000); default $AWS_ENDPOINT_URL_S3 / $AWS_ENDPOINT_URL, else AWS
    s3_endpoint: str | None = None
    s3_path_style: bool = False  # fs.s3a.path.style.access: bucket in the path, not the host name (most S3-compatible servers)
    # add the hadoop-aws connector to the session even when lake.root is not s3a:// (inputs on S3); credentials come from the AWS_* environment
    # variables, never from config
    s3a_jars: bool = False
    # When set, layer L maps to the metastore schema ``<catalog>.<schemas[L] or L>``
    # (Unity Catalog / Hive metastore) instead of a folder under root.
    catalog: str | None = None
    schemas: dict[str, str] = field(default_factory=dict)  # layer -> metastore schema (with catalog); default: the layer's name
    layers: tuple[str, ...] = ("bronze", "silver", "gold", "quarantine", "ops")  # the layers a table name may start with
    # every write is checked against its table's contract in schemas/ (off: ad-hoc tables)
    enforce_contracts: bool = True
    # a write that loses Delta's optimistic-concurrency check to another writer (a ConcurrentAppend/Delete/...
    # exception) is tried again this many times (each a new read of the table; the write's transaction id makes a
    # retry of a committed write a no-op); then it fails naming the table and the conflict
    conflict_retries: int = 3
    lease_hours: float = 12.0  # how long a pipeline's lease on the lake lasts (checked before each job, renewed once half is gone)


@dataclass(frozen=True)
class MlflowConfig:
    tracking_uri: str | None = None  # default: sqlite:///<lake.root>/mlflow/mlflow.db
    registry_uri: str | None = None  # model registry URI; default: the tracking URI (Databricks: databricks-uc)
    experiment: str = "omicslake"  # the MLflow experiment the model jobs log to


@dataclass(frozen=True)
class GenerateConfig:
    out: str | None = None  # default: <lake.root>/landing
    patients: int = 2000  # synthetic patients
    samples: int = 600  # genotyped samples (a subset of the patients)
    variants: int = 3000  # variants in the VCF
    seed: int = 42  # the same seed writes the same files
    messy: bool = False  # duplicates, malformed lines, mixed units, a second batch with corrections and schema drift
    partitions: int = 4  # Spark partitions (files) per generated table
    survey_share: float = 0.1  # share of the patients in the REDCap-style study (redcap/omicslake_study/); 0: no survey
    omics_features: int = 0  # genes (RNA-seq) and CpGs (methylation) per genotyped sample, T2D/ancestry effects planted; 0: none
    exposure_share: float = 0.0  # share of patients whose planted drug exposure and outcomes (synth/exposure.py) are in the EHR; 0: none


@dataclass(frozen=True)
class IngestVcfConfig:
    paths: tuple[str, ...] = ()  # files or globs; default: <landing>/vcf/*.vcf.bgz
    reference_genome: str | None = None  # default: hail.reference_genome; "none" for no reference
    contig_recoding: dict[str, str] = field(default_factory=dict)  # contig renames given to Hail, e.g. {'1': 'chr1'}
    allow_plain_gzip: bool = False  # read a plain-gzip VCF on one core instead of refusing it
    max_alleles: int = 32  # records with more alleles are quarantined (too_many_alleles)
    text_checks: bool = True  # one light pass over the raw text: undeclared INFO keys, skipped records
    min_partitions: int | None = None  # default: 2 x Spark's default parallelism
    # a refused file (bad header, truncated, wrong reference...): fail_at_end: the other files land, then the job fails
    # naming every refused file; skip: the same, and the job succeeds (the refused files are in ops.ingested_files)
    on_bad_file: Literal["fail_at_end", "skip"] = "fail_at_end"


@dataclass(frozen=True)
class GenomicQcConfig:
    source_files: tuple[str, ...] = ()  # default: the latest ingested file and its shards (same samples)
    sample_min_call_rate: float = 0.95  # samples below fail QC
    sample_min_dp_mean: float = 0.0  # samples with a lower mean depth fail QC
    sample_max_het_hom_ratio: float = 10.0  # samples with a higher het/hom-var ratio fail QC
    variant_min_call_rate: float = 0.95  # variants below fail QC (on the samples that pass)
    variant_min_maf: float = 0.0  # variants with a lower minor allele frequency fail QC
    variant_min_hwe_p: float = 1e-10  # loose: a multi-ancestry cohort deviates from HWE (Wahlund)
    reference_genome: str | None = None  # default: hail.reference_genome; "none" for no reference


@dataclass(frozen=True)
class GeneticFeaturesConfig:
    n_pcs: int = 10  # principal components in gold.genetic_pcs
    ld_r2: float = 0.2  # LD pruning threshold (r^2) before PCA
    ld_window_bp: int = 500_000  # LD pruning window
    min_maf_for_pca: float = 0.05  # variants used for PCA
    prs_weights: str | None = None  # TSV: contig, position, effect_allele, other_allele, weight; default landing/prs/*.tsv
    prs_name: str = "t2d"  # score_name in gold.prs; the default weights file is landing/prs/<name>_weights.tsv


@dataclass(frozen=True)
class IngestEhrConfig:
    sources: tuple[Literal["synthea", "fhir", "omop", "sample_link"], ...] = ("synthea", "fhir", "sample_link")  # which raw sources to land
    synthea_dir: str | None = None  # default <landing>/synthea (batch folders inside)
    fhir_dir: str | None = None  # default <landing>/fhir
    omop_dir: str | None = None  # OMOP CDM 5.4 CSV export (PERSON.csv, VISIT_OCCURRENCE.csv, ...); no default
    sample_link: str | None = None  # default <landing>/sample_link.csv
    reingest_changed: bool = False  # a file seen before with other contents: re-read it (else reported, skipped)
    # a refused file (no header, not the table's columns, lines lost between file and bronze...): fail_at_end: the other
    # files land, then the job fails naming every refused file; skip: the same, and the job succeeds (they are in
    # ops.ingested_files with status failed and their error, and the next run tries them again)
    on_bad_file: Literal["fail_at_end", "skip"] = "fail_at_end"


@dataclass(frozen=True)
class ConformEhrConfig:
    source: Literal["synthea", "fhir", "omop"] = "synthea"  # the system silver is built from (its bronze tables)
    key_env: str = "OMICSLAKE_PSEUDONYM_KEY"  # environment variable holding the HMAC key
    secret_scope: str | None = None  # Databricks: dbutils.secrets.get(secret_scope, secret_key)
    secret_key: str = "pseudonym-key"  # the secret's key in secret_scope
    date_shift: bool = False  # shift every date of a patient by the same keyed offset
    date_shift_max_days: int = 365  # the keyed offset moves dates back 1 to this many days (never forward)
    reference_date: str | None = None  # for ages (90+ top-coding); default: today
    concepts: str | None = None  # OMOP CONCEPT.csv; default: schemas/vocab/concept.csv
    units: str | None = None  # default: schemas/vocab/units.yaml
    # rows read != rows written + quarantined + duplicates: fail the job (restoring the table) or
    # record it as a failed expectation in ops.dq_results and go on
    on_mismatch: Literal["fail", "record"] = "fail"
    # bronze rows per partition of a table's de-duplication; a table of more rows than this x
    # spark.shuffle_partitions gets more partitions and is staged once as Parquet under <lake>/_tmp
    rows_per_partition: int = 500_000


@dataclass(frozen=True)
class BuildCohortConfig:
    cohorts: tuple[str, ...] = ("t2d_incident", "readmission_30d")  # conf/cohorts/<name>.yaml or paths
    end_of_data: str | None = None  # censoring date for everyone; default: the latest event date in silver
    table1: bool = True  # gold.table1_<name> and <lake>/reports/table1_<name>.md


@dataclass(frozen=True)
class TrainConfig:
    cohort: str = "t2d_incident"  # trains on gold.features_<cohort>
    input_version: int | None = None  # Delta version of the features table (time travel); default: current
    model: Literal["logistic", "random_forest", "gbt"] = "logistic"  # the MLlib classifier
    include: tuple[str, ...] = ("*",)  # feature columns (glob patterns)
    exclude: tuple[str, ...] = ("cond_t2d", "charlson_diabetes", "drug_biguanide_*")  # leave out (glob patterns)
    test_fraction: float = 0.3  # held-out share of patients (hashed on person_key)
    seed: int = 7  # seed of the split and the models
    class_weights: bool = True  # balanced weights for the rarer class (training only: the risk is recalibrated)
    calibration: Literal["platt", "isotonic", "none"] = "platt"  # recalibration of the output on the calibration split
    calibration_fraction: float = 0.15  # share of patients (hashed, out of training) that fits the calibration; 0 with none
    grid: dict[str, tuple[Any, ...]] = field(default_factory=dict)  # MLlib param -> values; empty: the model's default grid
    folds: int = 3  # cross-validation folds of the training split that choose among the grid (>= 2)
    registered_model: str | None = None  # default omicslake_<cohort>_<model>
    alias: str | None = "champion"  # set on the new version (none: register only)


@dataclass(frozen=True)
class ScoreConfig:
    cohort: str = "t2d_incident"  # scores gold.features_<cohort>
    model: str | None = None  # registered model name; default omicslake_<cohort>_logistic
    version: int | None = None  # a model version, or
    alias: str = "champion"  # a model alias (used when version is not set)
    band_thresholds: tuple[float, ...] = (0.05, 0.15)  # risk bands: below the 1st -> 1st name, ...; at or above the last -> last name
    band_names: tuple[str, ...] = ("low", "moderate", "high")  # one more name than thresholds
    top_k: int = 3  # reasons (largest contributions) written per patient
    psi_warn: float = 0.2  # population stability index above which a feature or the risk has drifted (warning)
    serve_port: int = 5088  # omicslake serve listens on 127.0.0.1:<port>
    page_rows: int = 500  # patients (highest risks first) on <lake>/reports/risk_<model>.html; 0: no page
    page_lab_years: int = 3  # recent labs shown per patient: this many years before the feature table's index dates


@dataclass(frozen=True)
class ClusterConfig:
    cohort: str = "t2d_incident"  # clusters the persons of gold.features_<cohort>
    algorithm: Literal["kmeans", "bisecting"] = "kmeans"  # MLlib k-means or bisecting k-means
    k: tuple[int, ...] = (2, 3, 4, 5, 6)  # candidate numbers of clusters; the best silhouette wins
    include: tuple[str, ...] = ("*",)  # feature columns (glob patterns)
    exclude: tuple[str, ...] = ("has_genome", "pc[0-9]*", "prs")  # clinical phenotypes: genetics left out
    max_iter: int = 50  # iterations per fit
    seed: int = 7  # seed of the fits


@dataclass(frozen=True)
class SurvivalConfig:
    cohort: str = "t2d_incident"  # time to the cohort's outcome, censored (gold.cohort_<cohort> time_days, event)
    model: Literal["cox", "aft"] = "cox"  # cox: ridge-penalised Cox (partial likelihood, Newton-Raphson); aft: MLlib Weibull AFT
    penalizer: float = 0.01  # cox: ridge penalty as lifelines' CoxPHFitter(penalizer=, l1_ratio=0), on the standardised features
    ties: Literal["efron", "breslow"] = "efron"  # cox: handling of tied event times
    horizon_days: int | None = None  # calibration and predicted_risk at this time; default: the longest training follow-up
    calibration_groups: int = 10  # calibration: groups (quantiles) of held-out predicted risk
    include: tuple[str, ...] = ("*",)  # feature columns (glob patterns)
    exclude: tuple[str, ...] = ("cond_t2d", "charlson_diabetes", "drug_biguanide_*")  # feature columns left out (glob patterns)
    test_fraction: float = 0.3  # same hashed patient-level split as train
    seed: int = 7  # seed of the split and the fit
    registered_model: str | None = None  # default omicslake_<cohort>_<model>
    alias: str | None = "champion"  # set on the new version (none: register only)


@dataclass(frozen=True)
class MaintainConfig:
    tables: tuple[str, ...] = ()  # <layer>.<table> to maintain; empty: every Delta table of the lake
    optimize: bool = True  # OPTIMIZE: compact small files (bin-packing), or Z-order where zorder names columns
    zorder: dict[str, tuple[str, ...]] = field(default_factory=dict)  # table -> Z-order columns, e.g. {'silver.measurement': ['person_key']}
    min_files: int = 2  # optimize only tables with at least this many data files
    vacuum: bool = True  # VACUUM: delete data files no version within the retention still needs
    retention_hours: float = 168.0  # time travel keeps working this far back; under 168 (7 days) is refused unless force_retention
    force_retention: bool = False  # allow a retention under 7 days (a reader or a time travel older than it then fails)


@dataclass(frozen=True)
class GwasConfig:
    name: str = "t2d"  # results go to gold.gwas_<name>
    vcf: str | None = None  # genotypes: a VCF, or
    bfile: str | None = None  # a PLINK bed/bim/fam prefix, or (neither) silver.genotypes
    pheno: str | None = None  # .fam / .pheno / TSV / CSV with a sample id column; none: the cohort's label
    cohort: str = "t2d_incident"  # without pheno: gold.cohort_<cohort>.label of consented, linked samples
    pheno_col: str = "PHENO1"  # phenotype column of the pheno file
    covar: str | None = None  # a file like pheno, or a lake table with sample_id (e.g. gold.genetic_pcs)
    covar_cols: tuple[str, ...] = ()  # covariate columns of the covar file
    id_col: str | None = None  # default: IID if present, else the first column
    model: Literal["logistic", "linear"] = "logistic"  # logistic for a binary phenotype, linear for a quantitative one
    missing: Literal["drop", "mean"] = "drop"  # drop: plink2's way; mean: Hail's mean imputation
    firth: Literal["no", "fallback", "always"] = "fallback"  # Firth's penalised regression: never, when the Wald fit fails (plink2's default), always
    reference_genome: str | None = None  # default: hail.reference_genome; "none" for none
    plots_dir: str | None = None  # default: <lake.root>/reports/gwas_<name>


@dataclass(frozen=True)
class IngestSurveyConfig:
    root: str | None = None  # folder of REDCap projects, one subfolder per project; default <landing>/redcap
    projects: tuple[str, ...] = ()  # project subfolders to land; empty: every subfolder of root
    dictionary_glob: str = "*ictionary*.csv"  # a project's data dictionary file(s) (the newest name in sort order wins)
    linkage: str = "linkage.csv"  # per project: record id -> source patient id (columns record_id, patient_id); optional


@dataclass(frozen=True)
class ConformSurveyConfig:
    projects: tuple[str, ...] = ()  # projects conformed; empty: every project in bronze.survey_records
    wide_tables: bool = True  # also write silver.survey_<instrument> (one row per participant, event, instance)


@dataclass(frozen=True)
class VisitWindowConfig:
    event: str  # the event whose visit date is checked (redcap_event_name), e.g. followup_arm_1
    field: str  # its date field, e.g. visit_date (every instance of a repeating instrument is checked)
    anchor_event: str  # the event of the date the window counts from, e.g. baseline_arm_1
    anchor_field: str  # that date field, e.g. consent_date
    min_days: int  # a visit earlier than this many days after the anchor is a deviation (early)
    max_days: int  # later than this: late


@dataclass(frozen=True)
class PsychometricsConfig:
    scales_dir: str | None = None  # folder of scale definitions (*.yaml); default conf/scales
    ci: float = 0.95  # confidence level of Cronbach's alpha's interval (Feldt, as pingouin)
    parallel_iterations: int = 100  # random data sets of the parallel analysis (EFA factor count)
    seed: int = 7  # seed of the parallel analysis
    retest_events: tuple[str, ...] = ()  # two events whose scale scores give the test-retest ICC; empty: first two events
    # study QA: protocol visit windows -> gold.survey_visit_windows (the default fits the generated study)
    visit_windows: tuple[VisitWindowConfig, ...] = (
        VisitWindowConfig("followup_arm_1", "visit_date", "baseline_arm_1", "consent_date", 180, 540),
    )
    enrolment_field: str | None = "consent_date"  # a date field whose first value per participant dates enrolment -> gold.survey_enrolment


@dataclass(frozen=True)
class OmicsFileConfig:
    path: str  # a matrix file or a glob of them
    assay: str  # assay name (letters, digits, _): bronze rows carry it; omics_qc writes silver.omics_<assay>
    assay_type: Literal["rnaseq_counts", "methylation_beta", "proteomics_intensity", "microbiome_counts"]  # checks and normalisation
    format: Literal["tsv", "csv", "gct", "h5ad", "biom"]  # tsv/csv also read featureCounts output and GEO series matrices, gzipped or not
    meta_columns: tuple[str, ...] = ()  # annotation columns of a tsv/csv matrix (featureCounts' are recognised without)


@dataclass(frozen=True)
class IngestOmicsConfig:
    files: tuple[OmicsFileConfig, ...] = ()  # each {path, assay, assay_type, format, meta_columns}; empty: <landing>/omics/files.yaml if any
    block_rows: int = 1000  # features read, converted and staged at a time (bounds the driver's memory)
    on_bad_file: Literal["fail_at_end", "skip"] = "fail_at_end"  # after every file was tried, fail the job when one was refused (or let it succeed)


@dataclass(frozen=True)
class OmicsQcConfig:
    assays: tuple[str, ...] = ()  # assays of bronze.omics_features to QC and normalise; empty: every assay there
    min_library_size: float = 0.0  # counts: samples whose total count is lower fail (library_size)
    min_detected_fraction: float = 0.0  # samples with fewer features detected (count > 0 / value present), as a share of the features, fail
    max_sample_missing: float = 0.5  # samples missing more than this share of the features fail
    max_feature_missing: float = 0.5  # features missing in more than this share of the passing samples fail
    min_count: float = 1.0  # counts: a feature is expressed in a sample at or above this count
    min_expressed_fraction: float = 0.1  # counts: features expressed in fewer than this share of the samples fail (low_counts)
    min_variance: float = 0.0  # features whose normalised values vary less (sample variance) fail (low_variance)
    prior_count: float = 0.5  # log2 CPM = log2((count + prior) / (library size + 1) * 1e6) (limma-voom's)
    beta_offset: float = 1e-6  # methylation: betas are clipped to [offset, 1 - offset] before M = log2(b / (1 - b))
    pseudocount: float = 1.0  # microbiome: CLR = ln(count + pseudocount) minus its mean over the sample's features
    require_link: bool = True  # an assay none of whose samples is in silver.sample_link is refused (when the table exists)
    sample_meta_keys: tuple[str, ...] = ()  # sample metadata keys copied to silver (the rest stays in bronze: it may identify donors)
    # PCA outliers (rule pca_outlier, after normalisation; the assay is then normalised again without them): a sample
    # further than pca_outlier_z robust SDs (1.4826 x MAD) from the median on one of the first pca_outlier_pcs PCs of the
    # pca_features most variable features fails. 0 PCs: off, the default (a minority ancestry or batch is a legitimate
    # cluster that a robust z on a bimodal PC would flag: set it once the assay's PCA plot was looked at)
    pca_outlier_pcs: int = 0
    pca_outlier_z: float = 6.0  # pca_outlier: a sample this many robust SDs (1.4826 x MAD) from a PC's median fails
    pca_features: int = 1000  # pca_outlier: the PCA uses this many features, the most variable after normalisation
    # the features are spread over partitions of about this many MiB of values (8 bytes a value) before QC: a bronze
    # Parquet split holds far more rows once decompressed (80,000 x 5,000 counts ran a 6 GiB driver out of heap)
    partition_mib: int = 64


@dataclass(frozen=True)
class OmicsAssocConfig:
    name: str = "t2d"  # results go to gold.omics_assoc_<name>
    assay: str = "rna"  # silver.omics_<assay>
    pheno: str | None = None  # TSV/CSV with a sample_id column (or id_col); none: the cohort's label through the sample link
    cohort: str = "t2d_incident"  # without pheno: gold.cohort_<cohort>.label of consented, linked samples
    pheno_col: str = "label"  # the phenotype (numeric, or a 0/1 or true/false label) in the pheno file
    covar_cols: tuple[str, ...] = ()  # covariate columns of the pheno file (numeric)
    id_col: str = "sample_id"  # sample id column of the pheno file
    fdr: float = 0.05  # Benjamini-Hochberg level for the significant flag


@dataclass(frozen=True)
class StudyConfig:
    studies: tuple[str, ...] = ()  # conf/studies/<name>.yaml or paths; empty: every file of conf/studies/
    end_of_data: str | None = None  # censoring date; default: jobs.build_cohort.end_of_data, else the latest drug or condition date in silver
    # a study whose cohort has nobody exposed to either drug (e.g. a lake generated without jobs.generate.exposure_share):
    # skip: logged and in the run's metrics, no tables; fail: the job fails naming the study
    on_empty: Literal["skip", "fail"] = "skip"
    km_points: int = 200  # Kaplan-Meier steps kept per arm in gold.study_<name>_km (evenly spaced in time)


@dataclass(frozen=True)
class JobsConfig:
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    ingest_vcf: IngestVcfConfig = field(default_factory=IngestVcfConfig)
    genomic_qc: GenomicQcConfig = field(default_factory=GenomicQcConfig)
    genetic_features: GeneticFeaturesConfig = field(default_factory=GeneticFeaturesConfig)
    gwas: GwasConfig = field(default_factory=GwasConfig)
    build_cohort: BuildCohortConfig = field(default_factory=BuildCohortConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    survival: SurvivalConfig = field(default_factory=SurvivalConfig)
    maintain: MaintainConfig = field(default_factory=MaintainConfig)
    ingest_ehr: IngestEhrConfig = field(default_factory=IngestEhrConfig)
    conform_ehr: ConformEhrConfig = field(default_factory=ConformEhrConfig)
    ingest_survey: IngestSurveyConfig = field(default_factory=IngestSurveyConfig)
    conform_survey: ConformSurveyConfig = field(default_factory=ConformSurveyConfig)
    psychometrics: PsychometricsConfig = field(default_factory=PsychometricsConfig)
    ingest_omics: IngestOmicsConfig = field(default_factory=IngestOmicsConfig)
    omics_qc: OmicsQcConfig = field(default_factory=OmicsQcConfig)
    omics_assoc: OmicsAssocConfig = field(default_factory=OmicsAssocConfig)
    study: StudyConfig = field(default_factory=StudyConfig)


@dataclass(frozen=True)
class Config:
    env: str = "local"  # the conf/<env>.yaml layered over base (set by --env)
    spark: SparkConfig = field(default_factory=SparkConfig)
    delta: DeltaConfig = field(default_factory=DeltaConfig)
    hail: HailConfig = field(default_factory=HailConfig)
    lake: LakeConfig = field(default_factory=LakeConfig)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)
    jobs: JobsConfig = field(default_factory=JobsConfig)

    @property
    def layout(self) -> Layout:
        """Every location under lake.root, as URIs (see omicslake.io.layout)."""
        from omicslake.io.layout import Layout

        return Layout.of(self.lake.root)

    @property
    def lake_root(self) -> Path:
        """lake.root as a local folder; ConfigError when it is an object-store URI (use layout)."""
        return self.layout.local_root()

    def digest(self) -> str:
        """A stable hash of the effective configuration, recorded in ops.runs."""
        blob = json.dumps(dataclasses.asdict(self), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def replace(self, **changes: Any) -> Config:
        """Copy with dotted-path changes, e.g. ``cfg.replace(**{"lake.root": "/tmp/x"})``."""
        raw = dataclasses.asdict(self)
        for dotted, value in changes.items():
            _set_dotted(raw, dotted, value, "<replace>")
        return _build(Config, raw, {}, "")


# --------------------------------------------------------------------------------------------
# Loading.


def load_config(
    env: str = "local",  # the conf/<env>.yaml layered over base (set by --env)
    job: str | None = None,
    conf_files: typing.Sequence[str | Path] = (),
    overrides: typing.Sequence[str] = (),
    conf_dir: Path | None = None,
) -> Config:
    """Merge the YAML layers and ``key=value`` overrides into a checked :class:`Config`."""
    conf_dir = conf_dir or resource_dir("conf")
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}

    _merge_file(merged, origin, conf_dir / "base.yaml", prefix="", required=True)
    env_file = conf_dir / f"{env}.yaml"
    if not env_file.exists():
        known = sorted(p.stem for p in conf_dir.glob("*.yaml") if p.stem != "base")
        raise ConfigError(
            f"unknown environment {env!r}: {env_file} does not exist; choose one of {known}"
        )
    _merge_file(merged, origin, env_file, prefix="", required=True)
    job_names = [job] if job else [p.stem for p in sorted((conf_dir / "jobs").glob("*.yaml"))]
    for name in job_names:
        _merge_file(merged, origin, conf_dir / "jobs" / f"{name}.yaml", prefix=f"jobs.{name}")
    for extra in conf_files:
        path = Path(extra)
        if not path.exists():
            raise ConfigError(f"--conf-file {path} does not exist")
        _merge_file(merged, origin, path, prefix="", required=True)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set lake.root=/data/lake")
        try:
            value = yaml.safe_load(text) if text != "" else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {item!r}: value is not valid YAML ({exc})") from exc
        _set_dotted(merged, key.strip(), value, "--set")
        origin[key.strip()] = "--set"
    merged.setdefault("env", env)
    return _build(Config, merged, origin, "")


def _merge_file(
    merged: dict[str, Any], origin: dict[str, str], path: Path, prefix: str, required: bool = False
) -> None:
    if not path.exists():
        if required:
            raise ConfigError(f"configuration file {path} does not exist")
        return
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from exc
    if data is None:
        return
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(data).__name__}")
    target = merged
    if prefix:
        for part in prefix.split("."):
            target = target.setdefault(part, {})
    _deep_merge(target, data, origin, str(path), prefix)


def _deep_merge(
    target: dict[str, Any], data: Mapping[str, Any], origin: dict[str, str], src: str, prefix: str
) -> None:
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and isinstance(target.get(key), dict) and not _is_free_map(dotted):
            _deep_merge(target[key], value, origin, src, dotted)
        else:
            target[key] = value
        origin[dotted] = src


_FREE_MAPS = ("spark.conf", "lake.schemas", "jobs.ingest_vcf.contig_recoding")


def _is_free_map(dotted: str) -> bool:
    return dotted in _FREE_MAPS


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any, src: str) -> None:
    parts = dotted.split(".")
    node = tree
    for i, part in enumerate(parts[:-1]):
        # spark.conf keys themselves contain dots: everything after spark.conf is one key.
        if ".".join(parts[: i + 1]) in _FREE_MAPS:
            node = node.setdefault(part, {})
            node[".".join(parts[i + 1 :])] = value
            return
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{src}: cannot set {dotted!r}: {'.'.join(parts[:i+1])} is not a section")
        node = child
    node[parts[-1]] = value


def build_dataclass(cls: type, data: Any, source: str) -> Any:
    """A frozen dataclass from parsed YAML, with the checks of the main config (unknown keys,
    types, literals); errors name the key and ``source``."""
    return _build(cls, data, {"": source}, "")


def _build(cls: type, data: Any, origin: Mapping[str, str], prefix: str) -> Any:
    where = origin.get(prefix) or _nearest_origin(origin, prefix)
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: {prefix or 'top level'} must be a section (mapping), got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        key = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        raise ConfigError(
            f"{origin.get(key, where)}: unknown key {key!r}; known keys here: {sorted(names)}"
        )
    kwargs = {}
    for name, value in data.items():
        dotted = f"{prefix}.{name}" if prefix else name
        kwargs[name] = _coerce(hints[name], value, origin, dotted)
    return cls(**kwargs)


def _nearest_origin(origin: Mapping[str, str], prefix: str) -> str:
    for key, src in origin.items():
        if key.startswith(prefix + ".") or not prefix:
            return src
    return origin.get("", "<defaults>")


# Values that become part of a table, column or registered-model name (gold.features_<cohort>,
# gold.gwas_<name>, MLflow filters such as name='<model>'): identifiers only, so that a value such as
# "x; DROP TABLE y" or "m' OR name LIKE '%" is refused when the config is read, naming the key.
NAME_KEYS = frozenset({
    "jobs.genetic_features.prs_name", "jobs.train.cohort", "jobs.train.registered_model", "jobs.score.cohort",
    "jobs.score.model", "jobs.cluster.cohort", "jobs.survival.cohort", "jobs.survival.registered_model",
    "jobs.gwas.name", "jobs.gwas.cohort", "jobs.omics_assoc.name", "jobs.omics_assoc.assay", "jobs.omics_assoc.cohort",
    "jobs.omics_qc.assays",
})
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,99}$")


def _check_name(value: Any, where: str, dotted: str) -> None:
    values = value if isinstance(value, (list, tuple)) else [value]
    for v in values:
        if v is not None and not (isinstance(v, str) and _NAME.match(v)):
            raise ConfigError(
                f"{where}: {dotted} becomes part of a table, column or model name: it must be a letter followed by "
                f"letters, digits or _ (at most 100), got {v!r}"
            )


def _coerce(tp: Any, value: Any, origin: Mapping[str, str], dotted: str) -> Any:
    where = origin.get(dotted) or _nearest_origin(origin, dotted)
    if dotted in NAME_KEYS:
        _check_name(value, where, dotted)
    org = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, origin, dotted)  # type: ignore[arg-type]
    if org in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, origin, dotted)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[-1] if errors else f"{where}: {dotted} has a bad value")
    if org is Literal:
        if value not in get_args(tp):
            raise ConfigError(f"{where}: {dotted} must be one of {list(get_args(tp))}, got {value!r}")
        return value
    if org is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: {dotted} must be a mapping, got {type(value).__name__} {value!r}")
        _, vt = get_args(tp)
        return {str(k): _coerce(vt, v, origin, f"{dotted}.{k}") for k, v in value.items()}
    if org in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: {dotted} must be a list, got {type(value).__name__} {value!r}")
        (et, *_) = get_args(tp)
        items = [_coerce(et, v, origin, f"{dotted}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if org is tuple else items
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {dotted} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: {dotted} must be an integer, got {type(value).__name__} {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: {dotted} must be a number, got {type(value).__name__} {value!r}")
        return float(value)
    if tp is str:
        if isinstance(value, (dict, list)) or value is None:
            raise ConfigError(f"{where}: {dotted} must be a string, got {type(value).__name__} {value!r}")
        return str(value)
    if tp is Any:
        return value
    raise ConfigError(f"{where}: {dotted}: unsupported type {tp}")
