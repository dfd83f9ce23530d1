"""MLflow wiring: the tracking store, the experiment and its artifact folder.

Local default: a SQLite store at <lake>/mlflow/mlflow.db and artifacts under <lake>/mlflow/artifacts
(``mlflow ui --backend-store-uri sqlite:///<lake>/mlflow/mlflow.db`` opens it). ``mlflow.tracking_uri``
points at a tracking server or ``databricks`` instead.

What the model jobs (train, survival, cluster) log goes through here, so the report finds it in one shape:
``tracked_run`` (a run tagged ``omicslake.run_id`` / ``omicslake.job`` / ``omicslake.<tag>``),
``log_files`` (PNGs under ``plots/``, JSON under ``metrics/``), ``log_model`` (a Spark model under
``model`` with pinned requirements) and ``register`` (the version a run registered, with its alias).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omicslake.config import Config
from omicslake.errors import ConfigError, OmicslakeError

if TYPE_CHECKING:
    from mlflow import ActiveRun
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.models.model import ModelInfo

PLOTS = "plots"  # artifact folder of a run's PNGs (the report shows every file in it)
METRICS = "metrics"  # artifact folder of a run's JSON files (subgroups.json, calibration.json, ...)
MODEL = "model"  # artifact path of a run's logged model


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


def has_store(cfg: Config) -> bool:
    """Whether the lake has an MLflow store to read: mlflow.tracking_uri is set, or the default SQLite
    file ``<lake>/mlflow/mlflow.db`` exists (a lake on an object store has no default store)."""
    return bool(cfg.mlflow.tracking_uri) or (cfg.layout.is_local and Path(cfg.layout.mlflow("mlflow.db")).exists())


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


def close_interrupted(cfg: Config, lake_run_id: str, finished: Collection[str] = ()) -> list[str]:
    """What an interrupted omicslake run (``lake_run_id``, a pipeline killed before its end) left in
    MLflow: its runs in the configured experiment (tag ``omicslake.run_id``) of jobs not in
    ``finished`` (the jobs of that run with a successful audit row) still RUNNING are set KILLED, and
    every model version those runs registered gets the tag ``omicslake.interrupted`` = the run id, so
    that nobody takes a killed job's model for a finished one. Returns the MLflow run ids found; none
    when the lake has no MLflow store yet (nothing is created)."""
    if cfg.layout.is_local and not has_store(cfg):
        return []
    if "'" in lake_run_id:
        return []
    import mlflow

    uri = tracking_uri(cfg)
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=cfg.mlflow.registry_uri or uri)
    exp = client.get_experiment_by_name(cfg.mlflow.experiment)
    if exp is None:
        return []
    runs = [
        r
        for r in client.search_runs([exp.experiment_id], filter_string=f"tags.`omicslake.run_id` = '{lake_run_id}'")
        if r.data.tags.get("omicslake.job") not in finished
    ]
    for r in runs:
        if r.info.status == "RUNNING":
            client.set_terminated(r.info.run_id, status="KILLED")
        for mv in client.search_model_versions(f"run_id='{r.info.run_id}'"):
            client.set_model_version_tag(mv.name, mv.version, "omicslake.interrupted", lake_run_id)
    return [r.info.run_id for r in runs]


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


@contextmanager
def tracked_run(experiment_id: str, run_name: str, lake_run_id: str, job: str, **tags: str) -> Iterator[ActiveRun]:
    """An MLflow run in ``experiment_id`` named ``run_name``, tagged ``omicslake.run_id`` = ``lake_run_id``,
    ``omicslake.job`` = ``job`` and ``omicslake.<key>`` = value for each of ``tags`` (e.g. ``cohort=``,
    ``table=``). Yields the active run; the run ends when the block does (FAILED when it raises)."""
    import mlflow

    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as run:
        mlflow.set_tags(
            {"omicslake.run_id": lake_run_id, "omicslake.job": job, **{f"omicslake.{k}": v for k, v in tags.items()}}
        )
        yield run


def log_files(plots: Callable[[Path], Iterable[Path]] | None = None, metrics: Mapping[str, Any] | None = None) -> None:
    """Log files to the active run: the PNGs ``plots(folder)`` draws into a temporary folder and returns
    (artifact folder ``plots/``, in the order returned), then one JSON file per ``metrics`` entry (file
    name -> value, artifact folder ``metrics/``, in the mapping's order). A value that is a ``str`` is
    written as given (JSON text already, e.g. compact for a large file); any other value is written with
    ``json.dumps(value, indent=1)``. Nothing is kept on disk afterwards."""
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for png in plots(folder) if plots is not None else ():
            mlflow.log_artifact(str(png), PLOTS)
        for name, value in (metrics or {}).items():
            path = folder / name
            path.write_text(value if isinstance(value, str) else json.dumps(value, indent=1))
            mlflow.log_artifact(str(path), METRICS)


def log_model(model: Any, registered_name: str | None = None, **kwargs: Any) -> ModelInfo:
    """Log the fitted Spark ML ``model`` to the active run under ``model`` with ``model_requirements()``;
    registered as a new version of ``registered_name`` when given. ``kwargs`` go to
    ``mlflow.spark.log_model`` (signature, input_example, metadata). Returns MLflow's ModelInfo."""
    import mlflow

    return mlflow.spark.log_model(
        model, MODEL, registered_model_name=registered_name, pip_requirements=model_requirements(), **kwargs
    )


def register(name: str, run_id: str, alias: str | None) -> ModelVersion:
    """The newest version of the registered model ``name`` that MLflow run ``run_id`` registered
    (``log_model(..., registered_name=name)``), with ``alias`` pointed at it when given (an empty alias
    moves none). OmicslakeError when the run registered no version of ``name``."""
    import mlflow

    client = mlflow.MlflowClient()
    mine = [m for m in client.search_model_versions(f"name='{name}'") if m.run_id == run_id]
    if not mine:
        raise OmicslakeError(
            f"MLflow run {run_id} registered no version of the model {name}: log the model with "
            f"registered_name={name!r} inside the run before registering it"
        )
    version = max(mine, key=lambda m: int(m.version))
    if alias:
        client.set_registered_model_alias(name, alias, version.version)
    return version


def model_reference(version: int | str | None, alias: str | None) -> str:
    """How a registered model version is asked for, as ``ops.runs`` records it: ``"version <n>"``
    when ``version`` is given, else ``"alias <alias>"``."""
    return f"version {version}" if version is not None else f"alias {alias}"


def resolve_model(name: str, ref: str) -> Any:
    """The MLflow ModelVersion that ``ref`` (``model_reference``) of registered model ``name`` is now;
    MlflowException when there is none. MLflow must be set up (``setup``)."""
    import mlflow

    kind, _, value = ref.partition(" ")
    client = mlflow.MlflowClient()
    return client.get_model_version_by_alias(name, value) if kind == "alias" else client.get_model_version(name, value)


def scoring_model(cfg: Config) -> tuple[str, Any]:
    """The registered model version that ``jobs.score`` names (``model`` or the train job's default
    name; ``version``, else ``alias``), as (name, MLflow ModelVersion); InputError naming the model,
    what was asked for and the tracking store when it is not registered. Sets up MLflow first."""
    import mlflow

    from omicslake.errors import InputError
    from omicslake.ml.model import model_name

    c = cfg.jobs.score
    setup(cfg)
    name = c.model or model_name(c.cohort, cfg.jobs.train.model, cfg.jobs.train.registered_model)
    ref = model_reference(c.version, c.alias)
    try:
        mv = resolve_model(name, ref)
    except mlflow.exceptions.MlflowException as exc:
        raise InputError(
            f"registered model {name!r} has no {ref} in {mlflow.get_tracking_uri()}: run train first, "
            "or set jobs.score.version/alias"
        ) from exc
    return name, mv
