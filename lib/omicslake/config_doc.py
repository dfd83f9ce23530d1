"""docs/configuration.md, generated from the config classes so that it cannot fall behind.

Every key of ``omicslake.config.Config``, section by section, with its type, the value local mode
gets (the embedded defaults with conf/base.yaml, conf/local.yaml and conf/jobs/*.yaml layered on)
and the comment written next to the field in config.py. ``python -m omicslake.jobs.registry``
rewrites the file; tests/unit/test_registry.py checks it is current.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
import typing
from typing import Any

from omicslake import config as C

_FIELD = re.compile(r"^\s+([a-z_][a-z0-9_]*)\s*:\s*[^=#]+(?:=[^#]*)?(?:#\s*(.*))?$")


def _comments(cls: type) -> dict[str, str]:
    """field -> its comment: the trailing one, or the comment lines just above the field."""
    out: dict[str, str] = {}
    above: list[str] = []
    for line in inspect.getsource(cls).splitlines()[1:]:
        stripped = line.strip()
        if stripped.startswith("#"):
            above.append(stripped.lstrip("# ").strip())
            continue
        m = _FIELD.match(line)
        if m:
            text = " ".join([*above, m.group(2) or ""]).strip()
            out[m.group(1)] = text
        above = []
    return out


def _type_name(tp: Any) -> str:
    text = str(tp).replace("typing.", "").replace("<class '", "").replace("'>", "")
    return re.sub(r"\bomicslake\.config\.", "", text).replace("|", "\\|")


def _value(v: Any) -> str:
    return "`" + json.dumps(v, default=str) + "`" if v not in (None, "", (), [], {}) else "(none)"


def markdown() -> str:
    """docs/configuration.md as text: every section and key of the config classes with its type, its
    value in the local environment and the comment that documents it."""
    effective = dataclasses.asdict(C.load_config("local"))
    lines = [
        "# Configuration reference",
        "",
        "Generated from `lib/omicslake/config.py` by `python -m omicslake.jobs.registry`; do not edit by hand.",
        "",
        "Layers, later ones winning: the defaults below, `conf/base.yaml`, `conf/<env>.yaml`, `conf/jobs/<job>.yaml`",
        "(under `jobs.<job>`), `--conf-file FILE`, then `--set key=value`. An unknown key or a wrong type is an error",
        "naming the key and the file. *Local value* is what `--env local` gets with the shipped files.",
        "",
    ]

    def section(cls: type, prefix: str, values: dict[str, Any]) -> None:
        hints = typing.get_type_hints(cls)
        comments = _comments(cls)
        rows, subs = [], []
        for f in dataclasses.fields(cls):
            tp = hints[f.name]
            if dataclasses.is_dataclass(tp):
                subs.append((tp, f"{prefix}{f.name}.", values[f.name]))
                continue
            rows.append(
                f"| `{prefix}{f.name}` | `{_type_name(tp)}` | {_value(values[f.name])} | {comments.get(f.name, '')} |"
            )
        if rows:
            lines.extend(
                [
                    f"## `{prefix.rstrip('.') or 'top level'}`",
                    "",
                    (inspect.getdoc(cls) or "").split("\n")[0]
                    if cls.__doc__ and not cls.__doc__.startswith(cls.__name__)
                    else "",
                    "",
                    "| key | type | local value | meaning |",
                    "|---|---|---|---|",
                    *rows,
                    "",
                ]
            )
        for tp, p, v in subs:
            section(tp, p, v)

    section(C.Config, "", effective)
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).rstrip() + "\n"
