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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        (getattr(args, "subparser", None) or parser).print_help(sys.stderr)
        return 2
    try:
        code: int = handler(args)
    except UsageError as exc:
        print(f"cfactor: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
