"""The whole conformance suite against each real server, compared with its reviewed expectation file.

``tests/real/expected/<name>.toml`` holds, per check id, the verdict and a one-line justification; every ``fail``
also names the RFC section and the sentence that binds the server.  Done means (issue 7): no ``error`` while the
server is reachable, every ``fail`` defensible from its quoted sentence, and Postfix with
``smtpd_forbid_bare_newline = no`` fails D-05/D-06 while ``= yes`` passes them.
"""

from __future__ import annotations

import pytest

from smtpbench.conform.checks import all_checks
from smtpbench.conform.model import Verdict
from tests.real.conform_run import CONFIGS, load_expected, run_all
from tests.real.servers import provide


@pytest.mark.timeout(900)
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_suite_matches_the_reviewed_expectations(name: str) -> None:
    expected = load_expected(name)
    assert set(expected) == {c.id for c in all_checks()}, "the expectation file must cover every check"
    for cid, entry in expected.items():
        assert entry.get("why"), f"{cid}: a one-line justification is required"
        if entry["verdict"] == "fail":
            assert entry.get("rfc") and "MUST" in entry.get("sentence", ""), f"{cid}: fail needs its binding MUST"
    kind, options = CONFIGS[name]
    server = provide(kind, **options)
    try:
        results, identified = run_all(server)
    finally:
        server.stop()
        server.remove()
    assert identified == kind
    got = {r.id: r for r in results}
    errors = [f"{r.id}: {r.reason}" for r in results if r.verdict is Verdict.ERROR]
    assert not errors, f"no error while the server is reachable: {errors}"
    wrong = []
    for cid, entry in expected.items():
        allowed = {entry["verdict"], *entry.get("also", [])}
        if got[cid].verdict.value not in allowed:
            wrong.append(f"{cid}: got {got[cid].verdict.value} ({got[cid].reason}), expected {sorted(allowed)}")
    assert not wrong, "\n".join(wrong)
    for r in results:
        if r.verdict is Verdict.FAIL:
            assert r.evidence[0].startswith("# RFC") and "MUST" in r.evidence[0], r.id
    if kind == "postfix":
        smuggling = {got["D-05"].verdict, got["D-06"].verdict}
        assert smuggling == ({Verdict.FAIL} if name == "postfix-bare-newline-no" else {Verdict.PASS})
