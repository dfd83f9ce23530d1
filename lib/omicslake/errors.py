"""Error classes of omicslake.

Every message names the file, table, column or line at fault and says what to do about it.
"""

from __future__ import annotations


class OmicslakeError(Exception):
    """Base class of every error omicslake raises on purpose."""


class ConfigError(OmicslakeError):
    """A configuration file or override is malformed, unknown or of the wrong type."""


class IdentifierError(OmicslakeError):
    """A table or column name is not a plain SQL identifier."""


class TableNotFoundError(OmicslakeError):
    """A table was read before any job wrote it."""


class ContractError(OmicslakeError):
    """A DataFrame does not match its schema contract in schemas/."""


class ExpectationFailed(OmicslakeError):
    """A data-quality expectation with action 'fail' was violated."""


class JarResolutionError(OmicslakeError):
    """Delta Lake's JVM jars are neither cached nor reachable on Maven Central."""


class InputError(OmicslakeError):
    """A raw input file is missing or malformed."""


class SecretError(OmicslakeError):
    """A required secret (such as the pseudonymisation key) is not set."""


class ReconciliationError(OmicslakeError):
    """Rows were lost or invented between what a job read and what it wrote (counted both sides)."""


class ConcurrentWriteError(OmicslakeError):
    """Another writer committed to a table while a job wrote it, more often than lake.conflict_retries allows."""
