"""What every ``iov`` command shares: argparse-style multi-value options, the shared options (defined once
here and reused), and the turning of user errors into one line and exit status 1.

Click options take one value each; the benchmarks' flags took several (``--seeds 0 1 2``, ``--scenarios
paper-v1 tiny-v1``) and ``--ray`` an optional one. ``IovCommand`` rewrites such argument lists into click's
form before parsing, so every flag keeps the syntax it had under ``python -m benchmarks.X``.
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 110}
_NUMBER = re.compile(r"-\d|-\.\d")


def _is_option(token: str) -> bool:
    """A token that starts a new option (``-1`` and ``-0.5`` are values, as argparse reads them)."""
    return token.startswith("-") and token != "-" and not _NUMBER.match(token)


class Variadic(click.Option):
    """An option followed by any number of values up to the next option, as argparse's ``nargs="+"``/``"*"``.

    ``min_values=1`` is ``nargs="+"``; ``min_values=0`` is ``nargs="*"`` (the flag alone is an empty list).
    A default of ``None`` stays ``None`` when the flag is absent, so "not given" and "given empty" differ.
    """

    def __init__(self, *decls: str, item_type: Any = str, min_values: int = 1, **kwargs: Any) -> None:
        kwargs.setdefault("metavar", f"{click.types.convert_type(item_type).name.upper()}...")
        super().__init__(*decls, multiple=True, type=click.STRING, **kwargs)
        self.item_type = click.types.convert_type(item_type)
        self.min_values = min_values

    def type_cast_value(self, ctx: click.Context, value: Any) -> Any:
        """Convert each value with ``item_type``; refuse too few."""
        if ctx.get_parameter_source(self.name) in (ParameterSource.DEFAULT, None):
            if value is None or (self.default is None and not value):
                return None
            default = value() if callable(value) else value
            return [self.item_type.convert(v, self, ctx) for v in default]
        items = [v for v in (value or ()) if v != ""]
        if len(items) < self.min_values:
            raise click.BadParameter(f"needs at least {self.min_values} value(s)", ctx=ctx, param=self)
        return [self.item_type.convert(v, self, ctx) for v in items]


class OptionalValue(click.Option):
    """An option whose value may be left out, as argparse's ``nargs="?"`` with ``const`` (``--ray [ADDRESS]``)."""

    def __init__(self, *decls: str, const: str, **kwargs: Any) -> None:
        super().__init__(*decls, **kwargs)
        self.const = const


def expand_args(params: Sequence[click.Parameter], args: list[str]) -> list[str]:
    """Rewrite argparse-style ``--opt a b c`` into click's ``--opt=a --opt=b --opt=c`` for ``Variadic`` options,
    and a bare ``--ray`` into ``--ray=<const>``; everything else passes through unchanged."""
    variadic = {o: p for p in params if isinstance(p, Variadic) for o in p.opts}
    optional = {o: p for p in params if isinstance(p, OptionalValue) for o in p.opts}
    out: list[str] = []
    i = 0
    while i < len(args):
        token = args[i]
        if token == "--":
            out.extend(args[i:])
            break
        name, eq, inline = token.partition("=")
        if name in variadic:
            values = [inline] if eq else []
            i += 1
            while i < len(args) and not _is_option(args[i]):
                values.append(args[i])
                i += 1
            out.extend(f"{name}={v}" for v in values) if values else out.append(f"{name}=")
            continue
        if name in optional and not eq:
            if i + 1 < len(args) and not _is_option(args[i + 1]):
                out.append(f"{name}={args[i + 1]}")
                i += 2
            else:
                out.append(f"{name}={optional[name].const}")
                i += 1
            continue
        out.append(token)
        i += 1
    return out


class IovCommand(click.Command):
    """A command whose multi-value options read as they did under argparse (see ``expand_args``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("context_settings", CONTEXT)
        super().__init__(*args, **kwargs)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Expand argparse-style values, then parse as click does."""
        return super().parse_args(ctx, expand_args(self.params, args))


class IovGroup(click.Group):
    """A group whose subcommands are ``IovCommand``s by default; add a study with ``@group.command()``."""

    command_class = IovCommand

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("context_settings", CONTEXT)
        super().__init__(*args, **kwargs)


IovGroup.group_class = IovGroup


class Part(click.ParamType):
    """``I/N``: run every N-th run of a grid, starting at I (split one study across machines)."""

    name = "I/N"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[int, int]:
        """``"1/3"`` -> ``(1, 3)``; anything else is a usage error naming what is allowed."""
        if isinstance(value, tuple):
            return value
        try:
            i, n = (int(x) for x in str(value).split("/"))
        except ValueError:
            self.fail(f"{value!r}; allowed: I/N with 0 <= I < N", param, ctx)
        if not 0 <= i < n:
            self.fail(f"{value!r}; allowed: I/N with 0 <= I < N", param, ctx)
        return i, n


# -- the shared options: defined once, each command picks its default and help ------------------------
def out_option(default: str | None = None, required: bool = False, help: str = "output folder") -> Callable:
    """``--out PATH``."""
    return click.option("--out", type=click.Path(path_type=Path), default=default, required=required,
                        show_default=default is not None, help=help)


def scenarios_option(default: Callable[[], list[str]] | list[str]) -> Callable:
    """``--scenarios ID...``: scenario ids of ``iov_env.scenarios`` (unknown ids are refused by the library)."""
    return click.option("--scenarios", cls=Variadic, default=default, metavar="ID...",
                        help="scenario ids (iov_env.scenarios; default: the command's standard set)")


def agents_option(default: Callable[[], list[str]] | list[str]) -> Callable:
    """``--agents NAME...``."""
    return click.option("--agents", cls=Variadic, default=default, metavar="NAME...",
                        help="agent names (default: the command's standard set)")


def seeds_option(default: int | list[int], help: str | None = None) -> Callable:
    """``--seeds``: a count (seeds 0..n-1) when ``default`` is an int, else a list of seeds."""
    if isinstance(default, int):
        return click.option("--seeds", type=int, default=default, show_default=True,
                            help=help or "number of seeds (0..n-1)")
    return click.option("--seeds", cls=Variadic, item_type=int, default=default, show_default=True,
                        help=help or "seeds")


def workers_option(help: str = "processes running runs in parallel") -> Callable:
    """``--workers N``."""
    return click.option("--workers", type=int, default=1, show_default=True, help=help)


def ray_option(help: str = "run the runs as Ray tasks: a local Ray, or the cluster at ADDRESS (needs the ray "
                           "extra)") -> Callable:
    """``--ray [ADDRESS]``."""
    return click.option("--ray", cls=OptionalValue, const="local", default=None, metavar="[ADDRESS]", help=help)


def reps_option(default: int = 2000) -> Callable:
    """``--reps N``: bootstrap resamples."""
    return click.option("--reps", type=int, default=default, show_default=True, help="bootstrap resamples")


def set_option(help: str = "config overrides KEY=VALUE") -> Callable:
    """``--set KEY=VALUE...``."""
    return click.option("--set", "set_", cls=Variadic, min_values=0, default=[], metavar="KEY=VALUE...", help=help)


# -- running the library ----------------------------------------------------------------------------------
def namespace(params: dict[str, Any], **extra: Any) -> argparse.Namespace:
    """The options as the library's ``args`` (attribute names as the flags; ``set_`` is ``set``)."""
    fields = {("set" if k == "set_" else k): v for k, v in params.items()}
    return argparse.Namespace(**fields, **extra)


def command_line() -> str:
    """The command as typed (``iov leaderboard --seeds 3``), recorded in the reports the commands write."""
    root = click.get_current_context().find_root()
    argv = root.obj.get("argv") if isinstance(root.obj, dict) else None
    return "iov " + " ".join(sys.argv[1:] if argv is None else argv)


def user_errors() -> tuple[type[BaseException], ...]:
    """Errors that are the user's input, not a bug: one line and exit 1, no traceback."""
    errors: list[type[BaseException]] = [ValueError, FileNotFoundError, NotADirectoryError, PermissionError]
    from iov_env.sim.sumo.install import SumoUnavailableError

    errors.append(SumoUnavailableError)
    return tuple(errors)


def reports_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run a command body; a user error becomes ``iov <command>: error: <message>`` and exit status 1.

    ``IOV_DEBUG=1`` lets the traceback through.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            code = fn(*args, **kwargs)
        except user_errors() as exc:
            if os.environ.get("IOV_DEBUG"):
                raise
            ctx = click.get_current_context()
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            click.echo(f"{ctx.command_path}: error: {message}", err=True)
            ctx.exit(1)
        if code:
            click.get_current_context().exit(int(code))

    return wrapper
