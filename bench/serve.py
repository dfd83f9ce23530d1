"""Benchmark: ``omicslake serve`` (the risk server) over HTTP on 127.0.0.1 against the same answers
computed in-process (``RiskService.predict``, no HTTP).

The model is a seeded logistic model as numbers (``LinearRisk``: the shape the train job logs, with
``variants`` numeric features and two categorical ones) behind the server the ``serve`` command
starts (``ml.serve.make_server``, threaded). Measured in one run: single-patient requests (p50 /
p99 latency over 300 requests), batches of ``samples`` patients (throughput), and the in-process
batch as the peer; the ratio is served batch / in-process batch (the cost of HTTP and JSON).
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import Timer, ratio


def _service(n_numeric: int, seed: int) -> Any:
    from omicslake.ml.risk import Calibration, LinearRisk
    from omicslake.ml.serve import RiskService

    rng = np.random.default_rng(seed)
    numeric = tuple(f"lab_x{i}_last_365d" for i in range(n_numeric))
    levels = (("female", "male"), ("asian", "black", "white"))
    n_slots = n_numeric + sum(len(lv) + 1 for lv in levels)
    linear = LinearRisk(
        numeric=numeric,
        medians=tuple(rng.normal(5, 1, n_numeric).round(3)),
        categorical=("sex", "race"),
        levels=levels,
        modes=("female", "white"),
        mean=tuple(rng.normal(0, 1, n_slots)),
        std=tuple(rng.uniform(0.5, 2, n_slots)),
        coef=tuple(rng.normal(0, 0.3, n_slots)),
        intercept=-2.5,
    )
    return RiskService(
        "bench_model", 1, linear, Calibration("platt", a=-0.2, b=0.9), (0.05, 0.15), ("low", "moderate", "high"), 3
    )


def _patients(service: Any, n: int, seed: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed + 1)
    out = []
    for i in range(n):
        p: dict[str, Any] = {"person_key": f"p{i:06d}"}
        for f, m in zip(service.linear.numeric, service.linear.medians, strict=True):
            p[f] = None if rng.random() < 0.05 else float(rng.normal(m, 1))
        p["sex"] = str(rng.choice(["female", "male"]))
        p["race"] = str(rng.choice(["asian", "black", "white"]))
        out.append(p)
    return out


def run(
    spark: Any, cfg: Any, work: Path, variants: int, samples: int, seed: int = 7, peers: bool = True
) -> dict[str, Any]:
    """Times and ratios at one size: ``variants`` numeric features, batches of ``samples`` patients."""
    from omicslake.ml.serve import serve_in_thread

    service = _service(variants, seed)
    patients = _patients(service, max(samples, 300), seed)
    batch = patients[:samples]
    server, _thread = serve_in_thread(service)
    url = f"http://127.0.0.1:{server.server_address[1]}/predict"

    def post(body: Any) -> dict[str, Any]:
        req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())  # type: ignore[no-any-return]

    timer = Timer()
    try:
        post(patients[0])  # warm up
        lat = []
        with timer("single_300"):
            for p in patients[:300]:
                t0 = time.perf_counter()
                post(p)
                lat.append(time.perf_counter() - t0)
        rounds = 10
        with timer("served_batches"):
            for _ in range(rounds):
                served = post({"patients": batch})
        if peers:
            with timer("inprocess_batches"):
                for _ in range(rounds):
                    local = service.predict(batch)
            # the same answers both ways
            assert [round(x["risk"], 12) for x in served["predictions"]] == [
                round(x["risk"], 12) for x in local["predictions"]
            ]
    finally:
        server.shutdown()
    seconds = timer.seconds
    seconds["served_batch"] = seconds["served_batches"] / rounds
    if peers:
        seconds["inprocess_batch"] = seconds["inprocess_batches"] / rounds
    return {
        "inputs": {"features": variants + 2, "batch_patients": samples, "single_requests": 300, "batch_rounds": rounds},
        "seconds": seconds,
        "latency_ms": {"p50": float(np.percentile(lat, 50) * 1e3), "p99": float(np.percentile(lat, 99) * 1e3)},
        "patients_per_second_batched": samples / seconds["served_batch"],
        "ratios": {"served_batch_vs_inprocess": ratio(seconds["served_batch"], seconds.get("inprocess_batch"))},
    }
