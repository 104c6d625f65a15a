"""Finding a module-level class or function by name, on another member.

A class or function travels between members as (module, qualified name, file): the
module's import path, or, for one in a script, the script's file, which the other
member loads under a private module name (the members of a local cluster share the
file system). Never pickle.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from cfactor.errors import ConfigError


def import_path(obj: Any, rule: str) -> tuple[str, str, str]:
    """Where another member finds ``obj`` (a module-level class or function): its
    module, qualified name, and the script's file when it lives in a script.

    Raises:
        ConfigError: ``obj`` is defined inside a function, or in an interactive session.
    """
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        raise ConfigError(
            f"{obj!r:.80} has no module-level name; {rule} so other members can import them"
        )
    if "<" in qualname:  # <locals>, <lambda>
        raise ConfigError(
            f"{qualname} is not reachable by name; {rule} so other members can import them"
        )
    file = ""
    if module == "__main__" or module.startswith(_USER_PREFIX):
        file = str(Path(getattr(sys.modules.get(module), "__file__", "") or "").resolve())
        if not getattr(sys.modules.get(module), "__file__", None):
            raise ConfigError(f"{qualname} lives in an interactive __main__; put it in a module")
        module = "__main__"
    return module, qualname, file


def load_object(module_name: str, qualname: str, file: str) -> Any:
    """Import what ``import_path`` described, on this member.

    Something from a script is loaded from the script's file under a private module
    name (the members of a local cluster share the file system).

    Raises:
        ConfigError: The module or the name cannot be found.
    """
    try:
        module = (
            load_file(file) if module_name == "__main__" else importlib.import_module(module_name)
        )
        target: Any = module
        for part in qualname.split("."):
            target = getattr(target, part)
    except Exception as exc:  # whatever the module's top level raised, too
        raise ConfigError(
            f"cannot load {qualname} from {file or module_name}: {type(exc).__name__}: {exc}"
        ) from exc
    return target


_USER_PREFIX = "cfactor_user_"


def load_file(path: str) -> Any:
    """The module of the script at ``path``, loaded once per process."""
    name = _USER_PREFIX + hashlib.sha1(path.encode(), usedforsecurity=False).hexdigest()[:12]
    module = sys.modules.get(name)
    if module is not None:
        return module
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]  # not half a module for the next try
        raise
    return module
