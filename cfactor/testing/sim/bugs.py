"""Past bugs of this project, put back on demand, to show the simulation finds them.

``reintroduce(name)`` patches the runtime for the length of a ``with`` block; nothing
here is imported by the runtime itself.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

#: name -> (what it was, a function that patches it in and returns its undo)
BUGS: dict[str, tuple[str, Callable[[], Callable[[], None]]]] = {}


@contextlib.contextmanager
def reintroduce(name: str | None) -> Iterator[None]:
    if name is None:
        yield
        return
    undo = BUGS[name][1]()
    try:
        yield
    finally:
        undo()
