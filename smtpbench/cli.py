"""The ``smtpbench`` command line: ``run``, ``conform``, ``compare``, ``report``, ``sink``, ``probe`` and ``schema``.

Each subsystem registers its own sub-command (``register(app)``) so that this
module stays a table of contents.  Exit codes (README, "Exit codes"): 0 done,
1 checks or thresholds failed, 2 usage or configuration error, 3 the run
could not be carried out (target unusable, results not writable).
"""

from __future__ import annotations

from importlib import metadata
from typing import Annotated

import typer

#: The installed distribution (the import package and command are "smtpbench").
DISTRIBUTION = "smtpbench-loadtest"

app = typer.Typer(
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


def _register_all() -> None:
    from smtpbench import schema_doc
    from smtpbench.conform import cli as conform_cli
    from smtpbench.load import cli as load_cli
    from smtpbench.probe import cli as probe_cli
    from smtpbench.report import cli as report_cli
    from smtpbench.sink import cli as sink_cli

    load_cli.register(app)
    conform_cli.register(app)
    report_cli.register(app)
    sink_cli.register(app)
    probe_cli.register(app)
    schema_doc.register(app)


def main() -> None:
    """Console entry point."""
    _register_all()
    app()
