"""Load profiles: the TOML schema (pydantic models), overrides and the resolved dump.

:func:`load_profile` reads a profile, applies the command-line overrides (each ``--set KEY=VALUE`` in order, then
``--target HOST:PORT``, which also sets ``embedded = false`` and drops ``[target.sink]``, ``--duration``,
``--results-dir``, ``--metrics-port`` and ``--threshold``) and validates every key into a :class:`Profile`.  Every
problem is a one-line ConfigError naming the file (and the option that set the value), the key path and what was
expected, with a "did you mean" for misspelt keys and sections.  :func:`resolved_toml` writes the profile back
with every default filled in (the seed used too) and secrets redacted, so that a run can be reproduced.

The models (here, in :mod:`smtpbench.load.sections`, ``target_section`` and ``message_section``) are the one source
of truth of ``smtpbench schema`` and of the README's profile reference; a new section is a field of
:class:`Profile`.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Annotated, Any, Self

from pydantic import PrivateAttr, ValidationError, model_validator

from smtpbench.config import apply_override, dump_toml, is_secret_key, load_toml, plain, redact, shown, type_name
from smtpbench.conform.section import ConformSection
from smtpbench.delivery.config import DeliveryConfig
from smtpbench.errors import ConfigError
from smtpbench.fields import Invalid, Table, checker, config_error, got, key, nested
from smtpbench.load.message_section import DsnConfig, MessageConfig, MixEntry  # noqa: F401
from smtpbench.load.sections import OutputConfig, SmtpConfig, WorkloadConfig  # noqa: F401  (re-exported)
from smtpbench.load.sizes import FixedSize, LognormalSize, SizeSpec, UniformSize, WeightedSize  # noqa: F401
from smtpbench.load.target_section import AuthConfig, SinkOptions, TargetConfig  # noqa: F401
from smtpbench.metrics.thresholds import Threshold, metric_names, parse_cli_threshold, parse_threshold, parse_thresholds
from smtpbench.units import parse_host_port

# ---------------------------------------------------------------- the file


def _conform(value: Any) -> dict[str, Any]:
    return nested(ConformSection, value).model_dump(mode="json", by_alias=True, exclude_unset=True)


def _thresholds(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise got(value, "a table")
    for metric, spec in value.items():
        for i, one in enumerate(spec if isinstance(spec, list) else [spec]):
            try:
                parse_threshold(metric, one, key="")
            except ConfigError as exc:
                where = (metric, i) if isinstance(spec, list) else (metric,)
                raise Invalid(exc.problem, expected=exc.expected, hint=exc.hint).at(*where) from None
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


class Profile(Table):
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
    # Not keys of the file (set by profile_from_dict; model_copy and pickle keep them).
    _path: str = PrivateAttr("<profile>")
    _raw: dict[str, Any] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.target.embedded and self.target.sink.seed is None:
            self.target.sink.seed = self.workload.seed
        if self.delivery is not None and self.delivery.sink.seed is None:
            self.delivery.sink.seed = self.workload.seed
        return self

    @property
    def path(self) -> str:
        """The file the profile was read from."""
        return self._path

    @property
    def raw(self) -> dict[str, Any]:
        """The merged data (file + overrides) before defaults."""
        return self._raw

    def criteria(self) -> list[Threshold]:
        """The parsed ``[thresholds]`` (already validated when the profile was loaded)."""
        return parse_thresholds(self.thresholds, file=self.path)


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

    ``overrides`` are ``--set KEY=VALUE`` assignments applied in order; then ``target`` (``HOST:PORT``,
    ``[::1]:25``) switches to an external server, ``duration``, ``results_dir`` and ``metrics_port`` replace
    ``workload.duration``, ``output.results_dir`` and ``output.metrics_port``, and each of ``thresholds``
    (``--threshold 'transaction.p99<250ms'``) adds a condition to ``[thresholds]``.  Guarantees a fully
    validated Profile, or raises ConfigError whose one-line message names the file (and the option that set
    the value, if any), the key path and what was expected.
    """
    data = load_toml(path)
    origins: dict[str, str] = {}

    def put(table: str, origin: str, **values: Any) -> None:
        found = data.setdefault(table, {})
        if not isinstance(found, dict):
            raise ConfigError(f"got {type_name(found)} {shown(found)}", file=path, key=table, expected="a table")
        found.update(values)
        origins.update({f"{table}.{name}": origin for name in values})

    for assignment in overrides:
        try:
            parts = apply_override(data, assignment)
        except ConfigError as exc:
            exc.file = exc.file or path
            raise
        key = ".".join(parts)
        # Never echo a secret back in an error message.
        origins[key] = f"--set {key}={'***' if is_secret_key(parts[-1]) else assignment.partition('=')[2].strip()}"
    if target is not None:
        host, port = parse_target(target)
        put("target", f"--target {target}", host=host, port=port, embedded=False)
        data["target"].pop("sink", None)
    if duration is not None:
        put("workload", f"--duration {duration}", duration=duration)
    if results_dir is not None:
        put("output", f"--results-dir {results_dir}", results_dir=results_dir)
    if metrics_port is not None:
        # A number is validated as the port it is; anything else is refused by the schema as written.
        port_text = metrics_port.strip()
        value = int(port_text) if port_text.isascii() and port_text.isdigit() else metrics_port
        put("output", f"--metrics-port {plain(metrics_port, 40)}", metrics_port=value)
    for text in thresholds:
        criterion = parse_cli_threshold(text)
        put("thresholds", f"--threshold {text}")  # the table, ready to extend
        given = data["thresholds"].get(criterion.metric)
        conditions = [*(given if isinstance(given, list) else [given] if given else []), criterion.condition]
        put("thresholds", f"--threshold {text}", **{criterion.metric: conditions})
    try:
        return profile_from_dict(data, path)
    except ConfigError as exc:
        key = exc.key or ""
        hits = [
            o
            for k, o in origins.items()
            if key and (key == k or key.startswith((k + ".", k + "[")) or k.startswith(key + "."))
        ]
        exc.file = f"{path} ({plain(hits[0], 80)})" if hits else exc.file
        raise


def parse_target(text: str) -> tuple[str, int]:
    """``(host, port)`` from ``HOST:PORT`` or ``[IPv6]:PORT`` (:func:`smtpbench.units.parse_host_port`, key ``--target``)."""
    return parse_host_port(text, "--target")


def profile_from_dict(data: dict[str, Any], path: str = "<profile>") -> Profile:
    """Validate already-parsed profile ``data`` (not modified) into a Profile, or raise ConfigError."""
    try:
        profile = Profile.model_validate(copy.deepcopy(data))
    except ValidationError as exc:
        raise config_error(exc, path) from None
    profile._path, profile._raw = path, copy.deepcopy(data)
    return profile


# ------------------------------------------------------------------ resolved dump


def profile_to_dict(profile: Profile) -> dict[str, Any]:
    """The profile with every default made explicit, in the file's own shapes.

    Loading this dict back (:func:`profile_from_dict`) gives an equal profile
    (apart from ``path`` and ``raw``).  Secrets are not redacted here.
    """
    tables = {name: getattr(profile, name) for name in Profile.model_fields}
    return {name: t.toml() if isinstance(t, Table) else copy.deepcopy(t) for name, t in tables.items() if t is not None}


def resolved_toml(profile: Profile) -> str:
    """The profile as TOML with defaults filled in, the seed used, and secrets redacted."""
    header = f"# Resolved profile (defaults filled in) from {plain(profile.path, 200)}\n"
    return header + dump_toml(redact(profile_to_dict(profile)))
