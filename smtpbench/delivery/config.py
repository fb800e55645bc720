"""The ``[delivery]`` profile section: which ends see arrivals, and how long to wait for them.

A :class:`~smtpbench.fields.Table` like the sections of :mod:`smtpbench.load.sections`
(the JSON Schema and the README reference come from it).
"""

from __future__ import annotations

from typing import Annotated, Any, Self

from pydantic import Field, PlainSerializer, model_validator

from smtpbench.config import shown
from smtpbench.errors import ConfigError
from smtpbench.fields import Duration, Invalid, Table, Text, checker, key
from smtpbench.load.target_section import SinkOptions
from smtpbench.units import parse_host_port


def _address(value: Any) -> tuple[str, int]:
    if not isinstance(value, str):
        raise Invalid(f"got {shown(value)}", expected="HOST:PORT, like 127.0.0.1:2626 or [::1]:2626")
    try:
        return parse_host_port(value)
    except ConfigError as exc:
        raise Invalid(exc.problem, expected=exc.expected) from None


def _format_address(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


Address = Annotated[
    tuple[str, int], checker(_address, Annotated[str, Field(pattern=r":[0-9]+$")]), PlainSerializer(_format_address)
]


class DeliveryConfig(Table):
    """End-to-end delivery tracking (README, "Delivery latency"): at least one of listen, report_listen,
    maildir, mbox."""

    listen: Address | None = key(None, "HOST:PORT: start a delivery sink there (the server under test relays to it).")
    report_listen: Address | None = key(
        None, "HOST:PORT: take arrival reports from sinks started with smtpbench sink --report-to HOST:PORT."
    )
    maildir: Text | None = key(None, "A Maildir folder the server delivers to, watched for new messages.")
    mbox: Text | None = key(None, "An mbox file the server delivers to, watched for appended messages.")
    wait: Duration = key("1m", "After the load, wait this long at most for accepted messages still outstanding.")
    sink: SinkOptions = key(
        default_factory=dict, doc="The delivery sink's knobs (only with listen): the keys of [target.sink]."
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        if not (self.listen or self.report_listen or self.maildir or self.mbox):
            raise Invalid("names no end where messages arrive", expected="listen, report_listen, maildir or mbox")
        if self.given("sink") and self.listen is None:
            raise Invalid("only applies with listen (the delivery sink the run starts)", loc=("sink",))
        return self

    def inapplicable(self) -> set[str]:
        """No sink knobs without a sink."""
        return set() if self.listen is not None else {"sink"}
