"""Layered YAML config: defaults, layering, overrides and every error path."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from omicslake.config import Config, load_config
from omicslake.errors import ConfigError
from omicslake.resources import resource_dir


@pytest.fixture()
def conf_dir(tmp_path: Path) -> Path:
    target = tmp_path / "conf"
    shutil.copytree(resource_dir("conf"), target)
    return target


def test_local_defaults_are_embedded() -> None:
    cfg = load_config("local")
    assert cfg.env == "local"
    assert cfg.spark.mode == "local"
    assert cfg.spark.master == "local[2]"
    assert cfg.lake.root == "./lakehouse"
    assert cfg.delta.version == "3.3.2"
    assert cfg.hail.reference_genome == "GRCh38"


def test_env_layers_over_base_and_set_wins() -> None:
    cfg = load_config("databricks", overrides=["lake.catalog=main", "jobs.generate.patients=77"])
    assert cfg.spark.mode == "databricks"
    assert cfg.lake.catalog == "main"  # --set beats conf/databricks.yaml's omicslake
    assert cfg.lake.schemas["gold"] == "gold"
    assert cfg.jobs.generate.patients == 77


def test_spark_conf_keys_keep_their_dots() -> None:
    cfg = load_config("local", overrides=["spark.conf.spark.executor.memory=2g"])
    # merged with conf/local.yaml's own spark.conf entry, each key whole
    assert cfg.spark.conf == {"spark.executor.memory": "2g", "spark.databricks.delta.snapshotPartitions": "2"}


def test_conf_file_layer(tmp_path: Path) -> None:
    extra = tmp_path / "mine.yaml"
    extra.write_text("lake:\n  root: /data/lake\njobs:\n  generate:\n    seed: 9\n")
    cfg = load_config("local", conf_files=[extra])
    assert (cfg.lake.root, cfg.jobs.generate.seed) == ("/data/lake", 9)


def test_config_is_frozen() -> None:
    cfg = load_config("local")
    with pytest.raises(AttributeError):
        cfg.env = "x"  # type: ignore[misc]


def test_replace_and_digest() -> None:
    cfg = load_config("local")
    other = cfg.replace(**{"lake.root": "/elsewhere"})
    assert other.lake.root == "/elsewhere" and cfg.lake.root == "./lakehouse"
    assert cfg.digest() != other.digest()
    assert cfg.digest() == load_config("local").digest()


def test_unknown_key_names_key_and_file(conf_dir: Path) -> None:
    (conf_dir / "local.yaml").write_text("spark:\n  mode: local\n  executors: 4\n")
    with pytest.raises(ConfigError) as err:
        load_config("local", conf_dir=conf_dir)
    assert "spark.executors" in str(err.value)
    assert str(conf_dir / "local.yaml") in str(err.value)


def test_wrong_type_names_key_and_file(conf_dir: Path) -> None:
    (conf_dir / "jobs" / "generate.yaml").write_text("patients: many\n")
    with pytest.raises(ConfigError) as err:
        load_config("local", conf_dir=conf_dir)
    msg = str(err.value)
    assert "jobs.generate.patients must be an integer" in msg
    assert "generate.yaml" in msg


def test_bad_yaml_names_file_and_line(conf_dir: Path) -> None:
    (conf_dir / "local.yaml").write_text("spark:\n  mode: local\n  master: [local\n")
    with pytest.raises(ConfigError, match=r"local\.yaml at line \d+.*not valid YAML"):
        load_config("local", conf_dir=conf_dir)


def test_literal_choices_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"spark.mode must be one of \['local', 'cluster', 'databricks'\]"):
        load_config("local", overrides=["spark.mode=yarn"])


def test_bool_is_not_an_int() -> None:
    with pytest.raises(ConfigError, match="jobs.generate.seed must be an integer"):
        load_config("local", overrides=["jobs.generate.seed=true"])


def test_set_needs_key_value() -> None:
    with pytest.raises(ConfigError, match="expected key=value"):
        load_config("local", overrides=["lake.root"])


def test_set_unknown_key() -> None:
    with pytest.raises(ConfigError, match=r"--set: unknown key 'lake.rooot'"):
        load_config("local", overrides=["lake.rooot=/x"])


def test_unknown_env_lists_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown environment 'prod'.*'cluster'.*'databricks'.*'local'"):
        load_config("prod")


def test_top_level_must_be_mapping(conf_dir: Path) -> None:
    (conf_dir / "local.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config("local", conf_dir=conf_dir)


def test_every_shipped_env_loads() -> None:
    for env in ("local", "cluster", "databricks"):
        assert isinstance(load_config(env), Config)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("jobs.train.cohort", "t2d; DROP TABLE silver.person"),
        ("jobs.score.model", "m' OR name LIKE '%"),
        ("jobs.gwas.name", "x`; DELETE FROM gold.prs --"),
        ("jobs.survival.registered_model", "../../etc"),
        ("jobs.cluster.cohort", "a b"),
    ],
)
def test_values_that_become_names_refuse_an_injection(key: str, value: str) -> None:
    """A config value that becomes part of a table or MLflow model name (and of the SQL or filter
    strings built from it) is an identifier, checked when the config is read; the error names the key."""
    import json

    with pytest.raises(ConfigError) as err:
        load_config("local", overrides=[f"{key}={json.dumps(value)}"])
    assert key in str(err.value) and "table, column or model name" in str(err.value)
    with pytest.raises(ConfigError):
        load_config("local").replace(**{key: value})
    assert load_config("local", overrides=[f"{key}=fine_name_2"]) is not None


def test_a_table_name_with_sql_in_it_is_refused_by_the_lake(tmp_path: Path) -> None:
    from omicslake.io.delta import Lake

    lake = Lake(None, load_config("local", overrides=[f"lake.root={tmp_path}"]))  # type: ignore[arg-type]
    for bad in ("gold.features_x; DROP TABLE y", "gold.`x`", "../gold.x", "gold.x y"):
        with pytest.raises(Exception) as err:
            lake.split(bad)
        assert bad in str(err.value) or repr(bad) in str(err.value)
