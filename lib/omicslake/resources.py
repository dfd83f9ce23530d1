"""Where the project's data folders (conf/, schemas/) are found at run time.

In a checkout (editable install) they sit at the repository root, two levels above this
package. In a built wheel they are bundled inside the package as ``omicslake/_bundled/<name>``
so that ``spark-submit --py-files omicslake.whl`` finds them on every node.
``$OMICSLAKE_HOME`` points at another root holding both folders.
"""

from __future__ import annotations

import os
from pathlib import Path

from omicslake.errors import ConfigError

_PKG = Path(__file__).resolve().parent


def resource_dir(name: str) -> Path:
    """The folder ``name`` (``conf`` or ``schemas``)."""
    candidates = []
    home = os.environ.get("OMICSLAKE_HOME")
    if home:
        candidates.append(Path(home) / name)
    candidates += [_PKG / "_bundled" / name, _PKG.parent.parent / name]
    zipped = _from_zip(name)
    if zipped is not None:
        candidates.append(zipped)
    for path in candidates:
        if path.is_dir():
            return path
    raise ConfigError(
        f"cannot find the {name}/ folder (looked in {[str(c) for c in candidates]}); "
        "set OMICSLAKE_HOME to the folder that holds conf/ and schemas/"
    )


def _from_zip(name: str) -> Path | None:
    """When the package is imported from a wheel or zip (``spark-submit --py-files x.whl``), the
    bundled folder is extracted once to a cache folder (pathlib cannot walk inside a zip)."""
    import hashlib
    import tempfile
    import zipfile

    text = str(_PKG)
    for marker in (".whl", ".zip", ".egg"):
        i = text.find(marker + os.sep)
        if i >= 0:
            archive = Path(text[: i + len(marker)])
            break
    else:
        return None
    if not zipfile.is_zipfile(archive):
        return None
    digest = hashlib.sha256(f"{archive}:{archive.stat().st_mtime_ns}".encode()).hexdigest()[:12]
    target = Path(tempfile.gettempdir()) / f"omicslake-bundled-{digest}"
    prefix = f"omicslake/_bundled/{name}/"
    if not (target / name).is_dir():
        with zipfile.ZipFile(archive) as z:
            members = [m for m in z.namelist() if m.startswith(prefix)]
            if not members:
                return None
            tmp = Path(tempfile.mkdtemp(prefix="omicslake-bundled-", dir=tempfile.gettempdir()))
            for m in members:
                z.extract(m, tmp)
            (target).mkdir(parents=True, exist_ok=True)
            src = tmp / "omicslake" / "_bundled" / name
            try:
                src.rename(target / name)
            except OSError:  # another process got there first
                pass
    return target / name
