"""The fault matrix for sections 10-19: each extension check passes against the
default sink (TLS and AUTH configured) and fails, or warns per its level,
against the sink with exactly that fault switched on."""

from __future__ import annotations

import base64

import pytest

from smtpbench.conform.checks import select
from smtpbench.conform.checks.ext_timeouts import TimeoutPlan, make_idle_check
from smtpbench.conform.model import Check, CheckResult, Verdict
from smtpbench.conform.options import ConformOptions
from smtpbench.conform.runner import run_suite
from smtpbench.sink.config import SinkConfig
from smtpbench.sink.faults import FAULTS, NOT_COVERED
from tests.sinkutil import SinkThread, TLSPair, tls_pair

RCPT = "user@example.test"
USER, PASSWORD = "alice", "s3cret-Pa55"
#: Small, so that Z-03's over-size message stays cheap.
MAX_SIZE = 50_000

FAIL_ON_FAULT = [
    "P-01",
    "P-02",
    "P-03",
    "T-03",
    "T-04",
    "T-05",
    "B-01",
    "B-02",
    "B-03",
    "K-01",
    "K-02",
    "K-03",
    "U-02",
    "U-04",
    "U-05",
]
#: SHOULD-level checks (and the POLICY relay check, whose suspect finding is a WARN) warn instead.
#: B-04: 4.1.1.11 says the server "will return code 555", a statement without an RFC 2119 word: warn.
#: T-02: RFC 3207 says STARTTLS "takes no parameters" without an RFC 2119 word: warn.
#: Z-01, N-01: their RFC 1870/3461 sentences are paraphrases not checked against stored text: at most warn.
#: T-01: RFC 3207 states what STARTTLS promises without a MUST for the server: a failed handshake is a warning.
WARN_ON_FAULT = ["T-01", "Z-01", "N-01", "T-02", "B-04", "Z-02", "Z-03", "ES-01", "LG-01", "SEC-01", "U-01", "U-03"]
FAULT_VERDICT: dict[str, Verdict] = {
    **{cid: Verdict.FAIL for cid in FAIL_ON_FAULT},
    **{cid: Verdict.WARN for cid in WARN_ON_FAULT},
}
OURS = sorted(FAULT_VERDICT)
#: The AUTH checks run with --starttls: the sink offers PLAIN/LOGIN only inside TLS, as it should.
STARTTLS_RUN = {cid for cid in OURS if cid.startswith("U-")}


@pytest.fixture(scope="module")
def tls() -> TLSPair:
    return tls_pair()


def _config(tls: TLSPair, faults: frozenset[str]) -> SinkConfig:
    return SinkConfig(
        faults=faults,
        store_messages=True,
        ssl_context=tls.server_context,
        auth_users={USER: PASSWORD},
        max_size=MAX_SIZE,
    )


def _options(port: int, tls: TLSPair, mode: str) -> ConformOptions:
    return ConformOptions(
        port=port,
        rcpt=RCPT,
        timeout=2.0,
        check_timeout=20.0,
        ca_file=tls.ca_file,
        user=USER,
        password=PASSWORD,
        tls=mode,
        slow=True,
    )


def run_checks(
    tls: TLSPair, faults: frozenset[str], checks: list[Check], mode: str = "none", **sink: object
) -> dict[str, CheckResult]:
    """Run ``checks`` against a sink with ``faults``; results by id."""
    config = _config(tls, faults)
    for key, value in sink.items():
        setattr(config, key, value)
    with SinkThread(config) as server:
        options = _options(server.port, tls, mode)
        results = run_suite(options, checks, oracle=lambda: [m.content for m in server.messages])
    return {r.id: r for r in results}


@pytest.fixture(scope="module")
def default_results(tls: TLSPair) -> dict[str, CheckResult]:
    plain = [c for c in select(tuple(OURS)) if c.id not in STARTTLS_RUN]
    upgraded = [c for c in select(tuple(OURS)) if c.id in STARTTLS_RUN]
    return {**run_checks(tls, frozenset(), plain), **run_checks(tls, frozenset(), upgraded, "starttls")}


def _explain(r: CheckResult) -> str:
    return f"{r.verdict.value}: {r.reason}\n" + "\n".join(r.evidence)


def test_matrix_covers_every_breakable_extension_check() -> None:
    ids = {c.id for c in select(("P", "T", "U", "Z", "B", "K", "N", "ES", "LG", "SEC", "TO"))}
    assert len(ids) == 33  # catalogue sections 10-19, plus T-07 and T-08 (TLS certificate and versions)
    # TO-01 is proven below with a short plan; T-06, U-06 (policies) and TO-02 (hook) have no sink fault;
    # T-07 and T-08 are proven in test_conform_verdicts.py by varying the client and the sink's TLS context.
    assert ids - set(FAULT_VERDICT) == {"TO-01", "TO-02", "T-06", "U-06", "T-07", "T-08"}
    assert set(FAULT_VERDICT) <= set(FAULTS)
    assert {"T-06", "U-06", "T-07", "T-08"} <= set(NOT_COVERED)


@pytest.mark.parametrize("check_id", OURS)
def test_passes_against_default_sink(default_results: dict[str, CheckResult], check_id: str) -> None:
    r = default_results[check_id]
    assert r.verdict is Verdict.PASS, _explain(r)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("check_id", OURS)
def test_fault_is_detected(tls: TLSPair, check_id: str) -> None:
    mode = "starttls" if check_id in STARTTLS_RUN else "none"
    r = run_checks(tls, frozenset({check_id}), select((check_id,)), mode)[check_id]
    assert r.verdict is FAULT_VERDICT[check_id], _explain(r)
    assert r.evidence, "a verdict below pass must carry evidence"


def test_policy_checks_pass_when_no_policy_is_in_force(default_results: dict[str, CheckResult], tls: TLSPair) -> None:
    got = run_checks(tls, frozenset(), select(("T-06", "U-06")), "starttls")
    for cid in ("T-06", "U-06"):
        assert got[cid].verdict is Verdict.PASS, _explain(got[cid])
        assert "not applicable" in got[cid].reason


#: TO-01 with durations a test can afford, against a sink that closes idle sessions after 1 s.
SHORT_PLAN = TimeoutPlan(noop_idle=0.3, max_idle=4.0, data_interval=0.2, data_max=1.0)


@pytest.mark.timeout(30)
@pytest.mark.parametrize(("faults", "verdict"), [(frozenset(), Verdict.PASS), (frozenset({"TO-01"}), Verdict.WARN)])
def test_idle_timeouts(tls: TLSPair, faults: frozenset[str], verdict: Verdict) -> None:
    r = run_checks(tls, faults, [make_idle_check(SHORT_PLAN)], idle_timeout=1.0)["TO-01"]
    assert r.verdict is verdict, _explain(r)
    assert "slow DATA" in r.reason


def test_idle_check_waits_for_the_server_that_idles_longer(tls: TLSPair) -> None:
    # The NOOP comes before the server's idle timeout: 250; the close is not awaited beyond max_idle.
    plan = TimeoutPlan(noop_idle=0.2, max_idle=0.5, data_interval=0.1, data_max=0.3)
    r = run_checks(tls, frozenset(), [make_idle_check(plan)], idle_timeout=30.0)["TO-01"]
    assert r.verdict is Verdict.PASS, _explain(r)
    assert "still open" in r.reason


def test_hook_check_is_skipped_with_reason(tls: TLSPair) -> None:
    r = run_checks(tls, frozenset(), select(("TO-02",)))["TO-02"]
    assert r.verdict is Verdict.SKIP
    assert "hook" in r.reason


def test_extension_checks_skip_when_not_advertised(tls: TLSPair) -> None:
    # Without TLS configured the sink offers no STARTTLS; without users, no AUTH.
    with SinkThread(SinkConfig(store_messages=True)) as server:
        options = ConformOptions(port=server.port, rcpt=RCPT, timeout=2.0, check_timeout=20.0)
        results = run_suite(options, select(("T-01", "U-02")))
    for r in results:
        assert r.verdict is Verdict.SKIP, _explain(r)
        assert "not advertised" in r.reason


def test_credentials_never_reach_the_report(tls: TLSPair) -> None:
    got = run_checks(tls, frozenset(), select(("U-01", "U-04", "U-06")), "starttls")
    secret_forms = (PASSWORD, base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode())
    for r in got.values():
        text = "\n".join([r.reason, *r.evidence, *r.transcript])
        for form in secret_forms:
            assert form not in text
        if r.id != "U-06":  # U-06 sends no AUTH when no AUTH requirement is in force
            assert "<redacted>" in "\n".join(r.transcript)
