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
    for path in candidates:
        if path.is_dir():
            return path
    raise ConfigError(
        f"cannot find the {name}/ folder (looked in {[str(c) for c in candidates]}); "
        "set OMICSLAKE_HOME to the folder that holds conf/ and schemas/"
    )
