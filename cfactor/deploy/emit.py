"""YAML out, with no YAML library: dicts, lists, strings, integers, booleans and None.

Every string is written double-quoted, with what is not printable escaped, so no
value is ever read back as another type (``"no"``, ``"1.10"``, ``"0755"``) and
no character needs thought. Keys that are plain words stay unquoted, for reading.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_./-]*")
_LONGEST_KEY = 1000
#: Plain keys that YAML 1.1 readers would turn into booleans or null.
_SPECIAL = {"y", "n", "yes", "no", "on", "off", "true", "false", "null"}


def _printable(code: int) -> bool:
    # YAML's printable characters, less its line breaks (NEL, LS, PS) and the BOM.
    return (
        0x20 <= code <= 0x7E
        or (
            0xA0 <= code <= 0xFFFD
            and code not in {0x2028, 0x2029, 0xFEFF}
            and not 0xD800 <= code <= 0xDFFF
        )
        or code >= 0x10000
    )


def _string(text: str) -> str:
    """A double-quoted YAML string: printable characters as they are, the rest escaped."""
    out = ['"']
    for char in text:
        code = ord(char)
        if char in {'"', "\\"}:
            out.append("\\" + char)
        elif _printable(code):
            out.append(char)
        elif code < 0x100:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def _key(key: object) -> str:
    if not isinstance(key, str):
        raise TypeError(f"YAML keys here are strings, got {key!r}")
    if _PLAIN_KEY.fullmatch(key) and key.lower() not in _SPECIAL:
        return key
    return _string(key)


def _scalar(value: object) -> str | None:
    """The one-line form of a scalar or an empty collection; None for anything else."""
    if isinstance(value, bytes | bytearray):
        raise TypeError("cannot write bytes as YAML: decode them first")
    one: str | None = None
    if value is None or isinstance(value, bool):
        one = {None: "null", True: "true", False: "false"}[value]
    elif isinstance(value, int):
        one = str(int(value))
    elif isinstance(value, str):
        one = _string(value)
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
            written = _key(key)
            if len(written) > _LONGEST_KEY:
                # YAML's implicit keys end at 1024 characters; longer ones are explicit.
                out.append(f"{pad}? {written}")
                written = ""
            one = _scalar(item)
            if one is not None:
                out.append(f"{pad}{written}: {one}")
            else:
                out.append(f"{pad}{written}:")
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
        TypeError: A key is not a string, or a value is not a dict, list, str, int,
            bool or None (no floats: YAML readers disagree on how to read some).
    """
    return "\n".join(_lines(document, 0)) + "\n"


def dump_all(documents: Sequence[Mapping[str, object]]) -> str:
    """Several YAML documents, separated by ``---`` (as ``kubectl apply -f`` reads them).

    Raises:
        TypeError: As ``dump``.
    """
    return "---\n".join(dump(document) for document in documents)
