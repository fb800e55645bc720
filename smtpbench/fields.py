"""Reusable pydantic field types for profiles, and one-line errors from pydantic's.

A section is a :class:`Table`; a key is an ``Annotated`` type from here (one validator that accepts exactly what
the loader accepts and says in our words what it expected) and ``key(default, doc)``.  :func:`config_error` turns
a ValidationError into one ConfigError naming the key path.  Imports pydantic: import lazily (not for ``--help``).
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Callable, Iterable
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, Field, PlainSerializer, PlainValidator, Strict, ValidationError, model_validator

from smtpbench import units
from smtpbench.config import did_you_mean, join_key, shown, type_name
from smtpbench.errors import ConfigError
from smtpbench.protocol.syntax import valid_domain, valid_local_part


class Invalid(ValueError):
    """A value refused in our words; ``loc`` is the key path below the value that failed (for model checks)."""

    def __init__(self, problem: str, *, expected: str | None = None, hint: str | None = None, loc: tuple = ()) -> None:
        super().__init__(problem)
        self.problem, self.expected, self.hint, self.loc = problem, expected, hint, loc

    def at(self, *loc: str | int) -> Invalid:
        """The same refusal one level down: at ``loc`` + its own key path."""
        return Invalid(self.problem, expected=self.expected, hint=self.hint, loc=(*loc, *self.loc))


def got(value: Any, expected: str | None) -> Invalid:
    """The refusal of a value of the wrong type: "got a string 'x' (expected ...)"."""
    return Invalid(f"got {type_name(value)} {shown(value)}", expected=expected)


def config_error(exc: ValidationError, file: str | None, prefix: tuple[str | int, ...] = ()) -> ConfigError:
    """The first error of ``exc`` as a one-line ConfigError naming ``file`` and the key path (values bounded)."""
    first = _first_error(exc)
    key = key_path((*prefix, *first.loc)) or None
    return ConfigError(first.problem, file=file, key=key, expected=first.expected, hint=first.hint)


def _first_error(exc: ValidationError) -> Invalid:
    # The one place where pydantic's error types become our words (our validators raise Invalid themselves).
    err = exc.errors(include_url=False)[0]
    cause, loc, kind = err.get("ctx", {}).get("error"), tuple(err["loc"]), err["type"]
    if isinstance(cause, Invalid):
        return cause.at(*loc)
    if kind.endswith("_type"):
        return got(err["input"], {"list_type": "an array", "bool_type": "true or false"}.get(kind)).at(*loc)
    problem = {"missing": "is required", "too_short": "is an empty array"}.get(kind, err["msg"])
    return Invalid(problem, loc=loc)


M = TypeVar("M", bound=BaseModel)


def nested(model: type[M], value: Any, *loc: str | int) -> M:
    """``model`` validated from ``value`` inside another validator; an error keeps its key path below ``loc``."""
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise _first_error(exc).at(*loc) from None


def key_path(loc: Iterable[str | int]) -> str:
    """``("workload", "stages", 2, "target")`` -> ``workload.stages[2].target``."""
    path = ""
    for part in loc:
        path = f"{path}[{part}]" if isinstance(part, int) else join_key(path, part)
    return path


class Table(BaseModel):
    """A TOML table: unknown keys refused (with a did-you-mean), defaults validated like given values.

    ``refused`` names keys refused with their own message (``{"password": (problem, hint)}``); ``dashes``
    accepts ``foreign-rcpt`` for ``foreign_rcpt``.
    """

    model_config = {"extra": "forbid", "validate_default": True, "populate_by_name": False}
    refused: ClassVar[dict[str, tuple[str, str]]] = {}
    dashes: ClassVar[bool] = False
    unknown: ClassVar[str] = "key"

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, BaseModel):
            return data
        if not isinstance(data, dict):
            raise got(data, "a table")
        if cls.dashes:
            data = {k.replace("-", "_"): v for k, v in data.items()}
        allowed = [f.alias or name for name, f in cls.model_fields.items()]
        for key in data:
            if key in cls.refused:
                raise Invalid(cls.refused[key][0], hint=cls.refused[key][1], loc=(key,))
            if key not in allowed:
                guess = did_you_mean(key, allowed)
                expected = None if guess else f"one of {', '.join(allowed)}"
                raise Invalid(
                    f"unknown {cls.unknown}", expected=expected, hint=guess and f"did you mean {guess}?", loc=(key,)
                )
        return data

    def given(self, *names: str) -> bool:
        """True when any of ``names`` was written in the file (or set), not defaulted."""
        return any(n in self.model_fields_set for n in names)

    def inapplicable(self) -> set[str]:
        """Keys that other keys make not apply, left out of :meth:`toml`."""
        return set()

    def toml(self) -> dict[str, Any]:
        """The table as TOML values (durations and sizes as text), keys as written in a profile."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True, exclude=self.inapplicable())


def key(default: Any = ..., doc: str | None = None, **options: Any) -> Any:
    """A profile key: its default (written as in a profile, parsed like a written value) and its description."""
    return Field(default, description=doc, **options)


def derived(placeholder: Any, doc: str) -> Any:
    """A key whose default depends on other keys (``_check`` fills it in): the description says it, the schema
    shows none, and ``placeholder`` is not validated."""
    return key(placeholder, doc, validate_default=False, json_schema_extra=lambda schema: schema.pop("default", None))


def checker(check: Callable[[Any], Any], schema: Any) -> PlainValidator:
    """A field validator running ``check``; ``schema`` is the input type the JSON Schema describes."""
    return PlainValidator(check, json_schema_input_type=schema)


def apply(validator: PlainValidator, value: Any, *loc: str | int) -> Any:
    """``value`` checked by a validator of this module outside a model (raises :class:`Invalid` at ``loc``)."""
    try:
        return validator.func(value)  # type: ignore[call-arg]
    except Invalid as exc:
        raise exc.at(*loc) from None


def _bounded(kind: str, types: Any, lo: float | None, hi: float | None, positive: bool, schema: Any) -> PlainValidator:
    num = lambda x: str(int(x)) if float(x).is_integer() else str(x)  # noqa: E731
    if positive:
        expected = f"a positive {kind.split(' ', 1)[1]}" + ("" if hi is None else f" up to {num(hi)}")
    elif lo is not None and hi is not None:
        expected = f"{kind} between {num(lo)} and {num(hi)}"
    else:
        expected = kind + ("" if lo is None else f" >= {num(lo)}") + ("" if hi is None else f" <= {num(hi)}")

    def check(value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, types):
            raise got(value, expected)
        x = float(value)
        if not math.isfinite(x) or (positive and x <= 0) or (lo is not None and x < lo) or (hi is not None and x > hi):
            raise Invalid(f"{shown(value)} is out of range", expected=expected)
        return value

    return checker(check, schema)


def whole(lo: int | None = None, hi: int | None = None) -> PlainValidator:
    """An integer in [lo, hi]; floats, booleans and numeric strings are refused."""
    return _bounded("an integer", int, lo, hi, False, Annotated[int, Field(ge=lo, le=hi)])


def number(lo: float | None = None, hi: float | None = None, *, positive: bool = False) -> PlainValidator:
    """A finite int or float in [lo, hi] (``positive`` excludes zero), returned as given (1 stays int)."""
    schema = Annotated[float, Field(gt=0 if positive else None, ge=lo, le=hi)]
    return _bounded("a number", int | float, lo, hi, positive, schema)


def choice(*options: str) -> PlainValidator:
    """One of ``options``, matched case-insensitively and returned as spelt in ``options``."""
    expected = f"one of {', '.join(options)}"

    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise got(value, expected)
        for option in options:
            if value.lower() == option.lower():
                return option
        guess = did_you_mean(value, options)
        raise Invalid(f"{shown(value)} is not allowed", expected=expected, hint=guess and f"did you mean {guess}?")

    return checker(check, Literal[options])


def _nonempty(value: Any, what: str = "a non-empty string") -> str:
    if not isinstance(value, str):
        raise got(value, "a string")
    if not value.strip():
        raise Invalid("must not be empty", expected="a non-empty string")
    if "\0" in value:
        raise Invalid("contains a NUL character", expected=what)
    return value


def text(*, printable: bool = False, what: str = "a non-empty string") -> PlainValidator:
    """A non-empty string without NUL; ``printable`` also refuses spaces and control characters (host names)."""

    def check(value: Any) -> str:
        value = _nonempty(value, what)
        if printable and any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in value):
            raise Invalid(f"{shown(value)} contains spaces or control characters", expected=what)
        return value

    return checker(check, Annotated[str, Field(min_length=1)])


def _unit(
    parse: Callable[..., Any], limit: float | None = None, expected: str = "", least: float = 0, **options: Any
) -> Callable:
    """A units.py parser as a check (its ConfigError becomes an Invalid), refusing values outside [least, limit]."""

    def check(value: Any) -> Any:
        try:
            parsed = parse(value, "", **options)
        except ConfigError as exc:
            raise Invalid(exc.problem, expected=exc.expected) from None
        long = parse is units.parse_duration
        if limit is not None and parsed > limit:
            raise Invalid(
                f"{units.format_duration(parsed) if long else shown(value)} is too {'long' if long else 'large'}",
                expected=expected,
            )
        if parsed < least:
            raise Invalid(f"must be at least {least} octet", expected="a positive size")
        return parsed

    return check


_SizeInput = Annotated[str, Field(pattern=units.SIZE_PATTERN)] | Annotated[int, Field(ge=0)]
_DurationInput = Annotated[str, Field(pattern=units.DURATION_PATTERN)] | Annotated[float, Field(ge=0)]


def max_size(limit: int, words: str, least: int = 0) -> PlainValidator:
    """A size (``"10KiB"``, ``"1.5KB"`` or octets) of at least ``least`` (1 at most) and at most ``limit`` octets."""
    return checker(_unit(units.parse_size, limit, f"a size of at most {words}", least), _SizeInput)


def duration(*, positive: bool = False, limit: float | None = None, words: str = "") -> PlainValidator:
    """Seconds, written ``"30s"``, ``"250ms"``, ``"1m30s"`` or a number, at most ``limit`` (dump with AS_TEXT)."""
    return checker(_unit(units.parse_duration, limit, f"a delay of at most {words}", positive=positive), _DurationInput)


#: Durations are written back as text ("30s").
AS_TEXT = PlainSerializer(units.format_duration)


_ADDRESS = re.compile(r"[^\s<>@]+@[^\s<>@]+")


def template(placeholders: tuple[str, ...], *, address: bool) -> PlainValidator:
    """A ``str.format`` template using only ``placeholders``, one line; with ``address``, local@domain."""
    names = ["{" + p + "}" for p in placeholders]
    expected = f"placeholders {', '.join(names[:-1])} or {names[-1]} (literal braces as {{{{ and }}}})"

    def check(value: Any) -> str:
        value = _nonempty(value, "a single line")
        try:
            unknown = [f for _, f, _, _ in string.Formatter().parse(value) if f is not None and f not in placeholders]
            if unknown:
                raise Invalid(f"unknown placeholder {'{' + unknown[0] + '}'}", expected=expected)
            sample = value.format(**{p: 1 for p in placeholders})
        except (ValueError, KeyError, IndexError, AttributeError) as exc:
            if isinstance(exc, Invalid):
                raise
            raise Invalid(f"bad template {shown(value)}: {exc}", expected=expected) from None
        if any(c in sample for c in "\r\n"):
            raise Invalid("contains a line break or NUL", expected="a single line")
        if address and not _ADDRESS.fullmatch(sample):
            raise Invalid(f"{shown(sample)} is not an address", expected="local@domain, without spaces or <>")
        if address:
            _mailbox_syntax(sample)
        if address and len(sample.encode("utf-8")) > 254:
            raise Invalid("address is too long", expected="at most 254 octets")
        return value

    return checker(check, Annotated[str, Field(min_length=1)])


def _mailbox_syntax(address: str) -> None:
    # A mailbox the server must refuse (RFC 5321 4.1.2) would make every message a 501/553: say so before the run.
    # Non-ASCII is RFC 6531's (sent with SMTPUTF8), checked in its ASCII shape.
    local, _, domain = address.rpartition("@")
    utf8 = not address.isascii()
    for part, ok, what, expected in (
        (local, valid_local_part(local, utf8=utf8), "local part", "a local part like first.last (no empty atoms)"),
        (domain, valid_domain(domain, utf8=utf8), "domain", "a domain like example.test or a literal like [192.0.2.1]"),
    ):
        if not ok:
            raise Invalid(f"{shown(address)}: the {what} {shown(part)} is not RFC 5321's (4.1.2)", expected=expected)


Bool = Annotated[bool, Strict()]  # pydantic's own check; _first_error words its bool_type error
Duration = Annotated[float, duration(), AS_TEXT]
PositiveDuration = Annotated[float, duration(positive=True), AS_TEXT]
#: A probability in 0..1, written 0.05 or ``"5%"``.
RatioInput = Annotated[str, Field(pattern=units.RATIO_PATTERN)] | Annotated[float, Field(ge=0, le=1)]
Ratio = Annotated[float, checker(_unit(units.parse_ratio), RatioInput)]
Text = Annotated[str, text()]


def _ehlo_name(value: Any) -> str:
    value = apply(text(printable=True, what="a host name"), value)
    if not valid_domain(value):
        # A name the server must refuse would fail every session with 501; say so before the run.
        ascii_hint = None if value.isascii() else "write an internationalised name as its A-label (xn--...)"
        problem = f"{shown(value)} is neither a domain nor an address literal (RFC 5321 4.1.1.1)"
        raise Invalid(problem, expected='a name like "client.example" or "[192.0.2.1]"', hint=ascii_hint)
    return value


#: The argument of EHLO/HELO/LHLO: an LDH domain or an address literal.
EhloName = Annotated[str, checker(_ehlo_name, Annotated[str, Field(min_length=1)])]
