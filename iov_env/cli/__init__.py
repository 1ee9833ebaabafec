"""``iov``: one command for every job, ``iov --help`` lists them.

Thin by design: each command parses its options, calls a library function (``benchmarks``,
``benchmarks.studies``, ``iov_env``) and exits: 0 ok, 2 a usage error (click's), 1 a run error with a
one-line message naming the problem. ``import iov_env`` does not import this package.
"""

from __future__ import annotations

from collections.abc import Sequence

import click

from iov_env.cli import bench, studies, world
from iov_env.cli.options import IovGroup


@click.group(cls=IovGroup)
@click.version_option(package_name="iov-env", prog_name="iov")
def iov() -> None:
    """iov-env: energy-constrained federated LoRA rank scheduling in vehicle networks."""


for _command in (*world.COMMANDS, *bench.COMMANDS, *studies.COMMANDS):
    iov.add_command(_command)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``iov`` with ``argv`` (default ``sys.argv[1:]``); return the exit status instead of exiting."""
    args = None if argv is None else list(argv)
    try:
        # without standalone mode click returns (not raises) a ctx.exit() status, and a callback's return value
        status = iov.main(args=args, prog_name="iov", standalone_mode=False, obj={"argv": args})
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:  # Ctrl-C: the shell's status for SIGINT
        click.echo("Aborted!", err=True)
        return 130
    return status if isinstance(status, int) else 0


def run() -> None:
    """The console script's entry point."""
    raise SystemExit(main())


if __name__ == "__main__":
    run()
