"""De-identification on the way to silver: keyed pseudonyms, ZIP3, 90+ top-coding, date shifts.

HMAC-SHA256 is computed from Spark's own sha2 (RFC 2104: H((K ^ opad) || H((K ^ ipad) || m))),
so pseudonyms need no Python UDF and agree with Python's ``hmac`` byte for byte (tested).
The key comes from the environment or a Databricks secret scope; there is no default key.
Top-coding (``conform.person_rows``) reads the birth date after the shift: an age of 90 or more at
the reference date (at death, for a decedent) sets the birth date to that date minus 90 years
(``age_90_plus``).
"""

from __future__ import annotations

import hashlib
import os

from pyspark.sql import Column
from pyspark.sql import functions as F

from omicslake.config import ConformEhrConfig
from omicslake.errors import ConfigError, SecretError

# ZIP3 areas with 20,000 people or fewer (2000 census), which HIPAA Safe Harbor turns into 000.
SMALL_ZIP3 = (
    "036",
    "059",
    "063",
    "102",
    "203",
    "556",
    "692",
    "790",
    "821",
    "823",
    "830",
    "831",
    "878",
    "879",
    "884",
    "890",
    "893",
)
_BLOCK = 64


def pseudonym_key(c: ConformEhrConfig) -> bytes:
    """The HMAC key: environment variable ``c.key_env``, else the Databricks secret scope."""
    value = os.environ.get(c.key_env)
    if not value and c.secret_scope:
        try:
            from pyspark.dbutils import DBUtils  # type: ignore[import-not-found]  # Databricks only
            from pyspark.sql import SparkSession

            value = DBUtils(SparkSession.getActiveSession()).secrets.get(c.secret_scope, c.secret_key)
        except ImportError as exc:
            raise SecretError(
                f"secret scope {c.secret_scope!r} is set but dbutils is not available (not on Databricks); set {c.key_env} instead"
            ) from exc
    if not value:
        raise SecretError(
            f"no pseudonymisation key: set the environment variable {c.key_env} (e.g. `export {c.key_env}=$(openssl rand -hex 32)`, "
            f"kept in your secret store) or jobs.conform_ehr.secret_scope on Databricks. There is no default key on purpose."
        )
    if len(value) < 16:
        raise SecretError(f"the key in {c.key_env} is shorter than 16 characters; use at least 32 random hex digits")
    return value.encode()


def hmac_sha256(key: bytes, message: Column) -> Column:
    """Hex HMAC-SHA256 of a string column under key, with built-in functions only."""
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_BLOCK, b"\0")
    ipad = bytes(b ^ 0x36 for b in key)
    opad = bytes(b ^ 0x5C for b in key)
    inner = F.unhex(F.sha2(F.concat(F.lit(ipad), F.encode(message, "UTF-8")), 256))
    return F.sha2(F.concat(F.lit(opad), inner), 256)


def pseudonym(key: bytes, domain: str, *parts: Column) -> Column:
    """A keyed pseudonym of a source id (or of a natural key of several columns), separated by
    domain so that a patient id and a visit id never share a pseudonym."""
    msg = F.concat_ws("\x1f", F.lit(domain), *[F.coalesce(p.cast("string"), F.lit("\x00")) for p in parts])
    return hmac_sha256(key, msg)


def shift_days(key: bytes, patient_id: Column, max_days: int) -> Column:
    """Per-patient date offset in days, in [-max_days, -1]: keyed (the first 32 bits of
    HMAC-SHA256(key, "date-shift" US patient id), modulo max_days, plus one, negated), so stable
    across runs, and always into the past. A shifted date is never later than its source date, so
    a recent event cannot land in the future, where the not_in_future rules would quarantine it
    (a positive offset did that to the last weeks or months of a patient's record). ConfigError for
    ``max_days`` below 1 (the modulo would make every shifted date null)."""
    if max_days < 1:
        raise ConfigError(f"jobs.conform_ehr.date_shift_max_days must be at least 1 (day), got {max_days}")
    h = F.conv(F.substring(hmac_sha256(key, F.concat(F.lit("date-shift\x1f"), patient_id)), 1, 8), 16, 10).cast("long")
    return (-(h % F.lit(max_days)) - F.lit(1)).cast("int")


def zip3(zip_code: Column) -> Column:
    """The first three digits of a ZIP code, ``000`` for the restricted prefixes of ``SMALL_ZIP3``.

    The value must start (after blanks) with 3 to 5 digits: ``02139``, ``02139-4307`` and ``021394307``
    give ``021``; 3 or 4 digits are a ZIP whose leading zeros were lost on the way (``2139`` is 02139,
    ``601`` is 00601). Anything else (``MA 02139``, ``ABCDE``, ``12``, empty, null) gives null.
    """
    z = F.lpad(F.regexp_extract(zip_code, r"^\s*(\d{3,5})", 1), 5, "0")
    three = F.substring(z, 1, 3)
    return (
        F.when(F.length(F.regexp_extract(zip_code, r"^\s*(\d{3,5})", 1)) == 0, F.lit(None))
        .when(three.isin(*SMALL_ZIP3), F.lit("000"))
        .otherwise(three)
    )
