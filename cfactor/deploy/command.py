"""``cfactor deploy``: the subcommands' options, help and handler.

Imports nothing heavy, so that ``cfactor --help`` stays fast; the generators load when
a deploy command runs.
"""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

from cfactor.errors import ConfigError

_EPILOG = {
    "compose": """\
        writes (into --out):
          Dockerfile, .dockerignore   the image: cfactor with etcd, and APP.py at /app
          app/APP.py                  a copy of your app file (the build context)
          wheels/                     the cfactor wheel, with --wheel
          compose.yaml                etcd, the members (--replicas), and a `run` service
          keys/cluster.key, .pub      the cluster's CURVE key pair (secret: mode 600)

        then:
          cd OUT && docker compose up -d --build     # etcd and the members
          docker compose run --rm run                # cfactor run APP.py on them
        """,
    "k8s": """\
        writes (into --out):
          Dockerfile, .dockerignore   the image: cfactor with etcd, and APP.py at /app
          app/APP.py                  a copy of your app file (the build context)
          wheels/                     the cfactor wheel, with --wheel
          k8s/00-namespace.yaml       the namespace (unless it is `default`)
          k8s/10-secret.yaml          the CURVE key pair, a Secret (mode 600)
          k8s/20-etcd.yaml            etcd: headless Service + StatefulSet (not with --etcd)
          k8s/30-members.yaml         members: headless Service + Deployment
          k8s/40-run-job.yaml         a Job: cfactor run APP.py on the members

        then:
          docker build -t IMAGE OUT && docker push IMAGE
          kubectl apply -f OUT/k8s/
          kubectl logs -n NAMESPACE job/CLUSTER-run -f
        """,
}


def add_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    usage_error: type[Exception],
) -> None:
    """Add ``deploy compose`` and ``deploy k8s`` to the ``cfactor`` parser.

    Args:
        commands: The ``cfactor`` parser's subcommands.
        usage_error: What the handler raises for a problem the user can fix (the CLI
            prints it as one line and exits with 2).
    """
    deploy = commands.add_parser(
        "deploy",
        help="generate a Dockerfile and Compose or Kubernetes files for an app",
        description="Generate what runs an app on a cluster of containers: one image "
        "(cfactor, etcd and the app), etcd, members, the CURVE keys, and the run.",
    )
    targets = deploy.add_subparsers(dest="deploy_target", metavar="TARGET")
    for target, summary in (
        ("compose", "a Compose file: docker compose up on one machine"),
        ("k8s", "Kubernetes manifests: kubectl apply -f"),
    ):
        parser = targets.add_parser(
            target,
            help=summary,
            description=textwrap.fill(
                f"Write {summary.split(':')[0]}, a Dockerfile and the cluster's keys for "
                "APP.py. Members listen on 0.0.0.0 and advertise the address their peers "
                "reach them at (the pod or container IP). Nothing is contacted: the files "
                "are written, and docs/deploy.md explains each.",
                width=88,
            ),
            epilog=textwrap.dedent(_EPILOG[target]),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        parser.add_argument("app", metavar="APP.py", help="the Python file that defines the app")
        parser.add_argument(
            "--out", default=f"deploy-{target}", help=f"output directory (default: deploy-{target})"
        )
        parser.add_argument("--force", action="store_true", help="overwrite files in --out")
        parser.add_argument("--replicas", type=int, default=2, help="member processes (default: 2)")
        parser.add_argument(
            "--image", default="", help="the image every container runs (default: CLUSTER:latest)"
        )
        parser.add_argument(
            "--cluster-name",
            default="",
            help="the cluster's name; prefixes every object (default: from APP.py's name)",
        )
        parser.add_argument(
            "--port", type=int, default=7000, help="the port members listen on (default: 7000)"
        )
        parser.add_argument(
            "--cpu", default="500m", help="CPU per member, e.g. 500m or 2 (default: 500m)"
        )
        parser.add_argument(
            "--memory", default="512Mi", help="memory per member, e.g. 1Gi (default: 512Mi)"
        )
        parser.add_argument(
            "--etcd",
            metavar="URL",
            default="",
            help="use this etcd (http://HOST:2379, comma-separated for several) "
            "instead of running one",
        )
        parser.add_argument(
            "--keys",
            metavar="NAME",
            help="use the key pair `cfactor keys generate NAME` wrote "
            "(default: generate a new one)",
        )
        parser.add_argument(
            "--install",
            metavar="PIP_SPEC",
            default="",
            help="what the Dockerfile pip-installs (default: this cfactor version, "
            "with the cluster extra)",
        )
        parser.add_argument(
            "--wheel",
            metavar="FILE",
            help="a cfactor wheel to build into the image (from `pip wheel --no-deps .` in "
            "a cfactor checkout) instead of installing from PyPI",
        )
        if target == "k8s":
            parser.add_argument(
                "--namespace", default="default", help="the namespace (default: default)"
            )
        parser.set_defaults(handler=handle, usage_error=usage_error)
    deploy.set_defaults(handler=None, subparser=deploy)


def handle(args: argparse.Namespace) -> int:
    """Generate and write the files; print what was written and what to run next.

    Raises:
        Exception: ``args.usage_error`` (the CLI's one-line, exit-2 error) for a bad
            option, a missing or non-.py APP.py, or a file in the way.
    """
    try:
        return _generate(args)
    except ConfigError as exc:
        raise args.usage_error(str(exc)) from exc


def _generate(args: argparse.Namespace) -> int:
    from cfactor.deploy import GENERATORS, DeploySpec, KeyPair, k8s, write  # noqa: PLC0415
    from cfactor.deploy.spec import DEFAULT_INSTALL  # noqa: PLC0415

    spec = DeploySpec(
        Path(args.app),
        cluster_name=args.cluster_name,
        image=args.image,
        replicas=args.replicas,
        port=args.port,
        cpu=args.cpu,
        memory=args.memory,
        namespace=getattr(args, "namespace", "default"),
        etcd=(args.etcd,) if args.etcd else (),
        install=args.install or DEFAULT_INSTALL,
        wheel=Path(args.wheel) if args.wheel else None,
    )
    keys = KeyPair.load(args.keys) if args.keys else KeyPair.generate()
    files = GENERATORS[args.deploy_target](spec, keys)
    out = Path(args.out)
    owned = k8s.FILES if args.deploy_target == "k8s" else ()
    removed = write(files, out, force=args.force, owned=owned)
    etcd = ", ".join(spec.etcd) if spec.etcd else "its own etcd"
    print(
        f"wrote {len(files)} files to {out}/ for {spec.app.name}: cluster {spec.cluster_name}, "
        f"{spec.replicas} members, image {spec.image}, {etcd}"
    )
    for file in files:
        note = "  (secret, mode 600)" if file.mode == 0o600 else ""
        print(f"  {file.path}{note}")
    for path in removed:
        print(f"removed {out / path}: not part of this deployment")
    print("next:")
    if args.deploy_target == "compose":
        print(f"  cd {out} && docker compose up -d --build")
        print("  docker compose run --rm run")
    else:
        print(f"  docker build -t {spec.image} {out} && docker push {spec.image}")
        print(f"  kubectl apply -f {out}/k8s/")
        print(f"  kubectl logs -n {spec.namespace} job/{spec.name('run')} -f")
    return 0
