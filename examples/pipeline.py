"""A stage-gated tool chain (CloudFlow's EDA and CI use): each step starts only after
the steps it comes after succeeded.

    prepare -> build -> test -> package
                     \\-> lint

Each step is a shell command run by a step actor; its exit code, stdout and stderr
are logged and kept in the run's result. With ``--fail``, ``test`` fails: ``package``
(after it) is skipped, ``lint`` (not after it) still runs, and the run reports which
step failed and why.

    python examples/pipeline.py
    python examples/pipeline.py --fail        # exit code 1, the failing step named
    python examples/pipeline.py --cluster http://127.0.0.1:2379   # steps run on members
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile

import cfactor as cf


def build(work: str, *, fail: bool = False) -> cf.App:
    app = cf.App("pipeline")
    flow = app.session("ci").flow("chain")
    prepare = flow.step(
        cf.shell("mkdir -p src && printf 'a\\nb\\nc\\n' > src/input.txt", cwd=work), "prepare"
    )
    compiled = prepare.then(
        cf.shell("sort -r src/input.txt > build.out && wc -l < build.out", cwd=work), "build"
    )
    check = "grep -q '^c$' build.out && echo 'tests passed'"
    if fail:
        check = "echo 'expected 4 lines, got 3' >&2; exit 3"
    tested = compiled.then(cf.shell(check, cwd=work), "test")
    tested.then(cf.shell("tar cf package.tar build.out && echo packaged", cwd=work), "package")
    flow.step(cf.shell("test -s build.out && echo 'lint clean'", cwd=work), "lint", after=compiled)
    return app


app = build(tempfile.gettempdir())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fail", action="store_true", help="make the test step fail")
    parser.add_argument("--cluster", metavar="ETCD_URL", help="run the steps on this cluster")
    parser.add_argument("--name", default="local", help="the cluster's name (default: local)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    cluster = cf.Cluster(etcd=args.cluster, name=args.name) if args.cluster else None
    with tempfile.TemporaryDirectory() as work:  # members of a local cluster share it
        try:
            result = cf.run(build(work, fail=args.fail).run(cluster=cluster))
        except cf.StepFailed as exc:
            print(f"run failed: {exc}")
            result = exc.result
            code = 1
        else:
            code = 0
    for name, step in result.flow("chain").steps.items():
        exit_code = "" if step.exit_code is None else f" exit {step.exit_code}"
        print(f"{name:8} {step.status}{exit_code}  {step.stdout.strip()!r}")
    return code


if __name__ == "__main__":
    sys.exit(main())
