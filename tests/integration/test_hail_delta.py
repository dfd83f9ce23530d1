"""Hail and Delta share one session: Hail -> Spark -> Delta -> back to Hail, unchanged."""

from __future__ import annotations

import chispa
import hail as hl
import pytest
from pyspark.sql import SparkSession

from omicslake.config import Config
from omicslake.io.delta import Lake


@pytest.fixture()
def cfg(cfg: Config) -> Config:
    """Ad-hoc tables without contracts: this module tests the lake itself."""
    return cfg.replace(**{"lake.enforce_contracts": False})


def test_roundtrip_hail_spark_delta_hail(hail: SparkSession, cfg: Config) -> None:
    spark = hail
    hl.set_global_seed(7)
    mt = hl.balding_nichols_model(3, 20, 50, n_partitions=2)
    ht = mt.annotate_rows(n_het=hl.agg.count_where(mt.GT.is_het()), af=hl.agg.mean(mt.GT.n_alt_alleles()) / 2).rows()
    ht = ht.key_by()
    ht = ht.select(
        contig=ht.locus.contig,
        position=ht.locus.position,
        ref=ht.alleles[0],
        alt=ht.alleles[1],
        n_het=ht.n_het,
        af=ht.af,
    )
    spark_df = ht.to_spark()
    lake = Lake(spark, cfg, run_id="hail")
    result = lake.write(spark_df, "bronze.hail_roundtrip", mode="overwrite")
    assert (result.version, result.rows) == (0, 50)

    back_df = lake.read("bronze.hail_roundtrip")
    chispa.assert_df_equality(back_df, spark_df, ignore_row_order=True, ignore_nullable=True)
    back = hl.Table.from_spark(back_df).key_by("contig", "position")
    original = ht.key_by("contig", "position")
    joined = original.annotate(other=back[original.key])
    assert joined.aggregate(
        hl.agg.all(
            (joined.other.n_het == joined.n_het) & (joined.other.af == joined.af) & (joined.other.ref == joined.ref)
        )
    )
    assert back.count() == 50
    # Hail runs on the very SparkContext that carries Delta.
    assert hl.spark_context() is spark.sparkContext
    assert spark.conf.get("spark.sql.extensions") == "io.delta.sql.DeltaSparkSessionExtension"
