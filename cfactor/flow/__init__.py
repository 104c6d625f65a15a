"""CloudFlow's programming model: App / Session / Flow / Node / Service.

::

    app = cf.App("wordcount")
    flow = app.session("s1").flow("f1")
    flow.add(read_words, "read", path).map(count_words, "count", 4).reduce(merge, "reduce", 2)
    result = await app.run()          # embedded; `cfactor run FILE.py --cluster URL` too

See docs/flow.md.
"""

from cfactor.flow.context import Context as Context
from cfactor.flow.model import App as App
from cfactor.flow.model import Auto as Auto
from cfactor.flow.model import Flow as Flow
from cfactor.flow.model import Node as Node
from cfactor.flow.model import Session as Session
from cfactor.flow.model import Shell as Shell
from cfactor.flow.model import Step as Step
from cfactor.flow.model import shell as shell
from cfactor.flow.run import FlowResult as FlowResult
from cfactor.flow.run import NodeStats as NodeStats
from cfactor.flow.run import Running as Running
from cfactor.flow.run import RunResult as RunResult
from cfactor.flow.run import StepResult as StepResult

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
