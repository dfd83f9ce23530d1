"""MLflow wiring: the tracking store, the experiment and its artifact folder.

Local default: a SQLite store at <lake>/mlflow/mlflow.db and artifacts under <lake>/mlflow/artifacts
(``mlflow ui --backend-store-uri sqlite:///<lake>/mlflow/mlflow.db`` opens it). ``mlflow.tracking_uri``
points at a tracking server or ``databricks`` instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omicslake.config import Config
from omicslake.errors import ConfigError


def tracking_uri(cfg: Config) -> str:
    """mlflow.tracking_uri when set, else a SQLite store at <lake root>/mlflow/mlflow.db (the folder is
    created). ConfigError when the lake root is an object store and no tracking URI is set."""
    if cfg.mlflow.tracking_uri:
        return cfg.mlflow.tracking_uri
    if not cfg.layout.is_local:
        raise ConfigError(
            f"lake.root is {cfg.layout.root}, an object store, and mlflow.tracking_uri is not set: MLflow's "
            "default store is a SQLite file under <lake.root>/mlflow, which must be on a local disk. Set "
            "mlflow.tracking_uri to a tracking server (http://...), databricks, or sqlite:////<local folder>/mlflow.db"
        )
    root = Path(cfg.layout.mlflow())
    root.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{root / 'mlflow.db'}"


def setup(cfg: Config) -> Any:
    """Point MLflow at the configured store; return the experiment id."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri(cfg))
    if cfg.mlflow.registry_uri:
        mlflow.set_registry_uri(cfg.mlflow.registry_uri)
    exp = mlflow.get_experiment_by_name(cfg.mlflow.experiment)
    if exp is not None:
        return exp.experiment_id
    location = None if cfg.mlflow.tracking_uri else Path(cfg.layout.mlflow("artifacts")).as_uri()
    return mlflow.create_experiment(cfg.mlflow.experiment, artifact_location=location)


def model_requirements() -> list[str]:
    """The pip requirements of a logged Spark model: the installed pyspark and mlflow, pinned.

    Given explicitly, because without them ``mlflow.spark.log_model`` infers them by re-loading
    the model in a child Python process that starts a Spark JVM of its own (tens of seconds per
    model, every time); for an MLlib pipeline the answer is always these two.
    """
    from importlib.metadata import version

    return [f"pyspark=={version('pyspark')}", f"mlflow=={version('mlflow')}"]


def counted(dataset: Any, rows: int) -> Any:
    """The MLflow Spark dataset ``dataset`` with ``rows`` as its profile.

    MLflow profiles a Spark dataset on ``log_input`` by turning the DataFrame into a Python RDD and
    starting an approximate count with a 5 s timeout; the job goes on running after the timeout and
    pickles every row (all ~170 feature columns) through Python workers. At 1M patients that ran
    next to the model's own work. The caller knows the count already.
    """
    from mlflow.data.spark_dataset import SparkDataset

    class _Counted(SparkDataset):  # type: ignore[misc]
        @property
        def profile(self) -> dict[str, int]:
            return {"num_rows": rows}

    return _Counted(
        df=dataset.df,
        source=dataset.source,
        targets=dataset.targets,
        name=dataset.name,
        digest=dataset.digest,
        predictions=dataset.predictions,
    )


def risk_metadata(name: str, version: str | int) -> dict[str, Any]:
    """The calibration and model numbers logged with a model version (empty for models logged
    before they were: no recalibration, no reasons)."""
    import mlflow

    info = mlflow.models.get_model_info(f"models:/{name}/{version}")
    return dict((info.metadata or {}).get("omicslake_risk") or {})
