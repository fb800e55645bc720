"""Message size distributions: the runtime samplers and the profile field that builds them.

``[message] size`` is ``"10KiB"`` (:class:`FixedSize`), ``{distribution = "uniform", min, max}``,
``{distribution = "lognormal", median, sigma, min, max}`` (models that validate the table and then are the
sampler: one declaration each) or an array of ``{size, weight}`` (:class:`WeightedSize`).
:data:`SizeDistribution` validates that value into a :data:`SizeSpec`; ``to_toml()`` writes it back.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Self, get_args

from pydantic import Field, PlainSerializer, model_validator

from smtpbench.fields import Invalid, Table, apply, checker, choice, derived, got, key, max_size, nested, number
from smtpbench.units import format_size

MAX_MESSAGE_SIZE = 1024**3
MessageSize = Annotated[int, max_size(MAX_MESSAGE_SIZE, "1GiB"), PlainSerializer(format_size)]


@dataclass(frozen=True)
class FixedSize:
    """Every message has the same size."""

    size: int

    def sample(self, rng: random.Random) -> int:
        """Always ``size``."""
        return self.size

    def upper_bound(self) -> int:
        """``size``."""
        return self.size

    def describe(self) -> str:
        """The size as text, e.g. ``10KiB`` (also its TOML value)."""
        return format_size(self.size)

    to_toml = describe


@dataclass(frozen=True)
class WeightedSize:
    """A fixed set of sizes drawn with relative weights."""

    choices: tuple[tuple[int, float], ...]

    def sample(self, rng: random.Random) -> int:
        """One of the sizes, chosen with probability weight / total weight."""
        sizes = [size for size, _ in self.choices]
        weights = [weight for _, weight in self.choices]
        return rng.choices(sizes, weights=weights)[0]

    def upper_bound(self) -> int:
        """The largest listed size."""
        return max(size for size, _ in self.choices)

    def describe(self) -> str:
        """``70% 1KiB, 30% 100KiB``."""
        total = sum(weight for _, weight in self.choices)
        return ", ".join(f"{100 * weight / total:.3g}% {format_size(size)}" for size, weight in self.choices)

    def to_toml(self) -> Any:
        """``[{size=..., weight=...}, ...]``."""
        return [{"size": format_size(size), "weight": weight} for size, weight in self.choices]


class _Shape(Table):
    """A ``{distribution = ...}`` table, validated from a profile and then the sampler itself."""

    def __init__(self, *values: Any, **keys: Any) -> None:
        """Also built like a dataclass, without the distribution: ``UniformSize(1024, 4096)``."""
        names = [name for name in type(self).model_fields if name != "distribution"]
        kind = get_args(type(self).model_fields["distribution"].annotation)[0]
        super().__init__(**{"distribution": kind, **dict(zip(names, values, strict=False)), **keys})

    def to_toml(self) -> Any:
        """The table that parses back to this distribution (sizes as text)."""
        return self.toml()


class UniformSize(_Shape):
    """Sizes uniformly distributed in [min, max]."""

    distribution: Literal["uniform"]
    min: MessageSize = key(doc="Smallest size.")
    max: MessageSize = key(doc="Largest size (>= min).")

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.max < self.min:
            problem = f"max ({format_size(self.max)}) is below min ({format_size(self.min)})"
            raise Invalid(problem, expected="max >= min", loc=("max",))
        return self

    def sample(self, rng: random.Random) -> int:
        """A uniform integer in [min, max]."""
        return rng.randint(self.min, self.max)

    def upper_bound(self) -> int:
        """The largest size :meth:`sample` can return: ``max``."""
        return self.max

    def describe(self) -> str:
        """``uniform MIN..MAX``."""
        return f"uniform {format_size(self.min)}..{format_size(self.max)}"


class LognormalSize(_Shape):
    """Log-normal sizes (a heavy right tail, like real mail) clamped to [min, max]."""

    distribution: Literal["lognormal"]
    median: Annotated[int, max_size(MAX_MESSAGE_SIZE, "1GiB", least=1), PlainSerializer(format_size)] = key(
        doc="Median size (at least 1 octet)."
    )
    sigma: Annotated[float, number(0, 10, positive=True)] = key(1.0, "Spread (log-scale), > 0.")
    min: MessageSize = key(0, "Smallest size.")
    max: MessageSize = derived(0, "Largest size (default 100 x median, at most 1GiB).")

    @model_validator(mode="after")
    def _check(self) -> Self:
        self.sigma = float(self.sigma)
        self.max = self.max if self.given("max") else min(100 * self.median, MAX_MESSAGE_SIZE)
        for name, bad, side in (("max", self.max < self.median, "below"), ("min", self.min > self.median, "above")):
            if bad:
                value = self.max if name == "max" else self.min
                problem = f"{name} ({format_size(value)}) is {side} the median ({format_size(self.median)})"
                raise Invalid(problem, expected=f"{name} {'>=' if name == 'max' else '<='} median", loc=(name,))
        return self

    def sample(self, rng: random.Random) -> int:
        """``median * exp(sigma * N(0,1))`` rounded and clamped to [min, max]."""
        value = rng.lognormvariate(math.log(self.median), self.sigma)
        return max(self.min, min(self.max, int(round(value))))

    def upper_bound(self) -> int:
        """The largest size :meth:`sample` can return: ``max``."""
        return self.max

    def describe(self) -> str:
        """``lognormal median M sigma S, MIN..MAX``."""
        sizes = f"{format_size(self.min)}..{format_size(self.max)}"
        return f"lognormal median {format_size(self.median)} sigma {self.sigma:g}, {sizes}"


#: A distribution of message sizes in octets: ``sample(rng)`` draws one within 0..``upper_bound()``,
#: ``describe()`` says it in words, ``to_toml()`` gives the profile value that parses back to it.
SizeSpec = FixedSize | UniformSize | LognormalSize | WeightedSize


class Weighted(Table):
    """One size of a weighted choice."""

    size: MessageSize = key(doc="A size.")
    weight: Annotated[float, number(0, positive=True)] = key(1.0, "Relative weight, > 0.")


_SHAPES: dict[str, type[UniformSize | LognormalSize]] = {"uniform": UniformSize, "lognormal": LognormalSize}
_EXPECTED = 'a size like "10KiB", a {distribution = ...} table, or an array of {size, weight} tables'


def _size_spec(value: Any) -> SizeSpec:
    if isinstance(value, dict):
        if "distribution" not in value:
            raise Invalid("is required", expected="uniform or lognormal", loc=("distribution",))
        kind = apply(choice("uniform", "lognormal"), value["distribution"], "distribution")
        return nested(_SHAPES[kind], {**value, "distribution": kind})
    if isinstance(value, list):
        if not value:
            raise Invalid("is an empty array", expected=_EXPECTED)
        entries = [nested(Weighted, entry, i) for i, entry in enumerate(value)]
        return WeightedSize(tuple((e.size, float(e.weight)) for e in entries))
    if isinstance(value, str | int) and not isinstance(value, bool):
        return FixedSize(apply(max_size(MAX_MESSAGE_SIZE, "1GiB"), value))
    raise got(value, _EXPECTED)


#: ``[message] size``: validated into a :class:`SizeSpec`, written back with ``SizeSpec.to_toml()``.
SizeDistribution = Annotated[
    SizeSpec,
    checker(_size_spec, MessageSize | UniformSize | LognormalSize | Annotated[list[Weighted], Field(min_length=1)]),
    PlainSerializer(lambda spec: spec.to_toml()),
]
