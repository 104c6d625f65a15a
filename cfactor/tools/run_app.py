"""``cfactor run FILE.py``: run the app a file defines, embedded or on a cluster."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cfactor as cf
from cfactor.errors import CfactorError, ConfigError, FlowError, NodeFailed
from cfactor.loading import load_file
from cfactor.tools.local_cluster import ToolError, check_url, run_node_functions_well

if TYPE_CHECKING:
    from cfactor.flow.run import RunResult


def find_app(path: str, name: str | None) -> cf.App:
    """The ``cf.App`` the file at ``path`` defines at module level.

    The file is imported (its ``if __name__ == "__main__":`` block does not run), the
    way cluster members import it to find the Node functions.

    Raises:
        ToolError: The file cannot be imported, or it defines no app, or several and
            ``name`` does not pick one.
    """
    file = Path(path)
    if not file.is_file():
        raise ToolError(f"{path}: no such file")
    try:
        module = load_file(str(file.resolve()))
    except Exception as exc:  # whatever its top level raised: the user's to fix
        raise ToolError(f"cannot import {path}: {type(exc).__name__}: {exc}") from exc
    apps = {v.name: v for v in vars(module).values() if isinstance(v, cf.App)}
    if name is not None:
        if name not in apps:
            raise ToolError(f"{path} defines no app named {name!r} (it has {sorted(apps)})")
        return apps[name]
    if not apps:
        raise ToolError(f"{path} defines no cf.App at module level")
    if len(apps) > 1:
        raise ToolError(f"{path} defines several apps {sorted(apps)}; pick one with --app")
    return next(iter(apps.values()))


def _short(value: Any, limit: int = 100) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def summary(result: RunResult) -> dict[str, Any]:
    """The run's figures as plain values (``--json``)."""
    return {
        "app": result.app,
        "seconds": round(result.seconds, 3),
        "flows": {
            key: {
                "outputs": {leaf: len(items) for leaf, items in flow.outputs.items()},
                "nodes": {
                    name: {
                        "kind": s.kind,
                        "replicas": s.replicas,
                        "in": s.items_in,
                        "out": s.items_out,
                        "dropped": s.dropped,
                    }
                    for name, s in flow.nodes.items()
                },
                "steps": {
                    name: {
                        "status": s.status,
                        "exit_code": s.exit_code,
                        "seconds": round(s.seconds, 3),
                    }
                    for name, s in flow.steps.items()
                },
            }
            for key, flow in result.flows.items()
        },
    }


def print_result(result: RunResult) -> None:
    print(f"app {result.app}: done in {result.seconds:.2f} s")
    for key, flow in result.flows.items():
        print(f"flow {key}")
        for name, step in flow.steps.items():
            code = "" if step.exit_code is None else f" (exit code {step.exit_code})"
            print(f"  step {name}: {step.status}{code} in {step.seconds:.2f} s")
        for name, stats in flow.nodes.items():
            print(
                f"  node {name}: {stats.kind}, {stats.replicas} replicas, "
                f"{stats.items_in} in, {stats.items_out} out"
            )
        for leaf, items in flow.outputs.items():
            shown = ", ".join(_short(i) for i in items[:3])
            more = f", ... ({len(items)} in all)" if len(items) > 3 else ""
            print(f"  output of {leaf}: [{shown}{more}]")


def run(
    path: str,
    *,
    app_name: str | None,
    cluster_url: str | None,
    cluster_name: str,
    progress: bool | None,
    as_json: bool,
) -> int:
    if cluster_url is not None:
        check_url("--cluster", cluster_url, ("http", "https"))
    app = find_app(path, app_name)
    run_node_functions_well()
    cluster = cf.Cluster(etcd=cluster_url, name=cluster_name) if cluster_url else None
    try:
        result = cf.run(app.run(cluster=cluster, progress=progress))
    except NodeFailed as exc:
        print(f"cfactor: run failed: {exc}", file=sys.stderr)
        if exc.traceback:
            print(exc.traceback, file=sys.stderr, end="")
        return 1
    except FlowError as exc:
        print(f"cfactor: run failed: {exc}", file=sys.stderr)
        return 1
    except ConfigError as exc:
        raise ToolError(str(exc)) from exc
    except CfactorError as exc:
        print(f"cfactor: run failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps(summary(result)))
    else:
        print_result(result)
    return 0
