"""Load profiles: the TOML schema (pydantic models), overrides and the resolved dump.

A profile is a TOML file; :func:`load_profile` reads it, applies command-line
overrides (``--set KEY=VALUE``, then ``--target``, ``--duration``,
``--results-dir``), validates every key and returns a :class:`Profile`.  Every
problem raises :class:`~smtpbench.errors.ConfigError` naming the file (and the
option that set the value), the key path and what was expected; unknown
sections and keys get a "did you mean".  :func:`resolved_toml` writes the
profile back with every default filled in (including the random seed actually
used) and secrets redacted, so that a run can be reproduced.

The models (here, in :mod:`smtpbench.load.sections` and :mod:`smtpbench.load.message_section`) are the one source of truth: ``smtpbench schema`` prints their
JSON Schema (``profiles/profile.schema.json``), from which the README's profile
reference is generated.  To add a key or a section, see
:mod:`smtpbench.load.sections`; a new section is also a field of
:class:`ProfileFile` and of :class:`Profile`.

Precedence: the file, then each ``--set`` in order, then ``--target HOST:PORT``
(which also sets ``embedded = false`` and drops ``[target.sink]``),
``--duration`` and ``--results-dir``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Self

from pydantic import ValidationError, model_validator

from smtpbench.config import apply_override, dump_toml, is_secret_key, load_toml, plain, redact, shown, type_name
from smtpbench.conform.section import ConformSection
from smtpbench.delivery.config import DeliveryConfig
from smtpbench.errors import ConfigError
from smtpbench.fields import Invalid, Table, checker, config_error, key, nested
from smtpbench.load.message_section import DsnConfig, MessageConfig, MixEntry  # noqa: F401
from smtpbench.load.sections import (  # noqa: F401  (re-exported: public names of the profile)
    AuthConfig,
    OutputConfig,
    SinkOptions,
    SmtpConfig,
    TargetConfig,
    WorkloadConfig,
)
from smtpbench.load.sizes import FixedSize, LognormalSize, SizeSpec, UniformSize, WeightedSize  # noqa: F401
from smtpbench.metrics.thresholds import Threshold, metric_names, parse_cli_threshold, parse_threshold, parse_thresholds
from smtpbench.units import parse_host_port

# ---------------------------------------------------------------- the file


def _conform(value: Any) -> dict[str, Any]:
    return nested(ConformSection, value).model_dump(mode="json", by_alias=True, exclude_unset=True)


def _thresholds(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Invalid(f"got {type_name(value)} {shown(value)}", expected="a table")
    for metric, spec in value.items():
        for i, one in enumerate(spec if isinstance(spec, list) else [spec]):
            try:
                parse_threshold(metric, one, key="")
            except ConfigError as exc:
                loc: tuple[str | int, ...] = (metric, i) if isinstance(spec, list) else (metric,)
                raise Invalid(exc.problem, expected=exc.expected, hint=exc.hint, loc=loc) from None
    return dict(value)


class _ThresholdTable(Table):
    condition: str = key(doc='An operator and a value, like "< 250ms", "< 1%" or ">= 500".')
    abort_on_fail: bool = key(False, "Stop the run (status aborted_by_threshold) as soon as the condition fails.")
    delay: str = key("0s", "With abort_on_fail: judge only after this much of the run.")


_ThresholdSpec = str | _ThresholdTable
_ThresholdsInput = dict[str, _ThresholdSpec | list[_ThresholdSpec]]


def _metric_names(schema: dict[str, Any]) -> None:
    # The table's keys are metric names: listing them closes it (an editor flags and completes names).
    schema["propertyNames"] = {"enum": metric_names()}


class ProfileFile(Table):
    """An smtpbench profile (``smtpbench run``; ``smtpbench conform`` reads [target] and [conform])."""

    unknown = "section"
    target: TargetConfig = key(default_factory=dict, doc="The server under test.")
    smtp: SmtpConfig = key(default_factory=dict, doc="Protocol choices.")
    workload: WorkloadConfig = key(default_factory=dict, doc="How much load, shaped how.")
    message: MessageConfig = key(default_factory=dict, doc="What each message looks like.")
    output: OutputConfig = key(default_factory=dict, doc="Where results go.")
    conform: Annotated[dict[str, Any], checker(_conform, ConformSection)] = key(
        default_factory=dict, doc="Settings of smtpbench conform (its long options)."
    )
    delivery: DeliveryConfig | None = key(None, "End-to-end delivery tracking (README, Delivery latency).")
    thresholds: Annotated[dict[str, Any], checker(_thresholds, _ThresholdsInput)] = key(
        default_factory=dict,
        json_schema_extra=_metric_names,
        doc='Pass/fail criteria, k6 style: "transaction.p99" = "< 250ms" (README, "Thresholds"); exit 1 when one fails.',
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.target.embedded and self.target.sink.seed is None:
            self.target.sink.seed = self.workload.seed
        if self.delivery is not None and self.delivery.sink.seed is None:
            self.delivery.sink.seed = self.workload.seed
        return self


@dataclass(frozen=True)
class Profile:
    """A validated profile.  ``raw`` is the merged data (file + overrides) before defaults."""

    path: str
    target: TargetConfig
    smtp: SmtpConfig
    workload: WorkloadConfig
    message: MessageConfig
    output: OutputConfig
    conform: dict[str, Any]
    thresholds: dict[str, Any]
    raw: dict[str, Any]
    delivery: DeliveryConfig | None = None

    def criteria(self) -> list[Threshold]:
        """The parsed ``[thresholds]`` (already validated when the profile was loaded)."""
        return parse_thresholds(self.thresholds, file=self.path)


SECTIONS = tuple(ProfileFile.model_fields)


# ------------------------------------------------------------------ loading


def load_profile(
    path: str,
    overrides: Sequence[str] = (),
    *,
    target: str | None = None,
    duration: str | None = None,
    results_dir: str | None = None,
    thresholds: Sequence[str] = (),
    metrics_port: str | None = None,
) -> Profile:
    """Read, override and validate the profile at ``path``.

    ``overrides`` are ``--set KEY=VALUE`` assignments applied in order; then
    ``target`` (``HOST:PORT``, ``[::1]:25``) switches to an external server,
    ``duration`` replaces ``workload.duration`` and ``results_dir`` replaces
    ``output.results_dir``; each of ``thresholds`` (``--threshold
    'transaction.p99<250ms'``) adds a condition to ``[thresholds]``.  ``metrics_port`` (``--metrics-port``) sets ``output.metrics_port``.  Guarantees a fully validated Profile, or raises
    ConfigError whose one-line message names the file (and the option that
    set the value, if any), the key path and what was expected.
    """
    data = load_toml(path)
    origins: dict[str, str] = {}
    for assignment in overrides:
        try:
            parts = apply_override(data, assignment)
        except ConfigError as exc:
            raise _with_file(exc, path) from None
        key = ".".join(parts)
        # Never echo a secret back in an error message.
        shown_value = "***" if is_secret_key(parts[-1]) else assignment.partition("=")[2].strip()
        origins[key] = f"--set {key}={shown_value}"
    if target is not None:
        host, port = parse_target(target)
        table = _ensure_table(data, "target", path)
        table.update(host=host, port=port, embedded=False)
        table.pop("sink", None)
        for key in ("target.host", "target.port", "target.embedded"):
            origins[key] = f"--target {target}"
    if duration is not None:
        _ensure_table(data, "workload", path)["duration"] = duration
        origins["workload.duration"] = f"--duration {duration}"
    if results_dir is not None:
        _ensure_table(data, "output", path)["results_dir"] = results_dir
        origins["output.results_dir"] = f"--results-dir {results_dir}"
    if metrics_port is not None:
        # A number is validated as the port it is; anything else is refused by the schema as written.
        number = metrics_port.strip()
        _ensure_table(data, "output", path)["metrics_port"] = (
            int(number) if number.isascii() and number.isdigit() else metrics_port
        )
        origins["output.metrics_port"] = f"--metrics-port {plain(metrics_port, 40)}"
    for text in thresholds:
        criterion = parse_cli_threshold(text)
        table = _ensure_table(data, "thresholds", path)
        given = table.get(criterion.metric)
        table[criterion.metric] = [
            *(given if isinstance(given, list) else [given] if given else []),
            criterion.condition,
        ]
        origins[f"thresholds.{criterion.metric}"] = f"--threshold {text}"
    try:
        return profile_from_dict(data, path)
    except ConfigError as exc:
        origin = _origin_of(exc.key, origins)
        if origin is not None:
            exc.file = f"{path} ({plain(origin, 80)})"
        raise


def _with_file(exc: ConfigError, path: str) -> ConfigError:
    exc.file = exc.file or path
    return exc


def _origin_of(key: str | None, origins: dict[str, str]) -> str | None:
    if not key:
        return None
    for set_key, origin in origins.items():
        if key == set_key or key.startswith((set_key + ".", set_key + "[")) or set_key.startswith(key + "."):
            return origin
    return None


def _ensure_table(data: dict[str, Any], name: str, path: str) -> dict[str, Any]:
    table = data.setdefault(name, {})
    if not isinstance(table, dict):
        raise ConfigError(f"got {type_name(table)} {shown(table)}", file=path, key=name, expected="a table")
    return table


def parse_target(text: str) -> tuple[str, int]:
    """``(host, port)`` from ``HOST:PORT`` or ``[IPv6]:PORT`` (:func:`smtpbench.units.parse_host_port`, key ``--target``)."""
    return parse_host_port(text, "--target")


def profile_from_dict(data: dict[str, Any], path: str = "<profile>") -> Profile:
    """Validate already-parsed profile ``data`` (not modified) into a Profile, or raise ConfigError."""
    try:
        doc = ProfileFile.model_validate(copy.deepcopy(data))
    except ValidationError as exc:
        raise config_error(exc, path) from None
    sections = {name: getattr(doc, name) for name in SECTIONS}
    return Profile(path=path, raw=copy.deepcopy(data), **sections)


# ------------------------------------------------------------------ resolved dump


def profile_to_dict(profile: Profile) -> dict[str, Any]:
    """The profile with every default made explicit, in the file's own shapes.

    Loading this dict back (:func:`profile_from_dict`) gives an equal profile
    (apart from ``path`` and ``raw``).  Secrets are not redacted here.
    """
    plain_tables = ("conform", "thresholds")
    data = {
        name: getattr(profile, name).toml()
        for name in SECTIONS
        if name not in plain_tables and getattr(profile, name) is not None
    }
    return {**data, **{name: copy.deepcopy(getattr(profile, name)) for name in plain_tables}}


def resolved_toml(profile: Profile) -> str:
    """The profile as TOML with defaults filled in, the seed used, and secrets redacted."""
    header = f"# Resolved profile (defaults filled in) from {plain(profile.path, 200)}\n"
    return header + dump_toml(redact(profile_to_dict(profile)))
