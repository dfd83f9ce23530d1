"""The champion risk model over HTTP on this machine (``omicslake serve``).

A small server on the registered model version's own numbers: the logistic pipeline and the
calibration logged with the model (MLmodel metadata ``omicslake_risk``, the same numbers the
score job applies), so no Spark is started and a request is answered in microseconds.

POST /predict with one patient's features as a JSON object, or ``{"patients": [ {...}, ... ]}``;
every feature of the model's signature must be present (``null`` = not recorded: the training
median, as in batch scoring), numbers for numeric features and strings for categorical ones, an
optional ``person_key`` is echoed back. Answers: ``{"model", "model_version", "calibration",
"predictions": [{"person_key", "risk", "risk_band", "model_score", "reasons": [...]}]}``.
A missing, unknown or wrong-typed field is a 400 naming it; GET /health names the model.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pandas as pd

from omicslake.ml.risk import Calibration, LinearRisk, band

log = logging.getLogger(__name__)
MAX_BODY = 10 * 1024 * 1024


class RequestError(ValueError):
    """A request the model cannot answer (the message goes back to the caller with a 400)."""


@dataclass(frozen=True)
class RiskService:
    """A registered logistic model version ready to answer requests: its name and version, its numbers, the
    calibration map, the risk band thresholds and names, and how many reasons to give per patient."""

    name: str
    version: int
    linear: LinearRisk
    calibration: Calibration
    thresholds: tuple[float, ...]
    band_names: tuple[str, ...]
    top_k: int

    def validate(self, patients: Any) -> pd.DataFrame:
        """The patients (a list of JSON objects) as a pandas DataFrame of the model's features (numbers as
        floats, null as NaN) and person_key. RequestError naming the patient and field for an empty list, a
        non-object, a missing or unknown field, a numeric field that is not a finite number, or a category or
        person_key that is not a string."""
        if not isinstance(patients, list) or not patients:
            raise RequestError(
                'send one patient as a JSON object of features, or {"patients": [ ... ]} with at least one'
            )
        rows = []
        allowed = set(self.linear.features) | {"person_key"}
        for i, p in enumerate(patients):
            where = f"patient {i}" if len(patients) > 1 else "the patient"
            if not isinstance(p, dict):
                raise RequestError(f"{where} is a JSON {type(p).__name__}, not an object of features")
            missing = [f for f in self.linear.features if f not in p]
            if missing:
                raise RequestError(
                    f"{where}: missing field(s) {missing[:20]}{' ...' if len(missing) > 20 else ''} "
                    f"({len(missing)} of the model's {len(self.linear.features)}; null means not recorded)"
                )
            unknown = sorted(set(p) - allowed)
            if unknown:
                raise RequestError(
                    f"{where}: unknown field(s) {unknown[:20]}: not features of {self.name} v{self.version}"
                )
            for f in self.linear.numeric:
                v = p[f]
                if v is not None and (
                    isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v))
                ):
                    raise RequestError(
                        f"{where}: field {f!r} must be a finite number or null, got "
                        f"{'a non-finite number' if isinstance(v, float) else type(v).__name__}"
                    )
            for f in self.linear.categorical:
                v = p[f]
                if v is not None and not isinstance(v, str):
                    raise RequestError(f"{where}: field {f!r} must be a string or null, got {type(v).__name__}")
            if "person_key" in p and p["person_key"] is not None and not isinstance(p["person_key"], str):
                raise RequestError(f"{where}: person_key must be a string")
            rows.append(p)
        data: dict[str, Any] = {
            f: np.array([np.nan if r[f] is None else float(r[f]) for r in rows]) for f in self.linear.numeric
        }
        data |= {f: [r[f] for r in rows] for f in self.linear.categorical}
        return pd.DataFrame(data | {"person_key": [r.get("person_key") for r in rows]})

    def predict(self, patients: Any) -> dict[str, Any]:
        """The answer to POST /predict for a list of patient objects: model, model_version, calibration, and
        per patient person_key, risk (calibrated), risk_band, model_score (uncalibrated probability) and
        the top_k reasons. RequestError as ``validate``."""
        pdf = self.validate(patients)
        contrib = self.linear.contributions(pdf)
        score = 1.0 / (1.0 + np.exp(-(self.linear.intercept + contrib.sum(axis=1))))
        risk = self.calibration.apply(score)
        reasons = self.linear.reasons(pdf, contrib, self.top_k)
        preds = [
            {
                "person_key": pdf["person_key"][i],
                "risk": float(risk[i]),
                "risk_band": band(float(risk[i]), self.thresholds, self.band_names),
                "model_score": float(score[i]),
                "reasons": reasons[i],
            }
            for i in range(len(pdf))
        ]
        return {
            "model": self.name,
            "model_version": self.version,
            "calibration": self.calibration.method,
            "predictions": preds,
        }


def load_service(
    name: str, version: str | int, band_thresholds: Sequence[float], band_names: Sequence[str], top_k: int
) -> RiskService:
    """The service of registered model ``name`` version ``version`` (MLflow pointed at its store) with its
    logged numbers: risk bands cut at ``band_thresholds`` and named ``band_names``, ``top_k`` reasons a
    patient. InputError when the version has no logistic model numbers (a tree model, or one logged by
    an older omicslake); ConfigError on bands that do not fit together."""
    from omicslake.errors import InputError
    from omicslake.ml.risk import check_bands
    from omicslake.ml.tracking import risk_metadata

    thresholds, names = tuple(band_thresholds), tuple(band_names)
    check_bands(thresholds, names)
    meta = risk_metadata(name, version)
    if not meta.get("linear"):
        raise InputError(
            f"{name} v{version} has no logistic model numbers in its metadata: serve needs a logistic model "
            "trained by this version of omicslake (jobs.train.model=logistic; tree models are scored in batch only)"
        )
    return RiskService(
        name,
        int(version),
        LinearRisk.from_dict(meta["linear"]),
        Calibration.from_dict(meta["calibration"]),
        thresholds,
        names,
        top_k,
    )


def _handler(service: RiskService) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "omicslake-serve"

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802
            if self.path == "/health":
                self._send(
                    200,
                    {
                        "status": "ok",
                        "model": service.name,
                        "model_version": service.version,
                        "features": {
                            "numeric": list(service.linear.numeric),
                            "categorical": list(service.linear.categorical),
                        },
                    },
                )
            else:
                self._send(404, {"error": f"no such path {self.path}: POST /predict or GET /health"})

        def do_POST(self) -> None:  # noqa: N802
            if self.path not in ("/predict", "/invocations"):
                self._send(404, {"error": f"no such path {self.path}: POST /predict"})
                return
            n = int(self.headers.get("Content-Length") or 0)
            if n <= 0 or n > MAX_BODY:
                self._send(400 if n <= 0 else 413, {"error": f"a JSON body of 1 to {MAX_BODY} bytes is needed"})
                return
            try:
                body = json.loads(self.rfile.read(n))
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                self._send(400, {"error": f"the body is not JSON: {exc}"})
                return
            patients = body.get("patients") if isinstance(body, dict) and "patients" in body else [body]
            try:
                self._send(200, service.predict(patients))
            except RequestError as exc:
                self._send(400, {"error": str(exc)})

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            log.debug("%s %s", self.address_string(), format % args)  # paths and status only; bodies never logged

    return Handler


def make_server(service: RiskService, host: str = "127.0.0.1", port: int = 5088) -> ThreadingHTTPServer:
    """An HTTP server for ``service`` bound to host:port (port 0: a free one), not yet serving: GET /health,
    POST /predict. OSError when the port is taken."""
    return ThreadingHTTPServer((host, port), _handler(service))


def serve_in_thread(
    service: RiskService, host: str = "127.0.0.1", port: int = 0
) -> tuple[ThreadingHTTPServer, threading.Thread]:
    """A server on a free port in a daemon thread (tests, notebooks); ``server.shutdown()`` stops it."""
    server = make_server(service, host, port)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    return server, t
