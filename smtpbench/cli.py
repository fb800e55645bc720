"""The ``smtpbench`` command line: ``run``, ``conform``, ``compare``, ``report``, ``sink``, ``probe`` and ``schema``.

Each subsystem registers its own sub-command (``register(app)``) so that this
module stays a table of contents.  Exit codes (README, "Exit codes"): 0 done,
1 checks or thresholds failed, 2 usage or configuration error, 3 the run
could not be carried out (target unusable, results not writable).
"""

from __future__ import annotations

import importlib
import sys
from importlib import metadata
from typing import Annotated, Any, NoReturn

import typer
import typer.core

from smtpbench.errors import ConfigError, fail

#: The installed distribution (the import package and command are "smtpbench").
DISTRIBUTION = "smtpbench-loadtest"


class _OneLineErrors(typer.core.TyperGroup):
    """The command group: a usage error (``--port abc``, an unknown option) is one ``smtpbench: error:`` line, exit 2.

    Click prints those as a usage block of four lines; every other bad input of every command is one line
    (:func:`smtpbench.errors.fail`).  The help shown for no arguments at all stays as it is.
    """

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        """Parse the options before the sub-command (``--version``); a usage error ends as one line."""
        try:
            return super().parse_args(ctx, args)
        except Exception as exc:
            _usage_error(exc, "smtpbench")

    def invoke(self, ctx: Any) -> Any:
        """Run the sub-command; a usage error ends as one line."""
        try:
            return super().invoke(ctx)
        except Exception as exc:
            _usage_error(exc, f"smtpbench {ctx.invoked_subcommand or ''}".strip())


def _usage_error(exc: Exception, command: str) -> NoReturn:
    """Re-raise ``exc`` unless it is a click usage error; end that with one line naming ``command --help``."""
    # By name: the click classes live in click or, in newer typer, in typer's own copy of click.
    kinds = {kind.__name__ for kind in type(exc).__mro__}
    if "UsageError" not in kinds or "NoArgsIsHelpError" in kinds:
        raise exc
    message = str(getattr(exc, "format_message", exc.__str__)()).rstrip(".")
    fail(ConfigError(message, hint=f"see '{command} --help'"), "run")


app = typer.Typer(
    cls=_OneLineErrors,
    name="smtpbench",
    help="SMTP load and conformance testing.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain help: rich markup would eat bracketed words such as "[target]" or "HOST[:PORT]".
    rich_markup_mode=None,
)


def version_text() -> str:
    """``smtpbench <version>`` from the installed package's metadata."""
    try:
        return f"smtpbench {metadata.version(DISTRIBUTION)}"
    except metadata.PackageNotFoundError:
        return "smtpbench (version unknown: not installed as a package)"


def _show_version(value: bool) -> None:
    if value:
        print(version_text())
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", help="Print the version and exit.", callback=_show_version, is_eager=True),
    ] = False,
) -> None:
    """SMTP load and conformance testing."""


#: Each sub-command's module (its ``register(app)`` adds it), in the order ``--help`` lists them.
COMMAND_MODULES: dict[str, str] = {
    "run": "smtpbench.load.cli",
    "merge": "smtpbench.load.cli",
    "conform": "smtpbench.conform.cli",
    "compare": "smtpbench.report.cli",
    "report": "smtpbench.report.cli",
    "sink": "smtpbench.sink.cli",
    "probe": "smtpbench.probe.cli",
    "schema": "smtpbench.schema_doc",
}


def _register(modules: list[str]) -> None:
    for name in dict.fromkeys(modules):
        importlib.import_module(name).register(app)


def _register_all() -> None:
    _register(list(COMMAND_MODULES.values()))


def main(argv: list[str] | None = None) -> None:
    """Console entry point.

    A sub-command named on the command line registers only its own module:
    ``smtpbench run`` does not import the conformance suite, the sink and the
    rest (a tenth of a second of start-up, which a load run's CPU figures
    include).  Anything else (``--help``, ``--version``, a mistyped command)
    registers them all, so help and errors list every command.
    """
    args = sys.argv[1:] if argv is None else argv
    module = COMMAND_MODULES.get(args[0]) if args else None
    if module is None:
        _register_all()
    else:
        _register([module])
    app()
