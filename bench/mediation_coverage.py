"""How often the mediation's intervals cover the generator's planted effects: a coverage study of
``causal.mediation.mediate`` over many seeds (issue 16: "the planted mediated share lies in its CI").

One seeded lake can miss a planted effect by chance (a 95 % interval misses one time in 20, and a
study reports four effects), so a single lake cannot say whether the intervals are right; many seeds
can. For each seed, the generator's people (``synth.people``) get the planted exposure, mediator and
mediated outcome (``synth.exposure.simulate``, every patient exposed) and lose those with type 2
diabetes before the index (the study cohort's largest exclusion; its others, 365 days of prior
observation, adults, metformin and the exposure window, are not reproduced: the coverage is over
exactly the persons fitted). The mediation is fitted twice on the same persons, with the generator's
own covariates (age, BMI, HbA1c: the correctly specified model) and with the values the
de-identified EHR shows before the index (the last wellness visit's BMI and HbA1c; age from the birth
date as silver.person holds it, top-coded at 90 as of the synthetic world's today,
``people.REFERENCE_DATE``: what the study job adjusts for), and each interval is checked against the
planted effect over exactly those persons (``exposure.mediation_truth``).

    .venv/bin/python -m bench.mediation_coverage --patients 800 --seeds 1-42

writes ``bench/results/coverage/mediation.json`` (per seed: the planted effects, both fits' estimates
and intervals; the summary: coverage of each effect with its binomial 95 % interval, the mean error).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

from bench.common import machine, versions

HERE = Path(__file__).resolve().parent
EFFECTS = {"nde": "ade", "nie": "acme", "total": "total", "prop_mediated": "prop_mediated"}  # truth -> mediate


def frame(spark: Any, patients: int, seed: int) -> Any:
    """The persons of one seed with the planted exposure and outcomes, the generator's covariates and
    the EHR's (``*_ehr``), as a cached DataFrame (the study cohort's rule: no diabetes before the index)."""
    from pyspark.sql import functions as F

    from omicslake.ehr.conform import top_coded_birth
    from omicslake.features.patient import age_years
    from omicslake.synth import exposure, people

    # not cached: the frame below is, and its first action computes these people once
    p = people.add_outcomes(people.patients_base(spark, patients, seed, 4), seed, F.lit(0.0))
    # silver.person's birth date (the per-patient date shift, which moves the birth date but not the
    # reference date, is left out: it changes who is top-coded only within its range of the boundary)
    seen_birth, _ = top_coded_birth(F.col("birth_date"), F.col("death_date"), F.to_date(F.lit(people.REFERENCE_DATE)))
    obs = people.observations(people.encounters(p, seed), seed)
    before = obs.where((F.col("k") < 0) & F.col("obs").isin("bmi", "hba1c"))
    last = before.groupBy("idx").agg(
        *[F.max_by("value", F.when(F.col("obs") == o, F.col("k"))).alias(f"{o}_ehr") for o in ("bmi", "hba1c")]
    )
    return (
        exposure.simulate(p, seed, 1.0)
        .join(last, "idx")
        .join(p.select("idx", "prevalent_t2d", seen_birth.alias("seen_birth")), "idx")
        .where(~F.col("prevalent_t2d") & F.col("hba1c_ehr").isNotNull() & F.col("bmi_ehr").isNotNull())
        .select(
            F.col("treated").cast("double").alias("t"),
            F.col(exposure.MEDIATOR_COLUMN).alias("m"),
            F.col("mediated_event").cast("double").alias("y"),
            "age",
            "bmi",
            "hba1c",
            age_years(F.col("index_date"), F.col("seen_birth")).alias("age_ehr"),
            "bmi_ehr",
            "hba1c_ehr",
            (F.col("sex") == "F").cast("double").alias("female"),
            *exposure.MEDIATION_TRUTH,
        )
        .persist()
    )


def one_seed(spark: Any, patients: int, seed: int, draws: int) -> dict[str, Any]:
    """The planted effects and both fits (generator's and EHR covariates) of one seed."""
    from omicslake.causal.mediation import mediate
    from omicslake.synth import exposure

    df = frame(spark, patients, seed)
    truth = exposure.mediation_truth(df)
    out: dict[str, Any] = {"seed": seed, "persons": truth["persons"], "truth": {k: truth[k] for k in EFFECTS}}
    for label, cov in (("generator", ["age", "bmi", "hba1c"]), ("ehr", ["age_ehr", "bmi_ehr", "hba1c_ehr"])):
        r = mediate(df, "t", "m", "y", [*cov, "female"], n_draws=draws, seed=16, outcome_model="logistic")
        out[label] = {k: {x: r[v][x] for x in ("estimate", "lower", "upper")} for k, v in EFFECTS.items()}
    df.unpersist()
    return out


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per fit and effect: how many intervals covered the planted value, the share with its Wilson 95 %
    interval, and the mean error of the estimate."""
    out: dict[str, Any] = {}
    n = len(rows)
    for fit in ("generator", "ehr"):
        out[fit] = {}
        for k in EFFECTS:
            hits = sum(r[fit][k]["lower"] <= r["truth"][k] <= r[fit][k]["upper"] for r in rows)
            p, z = hits / n, 1.96
            centre, half = (
                (p + z * z / (2 * n)) / (1 + z * z / n),
                z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n),
            )
            out[fit][k] = {
                "covered": hits,
                "of": n,
                "coverage": round(p, 3),
                "coverage_ci": [round(centre - half, 3), round(centre + half, 3)],
                "mean_error": sum(r[fit][k]["estimate"] - r["truth"][k] for r in rows) / n,
            }
    return out


def seeds_arg(text: str) -> list[int]:
    """'1-40' or '3,7,42' -> the seeds."""
    out: list[int] = []
    for part in text.split(","):
        a, _, b = part.partition("-")
        out += list(range(int(a), int(b) + 1)) if b else [int(a)]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.mediation_coverage", description=__doc__.split("\n\n")[0])
    ap.add_argument("--patients", type=int, default=800, help="patients per seed (the test pipeline's 800 by default)")
    ap.add_argument("--seeds", default="1-42", help="seeds, e.g. 1-42 (42: the test pipeline's) or 3,7,42")
    ap.add_argument("--draws", type=int, default=1000, help="coefficient draws per interval (the study's 1,000)")
    ap.add_argument("--out", default=str(HERE / "results" / "coverage" / "mediation.json"))
    args = ap.parse_args(argv)
    from omicslake.config import load_config
    from omicslake.session import build_session

    spark = build_session(load_config("local", overrides=["spark.ui=false", "spark.shuffle_partitions=4"]), hail=False)
    rows, t0 = [], time.monotonic()
    for seed in seeds_arg(args.seeds):
        rows.append(one_seed(spark, args.patients, seed, args.draws))
        print(f"[coverage] seed {seed}: {len(rows)} done, {time.monotonic() - t0:.0f} s", flush=True)
    result = {
        "name": "mediation_coverage",
        "machine": machine(),
        "versions": versions(),
        "patients": args.patients,
        "draws": args.draws,
        "summary": summary(rows),
        "seeds": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    for fit, effects in result["summary"].items():
        print(fit, {k: f"{v['covered']}/{v['of']} {v['coverage_ci']}" for k, v in effects.items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
