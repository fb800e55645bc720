"""Reusable pydantic field types for profiles, and one-line errors from pydantic's.

A profile section is a :class:`Table` (unknown keys refused with a "did you
mean", a non-table value refused with "expected a table"); its fields use the
``Annotated`` types here, each one validator that accepts exactly what the
loader accepts, says in our words what was expected, and declares its input
shape for the JSON Schema (``json_schema_input_type``).  :func:`config_error`
turns the first error of a :class:`pydantic.ValidationError` into one
:class:`~smtpbench.errors.ConfigError` naming the key path.

This module imports pydantic: import it lazily (``smtpbench --help`` must not
pay for it).
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Callable, Iterable
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, PlainValidator, ValidationError, model_validator
from pydantic_core import PydanticUndefined

from smtpbench.config import did_you_mean, join_key, shown, type_name
from smtpbench.errors import ConfigError
from smtpbench.units import (
    DURATION_PATTERN,
    RATIO_PATTERN,
    SIZE_PATTERN,
    format_duration,
    format_size,
    parse_duration,
    parse_ratio,
    parse_size,
)


class Invalid(ValueError):
    """A value refused in our words; ``loc`` is the key path below the value that failed (for model checks)."""

    def __init__(
        self, problem: str, *, expected: str | None = None, hint: str | None = None, loc: tuple[str | int, ...] = ()
    ) -> None:
        super().__init__(problem)
        self.problem, self.expected, self.hint, self.loc = problem, expected, hint, loc


def config_error(exc: ValidationError, file: str | None, prefix: tuple[str | int, ...] = ()) -> ConfigError:
    """The first error of ``exc`` as a one-line ConfigError naming ``file`` and the key path.

    Never echoes more than a bounded ``repr`` of the offending value (secrets are
    refused by key name before any value is shown).
    """
    first = _first_error(exc)
    return ConfigError(
        first.problem, file=file, key=key_path((*prefix, *first.loc)) or None, expected=first.expected, hint=first.hint
    )


def _first_error(exc: ValidationError) -> Invalid:
    err = exc.errors(include_url=False)[0]
    cause = err.get("ctx", {}).get("error")
    if isinstance(cause, Invalid):
        return Invalid(cause.problem, expected=cause.expected, hint=cause.hint, loc=(*err["loc"], *cause.loc))
    expected = None
    if err["type"] == "missing":
        problem = "is required"
    elif err["type"] == "too_short":
        problem = "is an empty array"
    elif err["type"].endswith("_type"):
        problem = f"got {type_name(err['input'])} {shown(err['input'])}"
        expected = {"list_type": "an array"}.get(err["type"])
    else:  # not reached by our types; pydantic's own words rather than nothing
        problem = err["msg"]
    return Invalid(problem, expected=expected, loc=tuple(err["loc"]))


M = TypeVar("M", bound=BaseModel)


def nested(model: type[M], value: Any, *loc: str | int) -> M:
    """``model`` validated from ``value`` inside another validator; an error keeps its key path below ``loc``."""
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        first = _first_error(exc)
        raise Invalid(first.problem, expected=first.expected, hint=first.hint, loc=(*loc, *first.loc)) from None


def key_path(loc: Iterable[str | int]) -> str:
    """``("workload", "stages", 2, "target")`` -> ``workload.stages[2].target``."""
    path = ""
    for part in loc:
        path = f"{path}[{part}]" if isinstance(part, int) else join_key(path, part)
    return path


class Table(BaseModel):
    """A TOML table: unknown keys refused (with a did-you-mean), defaults validated like given values.

    Subclasses may name keys that are refused with their own message in
    ``refused`` (``{"password": (problem, hint)}``); ``dashes`` accepts
    ``foreign-rcpt`` for ``foreign_rcpt``.
    """

    model_config = ConfigDict(extra="forbid", validate_default=True, populate_by_name=False)
    refused: ClassVar[dict[str, tuple[str, str]]] = {}
    dashes: ClassVar[bool] = False
    unknown: ClassVar[str] = "key"

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, BaseModel):
            return data
        if not isinstance(data, dict):
            raise Invalid(f"got {type_name(data)} {shown(data)}", expected="a table")
        if cls.dashes:
            data = {k.replace("-", "_"): v for k, v in data.items()}
        allowed = [f.alias or name for name, f in cls.model_fields.items()]
        for key in data:
            if key in cls.refused:
                problem, hint = cls.refused[key]
                raise Invalid(problem, hint=hint, loc=(key,))
            if key not in allowed:
                guess = did_you_mean(key, allowed)
                raise Invalid(
                    f"unknown {cls.unknown}",
                    expected=None if guess else f"one of {', '.join(allowed)}",
                    hint=f"did you mean {guess}?" if guess else None,
                    loc=(key,),
                )
        return data

    def given(self, *names: str) -> bool:
        """True when any of ``names`` was written in the file (or set), not defaulted."""
        return any(n in self.model_fields_set for n in names)

    def toml(self) -> dict[str, Any]:
        """The table as TOML values (durations and sizes as text), keys as written in a profile."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def key(default: Any = PydanticUndefined, doc: str | None = None, **options: Any) -> Any:
    """A profile key: its default and the description the schema and the README show (``Field`` options too).

    Typed ``Any`` so that a default is written as in a profile (``"30s"`` for a
    float of seconds): ``validate_default`` parses it like a written value.
    """
    return Field(default, description=doc, **options)


def checker(check: Callable[[Any], Any], schema: Any) -> PlainValidator:
    """A field validator running ``check``; ``schema`` is the input type the JSON Schema describes."""
    return PlainValidator(check, json_schema_input_type=schema)


def apply(validator: PlainValidator, value: Any) -> Any:
    """``value`` checked by a validator of this module outside a model (raises :class:`Invalid`)."""
    return validator.func(value)  # type: ignore[call-arg]


def describe_range(kind: str, lo: float | None, hi: float | None, positive: bool = False) -> str:
    """Words for a numeric range, e.g. "an integer between 1 and 65535"."""
    num = lambda x: str(int(x)) if float(x).is_integer() else str(x)  # noqa: E731
    if positive:
        noun = kind.split(" ", 1)[1]
        return f"a positive {noun}" if hi is None else f"a positive {noun} up to {num(hi)}"
    if lo is not None and hi is not None:
        return f"{kind} between {num(lo)} and {num(hi)}"
    if lo is not None:
        return f"{kind} >= {num(lo)}"
    return kind if hi is None else f"{kind} <= {num(hi)}"


def whole(lo: int | None = None, hi: int | None = None) -> PlainValidator:
    """An integer in [lo, hi]; floats, booleans and numeric strings are refused."""
    expected = describe_range("an integer", lo, hi)

    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(f"got {type_name(value)} {shown(value)}", expected=expected)
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise Invalid(f"{shown(value)} is out of range", expected=expected)
        return value

    return checker(check, Annotated[int, Field(ge=lo, le=hi)])


def number(lo: float | None = None, hi: float | None = None, *, positive: bool = False) -> PlainValidator:
    """A finite int or float in [lo, hi] (``positive`` excludes zero), returned as given (1 stays int)."""
    expected = describe_range("a number", lo, hi, positive)

    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise Invalid(f"got {type_name(value)} {shown(value)}", expected=expected)
        x = float(value)
        if not math.isfinite(x) or (positive and x <= 0) or (lo is not None and x < lo) or (hi is not None and x > hi):
            raise Invalid(f"{shown(value)} is out of range", expected=expected)
        return value

    return checker(check, Annotated[float, Field(gt=0 if positive else None, ge=lo, le=hi)])


def choice(*options: str) -> PlainValidator:
    """One of ``options``, matched case-insensitively and returned as spelt in ``options``."""
    expected = f"one of {', '.join(options)}"

    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise Invalid(f"got {type_name(value)} {shown(value)}", expected=expected)
        for option in options:
            if value.lower() == option.lower():
                return option
        guess = did_you_mean(value, options)
        raise Invalid(f"{shown(value)} is not allowed", expected=expected, hint=guess and f"did you mean {guess}?")

    return checker(check, Literal[options])


def text(*, printable: bool = False, what: str = "a non-empty string") -> PlainValidator:
    """A non-empty string; ``printable`` also refuses spaces and control characters (host names)."""

    def check(value: Any) -> str:
        value = _nonempty(value)
        if printable and any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in value):
            raise Invalid(f"{shown(value)} contains spaces or control characters", expected=what)
        if "\0" in value:
            raise Invalid("contains a NUL character", expected=what)
        return value

    return checker(check, Annotated[str, Field(min_length=1)])


def _nonempty(value: Any) -> str:
    if not isinstance(value, str):
        raise Invalid(f"got {type_name(value)} {shown(value)}", expected="a string")
    if not value.strip():
        raise Invalid("must not be empty", expected="a non-empty string")
    return value


def _strict_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise Invalid(f"got {type_name(value)} {shown(value)}", expected="true or false")
    return value


def _unit(parse: Callable[..., Any], **options: Any) -> Callable[[Any], Any]:
    """A units.py parser as a validator: its ConfigError becomes an Invalid (the key is added by pydantic)."""

    def check(value: Any) -> Any:
        try:
            return parse(value, "", **options)
        except ConfigError as exc:
            raise Invalid(exc.problem, expected=exc.expected) from None

    return check


def max_size(limit: int, words: str) -> PlainValidator:
    """A size (:data:`Size`) of at most ``limit`` octets."""
    parse = _unit(parse_size)

    def check(value: Any) -> int:
        octets: int = parse(value)
        if octets > limit:
            raise Invalid(f"{shown(value)} is too large", expected=f"a size of at most {words}")
        return octets

    return checker(check, _SizeInput)


_ADDRESS = re.compile(r"[^\s<>@]+@[^\s<>@]+")


def template(placeholders: tuple[str, ...], *, address: bool) -> PlainValidator:
    """A ``str.format`` template using only ``placeholders``, one line; with ``address``, local@domain."""
    names = ["{" + p + "}" for p in placeholders]
    expected = f"placeholders {', '.join(names[:-1])} or {names[-1]} (literal braces as {{{{ and }}}})"

    def check(value: Any) -> str:
        value = _nonempty(value)
        try:
            fields = [name for _, name, _, _ in string.Formatter().parse(value) if name is not None]
            unknown = [name for name in fields if name not in placeholders]
            if unknown:
                raise Invalid(f"unknown placeholder {'{' + unknown[0] + '}'}", expected=expected)
            sample = value.format(**{p: 1 for p in placeholders})
        except (ValueError, KeyError, IndexError, AttributeError) as exc:
            if isinstance(exc, Invalid):
                raise
            raise Invalid(f"bad template {shown(value)}: {exc}", expected=expected) from None
        if any(c in sample for c in "\r\n\0"):
            raise Invalid("contains a line break or NUL", expected="a single line")
        if address and not _ADDRESS.fullmatch(sample):
            raise Invalid(f"{shown(sample)} is not an address", expected="local@domain, without spaces or <>")
        if address and len(sample.encode("utf-8")) > 254:
            raise Invalid("address is too long", expected="at most 254 octets")
        return value

    return checker(check, Annotated[str, Field(min_length=1)])


_DurationInput = Annotated[str, Field(pattern=DURATION_PATTERN)] | Annotated[float, Field(ge=0)]
_SizeInput = Annotated[str, Field(pattern=SIZE_PATTERN)] | Annotated[int, Field(ge=0)]

Bool = Annotated[bool, checker(_strict_bool, bool)]
#: Seconds, written ``"30s"``, ``"250ms"``, ``"1m30s"`` or a number of seconds; dumped as text.
DURATION = checker(_unit(parse_duration), _DurationInput)
Duration = Annotated[float, DURATION, PlainSerializer(format_duration)]
PositiveDuration = Annotated[
    float,
    checker(_unit(parse_duration, positive=True), _DurationInput),
    PlainSerializer(format_duration),
]
#: Octets, written ``"10KiB"``, ``"1.5KB"`` or a whole number; dumped as text.
Size = Annotated[int, checker(_unit(parse_size), _SizeInput), PlainSerializer(format_size)]
#: A probability in 0..1, written 0.05 or ``"5%"``.
Ratio = Annotated[
    float,
    checker(_unit(parse_ratio), Annotated[str, Field(pattern=RATIO_PATTERN)] | Annotated[float, Field(ge=0, le=1)]),
]
Text = Annotated[str, text()]
