"""The `reconcile` command: argv, output streams and exit codes live here only.

Exit codes: 0 success; 1 a failure (invalid state, a node failed); 2 misuse
of the command. `plan --detailed-exitcode` answers 0 for no changes, 2 for
changes and 1 for an error, as `terraform plan -detailed-exitcode` does.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import click

from . import __version__, report
from .apply import FAILED, reconcile
from .connections import ConnectOptions
from .errors import ReconcileError, StateError
from .render import render
from .state import State, StateNotFound, load

log = logging.getLogger(__name__)

STATE_ARG = click.argument(
    "state",
    default=".",
    type=click.Path(exists=True, file_okay=False, readable=True, path_type=Path),
)


# Libraries whose debug output is about themselves, not about the nodes.
QUIET_LOGGERS = {"paramiko": logging.CRITICAL, "invoke": logging.WARNING}
QUIET_LOGGERS["fabric"] = logging.WARNING


def _setup_logging(verbose: int) -> None:
    """Warnings by default; -v adds progress, -vv debug, -vvv library debug."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        root.addHandler(handler)
    level = logging.WARNING - 10 * min(verbose, 2)
    root.setLevel(min(root.level, level) if verbose else level)
    for name, quiet in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(logging.NOTSET if verbose >= 3 else quiet)


def _verbosity(func: Callable[..., Any]) -> Callable[..., Any]:
    """-v accepted after the command too: `reconcile plan -v`."""

    def set_level(ctx: click.Context, param: click.Parameter, value: int) -> int:
        if value:
            _setup_logging(value + ctx.find_root().params.get("verbose", 0))
        return value

    return click.option(
        "-v",
        "--verbose",
        "command_verbose",
        count=True,
        expose_value=False,
        callback=set_level,
        help="More logging on stderr (-vv: debug, -vvv: SSH libraries too).",
    )(func)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-v",
    "--verbose",
    count=True,
    help="More logging on stderr (-vv: debug, -vvv: SSH libraries too).",
)
@click.version_option(__version__, prog_name="reconcile")
def cli(verbose: int) -> None:
    """Make CxEngage nodes match the platform state kept as YAML files."""
    _setup_logging(verbose)


def _load_or_exit(state_dir: Path) -> State:
    try:
        return load(state_dir)
    except StateNotFound as error:
        raise click.BadParameter(str(error), param_hint="'STATE'") from None
    except StateError as error:
        _fail_on_state(state_dir, error, "is invalid")


def _fail_on_state(state_dir: Path, error: StateError, what: str) -> NoReturn:
    click.echo(
        f"Error: the state in '{state_dir}' {what}; no node was touched.", err=True
    )
    for problem in error.problems:
        click.echo(f"  {problem}", err=True)
    sys.exit(1)


@cli.command()
@STATE_ARG
@_verbosity
def validate(state: Path) -> None:
    """Check every state file against its schema and every reference.

    Prints each problem as FILE:LINE: $.PATH: MESSAGE, sorted. Exits 0 when the
    state is valid and 1 when it is not.
    """
    try:
        loaded = load(state)
        render(loaded, secrets=False)
    except StateNotFound as error:
        raise click.BadParameter(str(error), param_hint="'STATE'") from None
    except StateError as error:
        for problem in error.problems:
            click.echo(str(problem))
        count = len(error.problems)
        noun = "problem" if count == 1 else "problems"
        click.echo(f"Found {count} {noun} in '{state}'.", err=True)
        sys.exit(1)
    counts = ", ".join(
        _count(len(objects), kind)
        for kind, objects in loaded.objects.items()
        if objects
    )
    click.echo(f"'{state}' is valid: {counts}.")


def _count(number: int, kind: str) -> str:
    if number == 1:
        return f"1 {kind}"
    return f"{number} {kind}es" if kind.endswith("s") else f"{number} {kind}s"


def _options(func: Callable[..., Any], options: list) -> Callable[..., Any]:
    for option in reversed(options):
        func = option(func)
    return func


PARALLEL_OPTION = click.option(
    "--parallel",
    default=10,
    show_default=True,
    type=click.IntRange(1, 256),
    help="Nodes handled at once.",
)

SSH_OPTIONS = [
    click.option(
        "--identity",
        "-i",
        type=click.Path(exists=True, dir_okay=False),
        help="SSH private key (default: the SSH agent and node settings).",
    ),
    click.option(
        "--known-hosts",
        type=click.Path(dir_okay=False),
        help="known_hosts file to check host keys against "
        "(default: ~/.ssh/known_hosts).",
    ),
    click.option(
        "--accept-new-host-keys",
        is_flag=True,
        help="Trust and record the key of a host not yet in known_hosts "
        "(a changed key is still refused).",
    ),
    click.option(
        "--connect-timeout",
        default=10.0,
        show_default=True,
        type=click.FloatRange(0.1, 600),
        help="Seconds to wait for a node.",
    ),
    click.option(
        "--command-timeout",
        default=120.0,
        show_default=True,
        type=click.FloatRange(1, 3600),
        help="Seconds one node may take to answer.",
    ),
]


def _connection_options(func: Callable[..., Any]) -> Callable[..., Any]:
    node = click.option(
        "--node",
        "nodes",
        multiple=True,
        metavar="ID",
        help="Only this node (IN1/ND1, or ND1 when unique). Repeatable.",
    )
    as_json = click.option(
        "--json", "as_json", is_flag=True, help="Print JSON on stdout."
    )
    return _options(func, [node, PARALLEL_OPTION, *SSH_OPTIONS, as_json])


def _select(keys: Sequence[str], wanted: Sequence[str]) -> list[str]:
    """The node keys named by --node, in the order of the state."""
    if not wanted:
        return list(keys)
    chosen: set[str] = set()
    for name in wanted:
        matches = [key for key in keys if name in (key, key.split("/")[1])]
        if len(matches) != 1:
            known = ", ".join(keys) or "none"
            why = (
                "is ambiguous: name it as INSTANCE/NODE"
                if matches
                else "does not exist"
            )
            raise click.BadParameter(
                f"node {name!r} {why}; nodes: {known}", param_hint="'--node'"
            )
        chosen.update(matches)
    return [key for key in keys if key in chosen]


def _run(
    state: Path,
    apply: bool,
    nodes: Sequence[str],
    parallel: int,
    as_json: bool,
    show_diff: bool = True,
    take_over: bool = False,
    **connection: Any,
) -> list:
    loaded = _load_or_exit(state)
    selected = _select(sorted(loaded.of("node")), nodes)
    try:
        desired = render(loaded, only=selected)
    except StateError as error:
        _fail_on_state(state, error, "cannot be rendered")
    options = ConnectOptions(**connection)
    results = reconcile(
        desired.values(), options, apply=apply, parallel=parallel, take_over=take_over
    )
    if as_json:
        click.echo(json.dumps(report.as_json(results, applied=apply), indent=2))
    else:
        click.echo(report.text(results, applied=apply, show_diff=show_diff), nl=False)
    return results


@cli.command()
@STATE_ARG
@_verbosity
@_connection_options
@click.option(
    "--detailed-exitcode",
    is_flag=True,
    help="Exit 0 when nothing would change, 2 when something would, 1 on error.",
)
@click.option("--no-diff", is_flag=True, help="List changed files without diffs.")
def plan(state: Path, detailed_exitcode: bool, no_diff: bool, **kwargs: Any) -> None:
    """Show what apply would change on each node, with diffs (secrets masked)."""
    results = _run(state, apply=False, show_diff=not no_diff, **kwargs)
    if any(result.status == FAILED for result in results):
        sys.exit(1)
    if detailed_exitcode and any(r.plan and r.plan.changed for r in results):
        sys.exit(2)


@cli.command()
@STATE_ARG
@_verbosity
@_connection_options
@click.option(
    "--take-over",
    is_flag=True,
    help="Overwrite files at managed paths that reconcile did not write "
    "(refused by default).",
)
def apply(state: Path, take_over: bool, **kwargs: Any) -> None:
    """Make every node match the state; exit 1 if any node failed."""
    results = _run(state, apply=True, take_over=take_over, **kwargs)
    if any(result.status == FAILED for result in results):
        sys.exit(1)


@cli.command()
@STATE_ARG
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on. The API has no authentication: keep "
    "it on loopback or a trusted network.",
)
@click.option(
    "--port",
    default=8080,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to listen on (0: any free port).",
)
@click.option(
    "--threads",
    default=10,
    show_default=True,
    type=click.IntRange(1, 256),
    help="Requests served at once.",
)
@click.option(
    "--no-commit",
    is_flag=True,
    help="Do not commit writes, even when the state is a git work tree.",
)
@lambda func: _options(func, [PARALLEL_OPTION, *SSH_OPTIONS])
@_verbosity
def serve(
    state: Path,
    host: str,
    port: int,
    threads: int,
    no_commit: bool,
    parallel: int,
    **connection: Any,
) -> None:
    """Serve the platform's /1.0 admin API over the state files.

    Reads and writes the same YAML files that apply reads; each write is
    validated, written atomically and, in a git work tree, committed. Stops
    cleanly on SIGTERM or Ctrl-C.
    """
    from .api.server import serve as run_server
    from .store import Store

    store = Store(state, commit=not no_commit)
    stopped_by = run_server(
        store,
        host,
        port,
        ConnectOptions(**connection),
        threads=threads,
        parallel=parallel,
        ready=lambda url: click.echo(
            f"Serving {url}/1.0/ from '{state}' "
            f"(routes: {url}/1.0/openapi.json); "
            + (
                f"writes are committed to git in {store.repo.top}"
                if store.repo
                else "writes are not committed"
            )
            + "; Ctrl-C stops.",
            err=True,
        ),
    )
    click.echo(f"Stopped on {stopped_by}.", err=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code instead of raising SystemExit."""
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="reconcile")
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 1
    except ReconcileError as error:
        click.echo(f"Error: {error}", err=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
