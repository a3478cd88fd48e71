"""The `electra` console command: the library's stage commands (`electra_pipeline.cli`) plus
`electra pipeline`, which runs the Prefect flow (`electra_cli.pipeline`).

The layers, top down: `electra_cli` (shell) -> `flows` (Prefect orchestration) and `serving`
(BentoML) -> `electra_pipeline` (the library, which imports none of them).
"""

from __future__ import annotations

import argparse
import sys

from electra_pipeline import cli as library_cli


def build_parser() -> argparse.ArgumentParser:
    """Every `electra` subcommand: the library's and `pipeline`."""
    from electra_cli import pipeline, probe

    parser, sub = library_cli.build_parser(with_subparsers=True)
    probe.add_cli(sub)
    pipeline.add_cli(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    return library_cli.run(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
