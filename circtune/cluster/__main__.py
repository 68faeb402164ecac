"""``python -m circtune.cluster check cluster.yaml``: check a cluster file before ``ray up``.

Prints one line per problem (unfilled placeholders, servers listening on a
public address, what Ray's cluster schema rejects) and exits with status 2
when there is any, 0 when the file is ready.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from circtune._cli import EXIT_USAGE, ArgumentParser, configure_logging, run_main


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser."""
    parser = ArgumentParser(
        prog="python -m circtune.cluster",
        description="Work with the Ray cluster that runs circtune searches. docs/cluster.md describes the flow.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser(
        "check",
        help="check a cluster file for unfilled placeholders, public listen addresses and schema errors",
        description="Check a Ray cluster-launcher file offline, without cloud access. Prints one line per "
        "problem and exits with status 2 when there is any.",
    )
    check.add_argument("path", type=Path, nargs="?", default=Path("cluster.yaml"), help="default: cluster.yaml")
    check.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command named on the command line; return the exit status."""
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    # Ray's preparation logs one INFO line per node type that it fills in.
    logging.getLogger("ray.autoscaler").setLevel(logging.DEBUG if args.verbose else logging.WARNING)

    from circtune.cluster.config import check_cluster_config

    problems = check_cluster_config(args.path)
    for problem in problems:
        print(f"{args.path}: {problem}")
    if problems:
        return EXIT_USAGE
    print(f"{args.path}: no problems found; start the cluster with: ray up {args.path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
