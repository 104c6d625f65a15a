"""YAML out, with no YAML library: dicts, lists, strings, numbers, booleans and None.

Every string is written as a JSON string (double-quoted YAML is JSON's string syntax),
so no value is ever read back as another type (``"no"``, ``"1.10"``, ``"0755"``) and
no character needs thought. Keys that are plain words stay unquoted, for reading.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence

_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_./-]*$")
#: Plain keys that YAML 1.1 readers would turn into booleans or null.
_SPECIAL = {"y", "n", "yes", "no", "on", "off", "true", "false", "null"}


def _key(key: object) -> str:
    if not isinstance(key, str):
        raise TypeError(f"YAML keys here are strings, got {key!r}")
    if _PLAIN_KEY.match(key) and key.lower() not in _SPECIAL:
        return key
    return json.dumps(key)


def _scalar(value: object) -> str | None:
    """The one-line form of a scalar or an empty collection; None for anything else."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"cannot write {value!r} as YAML here")
    one: str | None = None
    if value is None or isinstance(value, bool):
        one = {None: "null", True: "true", False: "false"}[value]
    elif isinstance(value, int | float):
        one = repr(value)
    elif isinstance(value, str):
        one = json.dumps(value)
    elif isinstance(value, Mapping) and not value:
        one = "{}"
    elif isinstance(value, Sequence) and not value:
        one = "[]"
    return one


def _lines(value: object, indent: int) -> list[str]:
    pad = " " * indent
    if isinstance(value, Mapping):
        out = []
        for key, item in value.items():
            one = _scalar(item)
            if one is not None:
                out.append(f"{pad}{_key(key)}: {one}")
            else:
                out.append(f"{pad}{_key(key)}:")
                out.extend(_lines(item, indent + 2))
        return out
    if isinstance(value, Sequence) and not isinstance(value, str):
        out = []
        for item in value:
            one = _scalar(item)
            if one is not None:
                out.append(f"{pad}- {one}")
            else:
                nested = _lines(item, indent + 2)
                nested[0] = f"{pad}- {nested[0][indent + 2 :]}"
                out.extend(nested)
        return out
    raise TypeError(f"cannot write {type(value).__name__} as YAML")


def dump(document: Mapping[str, object]) -> str:
    """One YAML document from a mapping.

    Raises:
        TypeError: A key is not a string, or a value is not dict, list, str, int,
            float, bool or None.
        ValueError: A float is infinite or NaN.
    """
    return "\n".join(_lines(document, 0)) + "\n"


def dump_all(documents: Sequence[Mapping[str, object]]) -> str:
    """Several YAML documents, separated by ``---`` (as ``kubectl apply -f`` reads them).

    Raises:
        TypeError: As ``dump``.
        ValueError: As ``dump``.
    """
    return "---\n".join(dump(document) for document in documents)
