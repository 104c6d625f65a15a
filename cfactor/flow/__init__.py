"""CloudFlow's programming model: App / Session / Flow / Node / Service.

::

    app = cf.App("wordcount")
    flow = app.session("s1").flow("f1")
    flow.add(read_words, "read", path).map(count_words, "count", 4).reduce(merge, "reduce", 2)
    result = await app.run()          # embedded; `cfactor run FILE.py --cluster URL` too

See docs/flow.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cfactor._lazy import lazy_attributes
from cfactor.flow.model import App as App
from cfactor.flow.model import Auto as Auto
from cfactor.flow.model import Flow as Flow
from cfactor.flow.model import Node as Node
from cfactor.flow.model import Session as Session
from cfactor.flow.model import Shell as Shell
from cfactor.flow.model import Step as Step
from cfactor.flow.model import shell as shell

if TYPE_CHECKING:
    from cfactor.flow.context import Context as Context
    from cfactor.flow.run import FlowResult as FlowResult
    from cfactor.flow.run import NodeStats as NodeStats
    from cfactor.flow.run import Running as Running
    from cfactor.flow.run import RunResult as RunResult
    from cfactor.flow.run import StepResult as StepResult

#: Loaded when first used: building an app needs only the model; the driver (and, with
#: it, the actors, threads and HTTP endpoint) loads when the app runs.
_LAZY = {
    "Context": "cfactor.flow.context",
    "FlowResult": "cfactor.flow.run",
    "NodeStats": "cfactor.flow.run",
    "Running": "cfactor.flow.run",
    "RunResult": "cfactor.flow.run",
    "StepResult": "cfactor.flow.run",
}


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)

__all__ = [
    "App",
    "Auto",
    "Context",
    "Flow",
    "FlowResult",
    "Node",
    "NodeStats",
    "RunResult",
    "Running",
    "Session",
    "Shell",
    "Step",
    "StepResult",
    "shell",
]
