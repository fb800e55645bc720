"""The ``smtpbench`` command line: ``run``, ``conform``, ``compare``, ``report``, ``sink``, ``probe`` and ``schema``.

Each subsystem registers its own sub-command (``register(app)``) so that this
module stays a table of contents.  Exit codes (README, "Exit codes"): 0 done,
1 checks or thresholds failed, 2 usage or configuration error, 3 the run
could not be carried out (target unusable, results not writable).
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="smtpbench",
    help="SMTP load and conformance testing.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


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
