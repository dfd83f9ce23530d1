"""Counter-based randomness as Spark columns: a value depends on (seed, stream, keys) only.

Nothing depends on partitioning or on the order Spark happens to process rows in, so the same
seed writes the same files on 1 core or 200.
"""

from __future__ import annotations

import math

from pyspark.sql import Column
from pyspark.sql import functions as F

_TWO53 = 2**53


def uniform(seed: int, stream: str, *keys: Column | str) -> Column:
    """U[0, 1) from the hash of seed, stream name and key columns."""
    cols = [F.col(k) if isinstance(k, str) else k for k in keys]
    h = F.xxhash64(F.lit(seed), F.lit(stream), *cols)
    return F.pmod(h, F.lit(_TWO53)).cast("double") / F.lit(float(_TWO53))


def normal(seed: int, stream: str, *keys: Column | str, mean: float = 0.0, sd: float = 1.0) -> Column:
    """N(mean, sd) by Box-Muller on two independent uniforms."""
    u1 = F.greatest(uniform(seed, stream + ":a", *keys), F.lit(1e-12))
    u2 = uniform(seed, stream + ":b", *keys)
    z = F.sqrt(F.lit(-2.0) * F.log(u1)) * F.cos(F.lit(2 * math.pi) * u2)
    return F.lit(mean) + F.lit(sd) * z


def bernoulli(seed: int, stream: str, p: Column | float, *keys: Column | str) -> Column:
    """A boolean column, true with probability ``p`` (a column or a number), from ``uniform`` on
    seed, stream and key columns: the same keys give the same draw."""
    p_col = p if isinstance(p, Column) else F.lit(p)
    return uniform(seed, stream, *keys) < p_col


def randint(seed: int, stream: str, low: int, high: int, *keys: Column | str) -> Column:
    """Integer in [low, high]."""
    return (F.lit(low) + F.floor(uniform(seed, stream, *keys) * F.lit(high - low + 1))).cast("int")


def choice(
    seed: int, stream: str, values: list[str], *keys: Column | str, weights: list[float] | None = None
) -> Column:
    """One of values (weighted), as a string column."""
    weights = weights or [1.0] * len(values)
    total = sum(weights)
    u = uniform(seed, stream, *keys)
    acc = 0.0
    expr = F.lit(values[-1])
    branches = []
    for v, w in zip(values[:-1], weights[:-1], strict=False):
        acc += w / total
        branches.append((acc, v))
    for bound, v in reversed(branches):
        expr = F.when(u < F.lit(bound), F.lit(v)).otherwise(expr)
    return expr


def uuid_from(seed: int, stream: str, *keys: Column | str) -> Column:
    """A deterministic UUID-shaped id (like Synthea's ids)."""
    cols = [F.col(k) if isinstance(k, str) else k for k in keys]
    h = F.md5(F.concat_ws("|", F.lit(str(seed)), F.lit(stream), *[c.cast("string") for c in cols]))
    return F.concat_ws(
        "-",
        F.substring(h, 1, 8),
        F.substring(h, 9, 4),
        F.substring(h, 13, 4),
        F.substring(h, 17, 4),
        F.substring(h, 21, 12),
    )
