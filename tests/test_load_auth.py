"""AUTH at load with every mechanism, users files, and ``--trace``, over loopback against the sink.

Each run authenticates for real (the sink checks the credentials, so the
secret demonstrably reached the wire), then every file the run wrote, stdout
and stderr are searched for the secret in every form, the SCRAM client-final
message (which carries the proof) and the bearer token.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from smtpbench.errors import EXIT_OK, EXIT_RUN_ERROR, EXIT_USAGE
from smtpbench.protocol import sasl
from smtpbench.sink.config import SinkConfig
from tests.hostile import HostileServer, Peer, cli_argv, only_run_dir, write_profile
from tests.peers import aiosmtpd_server
from tests.sinkutil import SinkThread
from tests.test_secrets import SECRET, USER, assert_absent, files_under

TOKEN = "ya29.bearer-Tok3n-q81x"
TRACE_LINE = re.compile(r"^\+\d+\.\d{3} [CS]: ")


def no_auth_payloads(texts: dict[str, str], secrets: tuple[str, ...] = (SECRET, TOKEN)) -> None:
    """No secret, no SCRAM client-final (the proof) and no bearer token, in clear or base64, in ``texts``."""
    assert_absent(texts)
    forms = ["c=biws", base64.b64encode(b"c=biws,r=").decode(), "auth=Bearer"]
    for secret in secrets:
        forms += [secret, base64.b64encode(f"user={USER}\x01auth=Bearer {secret}".encode()).decode()[:40]]
    for name, text in texts.items():
        for form in forms:
            assert form not in text, f"{form!r} found in {name}"


def run(tmp_path: Path, target: str, auth: str, *args: str, env: dict[str, str] | None = None, sessions: int = 2):  # type: ignore[no-untyped-def]
    """``smtpbench run`` (subprocess) of a short closed-model profile with ``[target.auth]``."""
    profile = write_profile(str(tmp_path), target, duration="1s", grace="1s", timeout="3s", sessions=sessions)
    with open(profile, "a", encoding="utf-8") as f:
        f.write(f"\n[target.auth]\n{auth}\n")
    return subprocess.run(
        [*cli_argv(), "run", profile, "--progress", "none", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def sink_config(users: dict[str, str] | None = None, **kwargs: object) -> SinkConfig:
    return SinkConfig(
        auth_users=users or {USER: SECRET},
        auth_token=TOKEN,
        allow_plain_auth_without_tls=True,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("mechanism", sasl.MECHANISMS)
def test_every_mechanism_at_load_with_traces(tmp_path: Path, mechanism: str) -> None:
    token_mech = mechanism in sasl.TOKEN_MECHANISMS
    auth = f'username = "{USER}"\nmechanism = "{mechanism}"\n'
    auth += "" if token_mech else 'password_env = "SMTPBENCH_TEST_SECRET"\n'
    env = {"SMTPBENCH_TOKEN": TOKEN} if token_mech else {"SMTPBENCH_TEST_SECRET": SECRET}
    with SinkThread(sink_config()) as server:
        proc = run(tmp_path, f"127.0.0.1:{server.port}", auth, "--trace", "2", env=env)
    assert proc.returncode == EXIT_OK, proc.stderr
    assert server.stats.auth_successes > 0 and server.stats.auth_failures == 0
    rundir = Path(only_run_dir(str(tmp_path)))
    summary = json.loads((rundir / "summary.json").read_text())
    assert 0 < summary["counts"]["sessions_completed"] <= server.stats.auth_successes
    traces = sorted((rundir / "traces").iterdir())
    assert len(traces) == 2 and all(p.name.endswith("-ok.txt") for p in traces), traces
    text = traces[0].read_text()
    assert all(TRACE_LINE.match(line) for line in text.splitlines()), text
    assert f"C: AUTH {mechanism} <redacted>" in text and "S: 235 " in text
    assert "C: <message content: " in text and "C: QUIT" in text
    if mechanism in ("SCRAM-SHA-256", "CRAM-MD5", "LOGIN"):
        assert "S: 334 <redacted>" in text and "C: <redacted>" in text
    no_auth_payloads({"stdout": proc.stdout, "stderr": proc.stderr, **files_under(rundir)})


def test_users_file_spreads_sessions_over_accounts(tmp_path: Path) -> None:
    users = {f"user{i}": f"{SECRET}-{i}" for i in range(5)}
    users_file = tmp_path / "users.csv"
    users_file.write_text("username,password\n" + "".join(f"{u},{p}\n" for u, p in users.items()))
    auth = f'mechanism = "SCRAM-SHA-256"\nusers_file = "{users_file}"\n'
    with SinkThread(sink_config(users, store_messages=True)) as server:
        proc = run(tmp_path, f"127.0.0.1:{server.port}", auth, "--trace", "3", sessions=4)
        logged_in = {m.auth_user for m in server.messages}
    assert proc.returncode == EXIT_OK, proc.stderr
    assert server.stats.auth_failures == 0 and len(logged_in) >= 3, logged_in
    rundir = Path(only_run_dir(str(tmp_path)))
    texts = {"stdout": proc.stdout, "stderr": proc.stderr, **files_under(rundir)}
    no_auth_payloads(texts, tuple(users.values()))


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("alice,pw1\nbob\n", "line 2: expected 2 fields"),
        ("alice,pw1\n,pw2\n", "line 2: empty username"),
        ("# comment\nalice,\n", "line 2: empty password"),
        ("alice,pw1\nalice,pw2\n", "line 2: user 'alice' listed twice"),
        ("\n", "has no username,password row"),
    ],
)
def test_bad_users_file_is_exit_2_with_line(tmp_path: Path, content: str, fragment: str) -> None:
    users_file = tmp_path / "users.csv"
    users_file.write_text(content)
    proc = run(tmp_path, "127.0.0.1:9", f'users_file = "{users_file}"\n')
    assert proc.returncode == EXIT_USAGE, proc.stderr
    assert fragment in proc.stderr and "users.csv" in proc.stderr and "Traceback" not in proc.stderr
    assert "pw1" not in proc.stderr and "pw2" not in proc.stderr


def test_token_never_in_profile_and_needs_a_source(tmp_path: Path) -> None:
    proc = run(tmp_path, "127.0.0.1:9", f'username = "{USER}"\nmechanism = "XOAUTH2"\ntoken = "{TOKEN}"\n')
    assert proc.returncode == EXIT_USAGE and "target.auth.token" in proc.stderr
    assert TOKEN not in proc.stderr + proc.stdout
    env = {k: v for k, v in os.environ.items() if k != "SMTPBENCH_TOKEN"}
    proc = subprocess.run(
        [*cli_argv(), "run", write_profile(str(tmp_path), "127.0.0.1:9", name="p2.toml",
         extra=f'\n[target.auth]\nusername = "{USER}"\nmechanism = "OAUTHBEARER"\n')],
        capture_output=True, text=True, timeout=30, env=env,
    )  # fmt: skip
    assert proc.returncode == EXIT_USAGE and "SMTPBENCH_TOKEN is not set" in proc.stderr, proc.stderr


def refusing_scram(p: Peer) -> None:
    """Speaks SCRAM-SHA-256 but does not know the password: its server signature is wrong."""
    p.send(b"220 fake.test ESMTP\r\n")
    while (line := p.recv_line()) is not None:
        verb = line.split(b" ", 1)[0].upper()
        if verb == b"EHLO":
            p.send(b"250-fake.test\r\n250 AUTH SCRAM-SHA-256\r\n")
        elif verb == b"AUTH":
            first = base64.b64decode(line.split()[2]).decode()
            nonce = first.split("r=", 1)[1]
            server_first = f"r={nonce}srv,s={base64.b64encode(b'salt').decode()},i=4096"
            p.send(b"334 " + base64.b64encode(server_first.encode()) + b"\r\n")
            p.recv_line()  # client-final: the proof is not even checked
            p.send(b"334 " + base64.b64encode(b"v=" + base64.b64encode(bytes(32))) + b"\r\n")
            answer = p.recv_line()
            p.send(b"501 5.0.0 cancelled\r\n" if answer and answer.strip() == b"*" else b"235 2.7.0 ok\r\n")
        elif verb == b"QUIT":
            p.send(b"221 bye\r\n")
            return
        else:
            p.send(b"250 ok\r\n")


def test_wrong_scram_server_signature_is_an_auth_failure_with_trace(tmp_path: Path) -> None:
    auth = f'username = "{USER}"\nmechanism = "SCRAM-SHA-256"\npassword_env = "SMTPBENCH_TEST_SECRET"\n'
    with HostileServer(refusing_scram) as srv:
        proc = run(tmp_path, srv.target, auth, "--trace", "1", env={"SMTPBENCH_TEST_SECRET": SECRET})
    assert proc.returncode == EXIT_RUN_ERROR, proc.stderr
    rundir = Path(only_run_dir(str(tmp_path)))
    errors = json.loads((rundir / "summary.json").read_text())["errors"]
    assert set(errors) == {"auth"}, errors
    traces = list((rundir / "traces").iterdir())
    # The first session of the kind, and one sampled (unless the sample is that same session).
    assert 1 <= len(traces) <= 2 and all(p.name.endswith("-auth.txt") for p in traces), traces
    text = traces[0].read_text()
    assert "C: AUTH SCRAM-SHA-256 <redacted>" in text and "S: 501 5.0.0 cancelled" in text
    no_auth_payloads({"stdout": proc.stdout, "stderr": proc.stderr, **files_under(rundir)})


def test_trace_has_first_session_of_each_error_kind(tmp_path: Path) -> None:
    """A sink refusing every recipient (perm_fail) and with bad credentials for some (auth)."""
    users_file = tmp_path / "users.csv"
    users_file.write_text(f"{USER},{SECRET}\nintruder,{SECRET}-wrong\n")
    with SinkThread(sink_config(reject_rcpt_perm=1.0)) as server:
        proc = run(tmp_path, f"127.0.0.1:{server.port}", f'users_file = "{users_file}"\n', "--trace", "1", sessions=3)
    rundir = Path(only_run_dir(str(tmp_path)))
    errors = json.loads((rundir / "summary.json").read_text())["errors"]
    assert {"auth", "perm_fail"} <= set(errors), (errors, proc.stderr)
    kinds = {p.name.split("-", 1)[1] for p in (rundir / "traces").iterdir()}
    assert {"auth.txt", "perm_fail.txt"} <= kinds, kinds
    auth_trace = next((rundir / "traces").glob("*-auth.txt")).read_text()
    assert "C: AUTH PLAIN <redacted>" in auth_trace and "S: 535 " in auth_trace
    no_auth_payloads({"stdout": proc.stdout, "stderr": proc.stderr, **files_under(rundir)}, (SECRET, f"{SECRET}-wrong"))


def test_users_file_against_aiosmtpd(tmp_path: Path) -> None:
    """aiosmtpd (a server we did not write) checks PLAIN/LOGIN logins from a users file, counted per account."""
    from aiosmtpd.smtp import AuthResult

    users = {f"acct{i}": f"{SECRET}-{i}" for i in range(4)}
    seen: list[str] = []

    def authenticator(server: object, session: object, envelope: object, mechanism: str, data: object) -> AuthResult:
        login, password = data.login.decode(), data.password.decode()  # type: ignore[attr-defined]
        ok = users.get(login) == password
        if ok:
            seen.append(login)
        return AuthResult(success=ok, handled=False)

    class Handler:
        async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
            return "250 2.0.0 accepted"

    users_file = tmp_path / "users.csv"
    users_file.write_text("".join(f"{u},{p}\n" for u, p in users.items()))
    extra = {"authenticator": authenticator, "auth_require_tls": False}
    with aiosmtpd_server(Handler(), **extra) as (controller, _):
        proc = run(tmp_path, f"127.0.0.1:{controller.port}", f'mechanism = "LOGIN"\nusers_file = "{users_file}"\n')
    assert proc.returncode == EXIT_OK, proc.stderr
    rundir = Path(only_run_dir(str(tmp_path)))
    summary = json.loads((rundir / "summary.json").read_text())
    assert 0 < summary["counts"]["sessions_completed"] <= len(seen) and not summary["errors"]
    assert not (rundir / "traces").exists()  # no --trace: nothing traced
    assert len(set(seen)) >= 2, seen  # sessions are spread over the accounts
    no_auth_payloads({"stdout": proc.stdout, "stderr": proc.stderr}, tuple(users.values()))
