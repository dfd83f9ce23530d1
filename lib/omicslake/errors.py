"""Error classes of omicslake.

Every message names the file, table, column or line at fault and says what to do about it.
"""

from __future__ import annotations

from typing import Any


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


class MachineError(OmicslakeError):
    """The JVM or the machine failed (out of memory, code cache or disk) while reading an input.

    Not the input's fault: the job stops instead of refusing the file, so a good file is never
    recorded as bad; the file is read again by the next run."""


# Java errors that say the machine ran out of something, whichever file was being read. Matched in
# the exception's text (Hail's FatalError carries the Java error's class and message as text).
_MACHINE_SIGNS = (
    "OutOfMemoryError",
    "VirtualMachineError",
    "Out of space in CodeCache",
    "CodeCache is full",
    "No space left on device",
    "Disk quota exceeded",
)


def java_chain(exc: BaseException) -> list[Any]:
    """The Java throwable behind a py4j error and its causes, outermost first ([] for a Python-side
    error). Raises whatever py4j raises when the JVM is gone."""
    chain = []
    java = getattr(exc, "java_exception", None)
    while java is not None and all(java != seen for seen in chain):
        chain.append(java)
        java = java.getCause()
    return chain


def machine_error(exc: BaseException, what: str) -> MachineError | None:
    """A MachineError naming ``what`` when ``exc`` is a failure of the JVM or the machine, else None."""
    text = str(exc)
    try:
        text += "".join(" " + str(t.toString()) for t in java_chain(exc))
    except Exception:  # noqa: BLE001 - the JVM may be gone, which is itself such a failure
        text += " VirtualMachineError"
    sign = next((s for s in _MACHINE_SIGNS if s in text), None)
    if sign is None:
        return None
    line = next(ln for ln in text.splitlines() if sign in ln).strip(" :\t")[:300]  # Java's words, never row values
    return MachineError(
        f"{what}: the JVM or the machine failed while reading it ({line}), which is not the file's "
        "fault; the job stopped and wrote nothing of it, and the next run reads it again. Give the "
        "driver more memory (spark.driver_memory), the JIT more code cache "
        "(-XX:ReservedCodeCacheSize) or the local directories more disk, then rerun."
    )
