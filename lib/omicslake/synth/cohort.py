"""Generate a whole synthetic cohort: EHR files, genomes, sample link, truth and manifest.

Layout of the output folder::

    synthea/batch_001/{patients,encounters,conditions,observations,medications,procedures}.csv
    synthea/batch_002/{encounters,observations}.csv     (messy only: corrections, schema drift)
    fhir/{Patient,Encounter,Condition,Observation,MedicationRequest,Procedure}.NNN.ndjson
    vcf/cohort.vcf.bgz (+ .tbi)
    sample_link.csv                                      sample_id, patient_id, consent
    redcap/omicslake_study/{dictionary,records,linkage}.csv   a REDCap-style study (synth/survey.py)
    omics/ (+ truth/omics_*.tsv)                         jobs.generate.omics_features > 0: synth/omics.py
    truth/patients.csv                                   the latent truth per patient
    truth/exposure.csv                                   planted treatment and outcomes (synth.exposure)
    manifest.json                                        parameters, effects, counts, oracle AUROCs
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from pyspark import StorageLevel
from pyspark.ml.evaluation import BinaryClassificationEvaluator
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from omicslake.config import GenerateConfig
from omicslake.synth import codes as C
from omicslake.synth import exposure, people
from omicslake.synth import writers as W
from omicslake.synth.rand import uniform, uuid_from

log = logging.getLogger(__name__)

MESSY_RATES = {
    "duplicate_rows": 0.01,
    "wrong_column_count": 0.002,
    "unparseable_date": 0.002,
    "unit_swap": 0.10,
    "unknown_code": 0.005,
    "before_birth": 0.003,
    "after_death_share_of_deceased": 0.5,
    "broken_json": 0.002,
    "late_correction": 0.02,
    "drift_heart_rate_share_of_wellness": 0.2,
}
BAD_DATE = "31/02/2019 25:61"


def generate(spark: SparkSession, g: GenerateConfig, out: Path, reference: str, tmp: Path) -> dict[str, Any]:
    """Write the cohort under out and return the manifest (also written as out/manifest.json)."""
    t0 = time.monotonic()
    seed, messy = g.seed, g.messy
    out.mkdir(parents=True, exist_ok=True)
    tmp.mkdir(parents=True, exist_ok=True)
    files: dict[str, dict[str, Any]] = {}
    messy_counts: dict[str, int] = {}

    base = people.patients_base(spark, g.patients, seed, g.partitions)
    genome: dict[str, Any] = {"samples": 0, "variants": 0}
    if g.samples > 0:
        from omicslake.synth import genomes

        link = genomes.sample_link(spark, g.patients, g.samples, seed).persist()
        mt = genomes.simulate(link, g.variants, seed, g.partitions, reference, str(tmp / "genotypes.mt"))
        vcf = out / "vcf" / "cohort.vcf.bgz"
        vcf.parent.mkdir(parents=True, exist_ok=True)
        genomes.export_vcf(mt, str(vcf))
        scores = genomes.genetic_scores(mt).to_spark().join(link.select("sample_id", "idx"), "sample_id")
        truth = genomes.truth(mt)
        genome = {
            "file": str(vcf.relative_to(out)),
            "samples": truth.n_samples,
            "variants": truth.n_variants,
            "multiallelic_sites": truth.n_multiallelic,
            "causal_variants": truth.causal,
            "reference_genome": reference,
            "fst": genomes.FST,
            "missing_call_rate": genomes.MISSING_RATE,
        }
        # Rounded: a float sum may differ in its last bit with the order Hail combines partitions.
        weights = out / "prs" / "t2d_weights.tsv"
        weights.parent.mkdir(parents=True, exist_ok=True)
        # Published-weights style: some effect alleles given as the REF (weights flipped), so
        # that a PRS must align alleles.
        lines = ["contig\tposition\teffect_allele\tother_allele\tweight"]
        for i, c in enumerate(truth.causal):
            if i % 2:
                lines.append(f"{c['contig']}\t{c['position']}\t{c['ref']}\t{c['alt']}\t{-c['beta_log_odds']}")
            else:
                lines.append(f"{c['contig']}\t{c['position']}\t{c['alt']}\t{c['ref']}\t{c['beta_log_odds']}")
        weights.write_text("\n".join(lines) + "\n")
        genome["prs_weights"] = str(weights.relative_to(out))
        base = base.join(
            F.broadcast(scores.select("idx", F.round("genetic_score", 9).alias("genetic_score"))), "idx", "left"
        )
        genetic = F.coalesce(F.col("genetic_score"), F.lit(0.0))
        link_lines = (
            link.join(F.broadcast(base.select("idx", "patient_id")), "idx")
            .orderBy("sample_idx")
            .select(
                W.csv_line([F.col("sample_id"), F.col("patient_id"), F.col("consent").cast("string")]).alias("line")
            )
        )
        W.write_csv(
            link_lines.coalesce(1), ["sample_id", "patient_id", "consent"], out / "sample_link.csv", tmp / "link"
        )
        genome["consented_samples"] = link.where("consent").count()
    else:
        genetic = F.lit(0.0)
    # Sorting by idx keeps files byte-identical for a seed whatever the join strategy did. The
    # partition of a patient is computed from idx (repartitionByRange samples its bounds with a
    # seed taken from the RDD id, which differs between runs in one session: other file splits).
    block = F.floor(F.col("idx") * g.partitions / max(g.patients, 1)).cast("int")
    p = people.add_outcomes(base, seed, genetic).repartition(g.partitions, block).sortWithinPartitions("idx")
    p = p.persist(StorageLevel.MEMORY_AND_DISK)

    enc = people.encounters(p, seed)
    cond = people.conditions(enc).withColumn("cond_id", uuid_from(seed, "cond", "enc_id", "cond"))
    obs = people.observations(enc, seed).withColumn("obs_id", uuid_from(seed, "obs", "enc_id", "pos"))
    med = (
        people.medications(enc, seed)
        .withColumn("med_id", uuid_from(seed, "med", "enc_id", "med"))
        .withColumn("stop", F.lit(None).cast("timestamp"))
    )
    proc = people.procedures(enc).withColumn("proc_id", uuid_from(seed, "proc", "enc_id", "proc"))
    # Planted comparative-effect truth (#16): its own random streams. Its drug orders and outcomes join
    # the EHR files only with jobs.generate.exposure_share > 0 (otherwise every file is as before).
    exposed = exposure.simulate(p, seed, g.exposure_share)
    if g.exposure_share > 0:
        med = med.unionByName(exposure.ehr_medications(exposed, enc, seed))
        cond = cond.unionByName(exposure.ehr_conditions(exposed, enc, p, seed))
        obs = obs.unionByName(exposure.ehr_observations(exposed, enc, seed))

    b1 = out / "synthea" / "batch_001"
    # ---- patients
    files["synthea/batch_001/patients.csv"] = _csv(W.synthea_patients(p), "patients", b1, tmp)
    # ---- encounters (+ messy: visits after death, lines missing fields)
    e_rows = enc.withColumn("after_death", F.lit(False))
    if messy:
        ghosts = p.where(
            F.col("death_date").isNotNull()
            & (uniform(seed, "m_ghost", "idx") < MESSY_RATES["after_death_share_of_deceased"])
        )
        ghosts = ghosts.select(
            *[c for c in p.columns],
            F.lit("outpatient").alias("kind"),
            F.lit(9).alias("k"),
            F.date_add("death_date", 30).alias("date"),
        ).withColumn("enc_id", uuid_from(seed, "enc", "idx", "kind", "k"))
        ghosts = ghosts.withColumn("start", (F.unix_timestamp(F.to_timestamp("date")) + 36000).cast("timestamp"))
        ghosts = ghosts.withColumn("stop", (F.col("start").cast("long") + 1800).cast("timestamp")).withColumn(
            "cost", F.lit(100.0)
        )
        e_rows = e_rows.unionByName(ghosts.withColumn("after_death", F.lit(True)), allowMissingColumns=True)
    short = _flag(messy, seed, "m_short_e", "enc_id", MESSY_RATES["wrong_column_count"]) & ~F.col("after_death")
    e_lines = e_rows.select(
        "idx",
        "start",
        "enc_id",
        short.alias("short"),
        "after_death",
        W.csv_line(W.encounter_cols(e_rows)).alias("line"),
    )
    # Drop the last three fields: a truncated export line with too few columns.
    e_lines = e_lines.withColumn(
        "line", F.when(F.col("short"), F.regexp_replace("line", "(,[^,]*){3}$", "")).otherwise(F.col("line"))
    )
    files["synthea/batch_001/encounters.csv"] = _csv(e_lines, "encounters", b1, tmp, sort=("idx", "start", "enc_id"))
    messy_counts["encounters_after_death"] = _count(e_lines, "after_death") if messy else 0
    messy_counts["encounters_wrong_column_count"] = _count(e_lines, "short") if messy else 0

    # ---- conditions (+ duplicates, unknown codes, onset before birth)
    unknown = _flag(messy, seed, "m_unk", "cond_id", MESSY_RATES["unknown_code"])
    before = _flag(messy, seed, "m_bb", "cond_id", MESSY_RATES["before_birth"]) & ~unknown
    c_start = F.when(before, F.date_sub("birth_date", 100)).otherwise(F.col("start"))
    c_code = F.when(unknown, F.lit(C.UNKNOWN_CONDITION_CODE)).otherwise(W.code_of(F.col("cond"), C.CONDITIONS))
    c_disp = F.when(unknown, F.lit("Unknown condition (finding)")).otherwise(W.display_of(F.col("cond"), C.CONDITIONS))
    c_lines = cond.select(
        "idx",
        "start",
        "cond_id",
        unknown.alias("unknown"),
        before.alias("before_birth"),
        W.csv_line(
            [
                W.iso_date(c_start),
                W.iso_date(F.col("stop")),
                F.col("patient_id"),
                F.col("enc_id"),
                F.lit(C.SNOMED),
                c_code,
                c_disp,
            ]
        ).alias("line"),
    )
    c_lines, n_dup_c = _duplicate(c_lines, messy, seed, "cond_id")
    files["synthea/batch_001/conditions.csv"] = _csv(
        c_lines, "conditions", b1, tmp, sort=("idx", "start", "cond_id", "copy")
    )
    if messy:
        # Counts are of lines in the file: a duplicated bad line counts twice.
        messy_counts["conditions_unknown_code"] = _count(c_lines, "unknown")
        messy_counts["conditions_before_birth"] = _count(c_lines, "before_birth")
        messy_counts["conditions_duplicate_rows"] = n_dup_c

    # ---- observations (+ duplicates, unit swaps, bad dates, extra fields)
    swap = _flag(messy, seed, "m_swap", "obs_id", MESSY_RATES["unit_swap"]) & F.col("obs").isin("glucose", "weight")
    bad_date = _flag(messy, seed, "m_bad_date", "obs_id", MESSY_RATES["unparseable_date"])
    extra = _flag(messy, seed, "m_extra", "obs_id", MESSY_RATES["wrong_column_count"]) & ~bad_date
    value, units = W.observation_value(obs, swap)
    o_date = F.when(bad_date, F.lit(BAD_DATE)).otherwise(W.iso_ts(F.col("start")))
    o_line = W.csv_line(
        [
            o_date,
            F.col("patient_id"),
            F.col("enc_id"),
            W._lookup(F.col("obs"), C.OBSERVATIONS, 3),
            W.code_of(F.col("obs"), C.OBSERVATIONS),
            W.display_of(F.col("obs"), C.OBSERVATIONS),
            value,
            units,
            F.lit("numeric"),
        ]
    )
    o_lines = obs.select(
        "idx",
        "start",
        "obs_id",
        "obs",
        swap.alias("swap"),
        bad_date.alias("bad_date"),
        extra.alias("extra"),
        F.when(extra, F.concat(o_line, F.lit(",UNEXPECTED"))).otherwise(o_line).alias("line"),
    )
    o_lines, n_dup_o = _duplicate(o_lines, messy, seed, "obs_id")
    files["synthea/batch_001/observations.csv"] = _csv(
        o_lines, "observations", b1, tmp, sort=("idx", "start", "obs_id", "copy")
    )
    if messy:
        agg = o_lines.agg(
            F.sum((F.col("swap") & (F.col("obs") == "glucose")).cast("long")),
            F.sum((F.col("swap") & (F.col("obs") == "weight")).cast("long")),
            F.sum(F.col("bad_date").cast("long")),
            F.sum(F.col("extra").cast("long")),
        ).first()
        messy_counts.update(
            observations_glucose_mmol_per_l=int(agg[0] or 0),
            observations_weight_lb=int(agg[1] or 0),
            observations_unparseable_date=int(agg[2] or 0),
            observations_wrong_column_count=int(agg[3] or 0),
            observations_duplicate_rows=n_dup_o,
        )

    # ---- medications, procedures
    m_lines = med.select(
        "idx",
        "start",
        "med_id",
        W.csv_line(
            [
                W.iso_ts(F.col("start")),
                W.iso_ts(F.col("stop")),
                F.col("patient_id"),
                F.lit("b1c428d6-4f07-31e0-90f0-68ffa6ff8c76"),
                F.col("enc_id"),
                W.code_of(F.col("med"), C.MEDICATIONS),
                W.display_of(F.col("med"), C.MEDICATIONS),
                F.lit(12.5),
                F.lit(0.0),
                F.col("dispenses"),
                F.round(F.col("dispenses") * 12.5, 2),
                F.lit(None),
                F.lit(None),
            ]
        ).alias("line"),
    )
    files["synthea/batch_001/medications.csv"] = _csv(m_lines, "medications", b1, tmp, sort=("idx", "start", "med_id"))
    pr_lines = proc.select(
        "idx",
        "start",
        "proc_id",
        W.csv_line(
            [
                W.iso_ts(F.col("start")),
                W.iso_ts(F.col("stop")),
                F.col("patient_id"),
                F.col("enc_id"),
                F.lit(C.SNOMED),
                W.code_of(F.col("proc"), C.PROCEDURES),
                W.display_of(F.col("proc"), C.PROCEDURES),
                F.lit(450.0),
                F.lit(None),
                F.lit(None),
            ]
        ).alias("line"),
    )
    files["synthea/batch_001/procedures.csv"] = _csv(pr_lines, "procedures", b1, tmp, sort=("idx", "start", "proc_id"))

    # ---- batch 2: late corrections of encounters, and observations with an extra column
    if messy:
        b2 = out / "synthea" / "batch_002"
        corr = enc.where(uniform(seed, "m_corr", "enc_id") < MESSY_RATES["late_correction"])
        corr_cols = W.encounter_cols(
            corr, stop=(F.col("stop").cast("long") + 3600).cast("timestamp"), cost=F.round(F.col("cost") * 1.1, 2)
        )
        corr_lines = corr.select("idx", "start", "enc_id", W.csv_line(corr_cols).alias("line"))
        files["synthea/batch_002/encounters.csv"] = _csv(
            corr_lines, "encounters", b2, tmp, sort=("idx", "start", "enc_id")
        )
        messy_counts["encounters_late_corrections"] = files["synthea/batch_002/encounters.csv"]["rows"]
        hr = enc.where(
            (F.col("kind") == "wellness")
            & (uniform(seed, "m_hr", "enc_id") < MESSY_RATES["drift_heart_rate_share_of_wellness"])
        )
        hr_lines = hr.select(
            "idx",
            "start",
            "enc_id",
            W.csv_line(
                [
                    W.iso_ts(F.col("start")),
                    F.col("patient_id"),
                    F.col("enc_id"),
                    F.lit(C.HEART_RATE[3]),
                    F.lit(C.HEART_RATE[0]),
                    F.lit(C.HEART_RATE[1]),
                    F.round(F.lit(60.0) + uniform(seed, "hr", "enc_id") * 40, 0),
                    F.lit(C.HEART_RATE[2]),
                    F.lit("numeric"),
                    F.lit("ehr-b"),
                ]
            ).alias("line"),
        )
        files["synthea/batch_002/observations.csv"] = _csv(
            hr_lines,
            "observations",
            b2,
            tmp,
            sort=("idx", "start", "enc_id"),
            header=[*W.SYNTHEA_COLUMNS["observations"], W.DRIFT_COLUMN],
        )
        messy_counts["observations_schema_drift_rows"] = files["synthea/batch_002/observations.csv"]["rows"]

    # ---- FHIR bulk export of the same people (broken JSON lines when messy)
    fhir = out / "fhir"
    fhir_sets = {
        "Patient": W.fhir_patient(p),
        "Encounter": W.fhir_encounter(enc),
        "Condition": W.fhir_condition(cond),
        "Observation": W.fhir_observation(obs),
        "MedicationRequest": W.fhir_medication(med),
        "Procedure": W.fhir_procedure(proc),
    }
    for resource, lines in fhir_sets.items():
        lines = lines.withColumn("_key", F.md5("line"))
        broken = _flag(
            messy and resource in ("Observation", "Condition"),
            seed,
            f"m_json_{resource}",
            "_key",
            MESSY_RATES["broken_json"],
        )
        lines = lines.withColumn("broken", broken).withColumn(
            "line", F.when(F.col("broken"), F.expr("substring(line, 1, length(line) div 2)")).otherwise(F.col("line"))
        )
        paths = [Path(x) for x in W.write_ndjson(lines, resource, fhir, tmp / f"fhir_{resource}")]
        files[f"fhir/{resource}"] = {
            "rows": sum(_lines_in(x) for x in paths),
            "files": [str(x.relative_to(out)) for x in paths],
        }
        if messy and resource in ("Observation", "Condition"):
            messy_counts[f"fhir_{resource.lower()}_broken_json"] = _count(lines, "broken")

    # ---- truth
    truth_lines = p.select("idx", W.csv_line([F.col(c) for c in people.truth_columns()]).alias("line"))
    _csv(truth_lines, "patients", out / "truth", tmp, header=people.truth_columns())
    # Planted comparative-effect truth (#16): a new file, its own random streams; nothing above changes.
    exposure_file = _csv(exposure.lines(exposed), "exposure", out / "truth", tmp, header=exposure.columns())
    t2d_auc, prevalence = _auroc(p.where(~F.col("prevalent_t2d")), "p_t2d", "t2d_incident")
    readmit_auc, readmit_rate = _auroc(p.where("has_inpatient"), "p_readmit", "readmit_30d")
    stats = p.agg(
        F.count("*"),
        F.sum(F.col("prevalent_t2d").cast("int")),
        F.sum(F.col("t2d_incident").cast("int")),
        F.sum(F.col("has_inpatient").cast("int")),
        F.sum(F.col("readmit_30d").cast("int")),
        F.sum((F.col("death_date").isNotNull()).cast("int")),
        F.sum((F.col("age") >= 90).cast("int")),
        *[F.sum((F.col("ancestry") == a).cast("int")) for a in range(3)],
    ).first()
    cases = p.where("t2d_incident").orderBy("idx").select("patient_id").limit(20).collect()
    controls = (
        p.where("NOT t2d_incident AND NOT prevalent_t2d AND t2d_late_date IS NULL")
        .orderBy("idx")
        .select("patient_id")
        .limit(20)
        .collect()
    )
    survey = None
    if g.survey_share > 0:  # its own random stream: every other file stays the same (synth/survey.py)
        from omicslake.synth import survey as S

        chosen = p.where(uniform(seed, "survey", "idx") < g.survey_share).orderBy("idx").select("patient_id")
        survey = S.generate([r[0] for r in chosen.collect()], seed, out)  # a share of the patients' ids
    if g.samples > 0 and g.omics_features > 0:  # omics/ and truth/omics_*.tsv only: every other file is unchanged
        from omicslake.synth import omics

        omics.from_cohort(link, p, out, g.omics_features, seed)
    p.unpersist()

    manifest: dict[str, Any] = {
        "generator": "omicslake.synth",
        "parameters": {
            "patients": g.patients,
            "samples": g.samples,
            "variants": g.variants,
            "seed": seed,
            "messy": messy,
            "partitions": g.partitions,
            "exposure_share": g.exposure_share,
        },
        "reference_date": people.REFERENCE_DATE,
        "index_rule": "first wellness encounter (SNOMED 162673000) in 2019",
        "truth_file": "truth/patients.csv",
        "effects": people.effects(),
        "counts": {
            "patients": int(stats[0]),
            "prevalent_t2d": int(stats[1]),
            "incident_t2d_365d": int(stats[2]),
            "inpatient_patients": int(stats[3]),
            "readmitted_30d": int(stats[4]),
            "deceased": int(stats[5]),
            "aged_90_plus": int(stats[6]),
            "ancestry": [int(stats[7]), int(stats[8]), int(stats[9])],
        },
        "outcomes": {
            "t2d_incident_365d": {
                "eligible": "patients without T2D before index",
                "prevalence": prevalence,
                "oracle_auroc": t2d_auc,
                "min_auroc_with_planted_features": round(0.5 + 0.6 * (t2d_auc - 0.5), 3),
                "example_cases": [r[0] for r in cases],
                "example_controls": [r[0] for r in controls],
            },
            "readmission_30d": {
                "eligible": "patients with an inpatient stay",
                "rate": readmit_rate,
                "oracle_auroc": readmit_auc,
            },
        },
        "genome": genome,
        "exposure": {
            "file": "truth/exposure.csv",
            "rows": exposure_file["rows"],
            "share_in_ehr": g.exposure_share,
            **exposure.effects(),
            # the planted natural effects on the mediated outcome over every patient, and over those whose
            # exposure the EHR files hold (a study's population is a subset: truth/exposure.csv's
            # mediated_y<t><m> average over any subset exactly)
            # the marginal HRs over the patients whose exposure the EHR files hold (what IPTW for the ATE
            # estimates; TRUE_HR is conditional on the covariates); none when the files hold no exposure
            "true_marginal_hr_in_ehr": exposure.marginal_hrs(exposed, seed, F.col("in_ehr") == 1)
            if g.exposure_share > 0
            else None,
            **{
                f"mediation_truth{suffix}": truth
                for suffix, truth in exposure.mediation_truths(
                    exposed, {"": F.lit(True), "_in_ehr": F.col("in_ehr") == 1}
                ).items()
            },
        },
        "files": files,
        "messy": {"rates": MESSY_RATES if messy else {}, "counts": messy_counts},
        "seconds": round(time.monotonic() - t0, 1),
    }
    if survey is not None:
        manifest["survey"] = survey
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True, default=str))
    shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def _flag(on: bool, seed: int, stream: str, key: str, rate: float) -> Column:
    return uniform(seed, stream, key) < F.lit(rate) if on else F.lit(False)


def _count(df: DataFrame, flag: str) -> int:
    return int(df.agg(F.sum(F.col(flag).cast("long"))).first()[0] or 0)  # type: ignore[index]


def _duplicate(lines: DataFrame, messy: bool, seed: int, key: str) -> tuple[DataFrame, int]:
    """Exact duplicate rows: a chosen line is emitted twice (copy 0 and 1)."""
    dup = _flag(messy, seed, f"m_dup_{key}", key, MESSY_RATES["duplicate_rows"])
    out = lines.withColumn("copy", F.explode(F.sequence(F.lit(0), dup.cast("int"))))
    n = _count(out.withColumn("_d", F.col("copy") == 1), "_d") if messy else 0
    return out, n


def _csv(
    lines: DataFrame,
    table: str,
    folder: Path,
    tmp: Path,
    sort: tuple[str, ...] = ("idx",),
    header: list[str] | None = None,
) -> dict[str, Any]:
    header = header or W.SYNTHEA_COLUMNS[table]
    ordered = lines.sortWithinPartitions(*sort)
    target = folder / f"{table}.csv"
    W.write_csv(ordered, header, target, tmp / f"csv_{folder.name}_{table}")
    return {"rows": _lines_in(target) - 1}


def _lines_in(path: Path) -> int:
    n = 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 22):
            n += chunk.count(b"\n")
    return n


def _auroc(df: DataFrame, score: str, label: str) -> tuple[float, float]:
    ev = BinaryClassificationEvaluator(rawPredictionCol=score, labelCol="_label", metricName="areaUnderROC")
    d = df.select(F.col(score).cast("double").alias(score), F.col(label).cast("double").alias("_label"))
    rate = d.agg(F.avg("_label")).first()[0]  # type: ignore[index]
    return round(float(ev.evaluate(d)), 4), round(float(rate or 0.0), 4)
