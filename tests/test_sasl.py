"""SASL mechanisms, sans I/O: the RFCs' own examples, and every client against the server role."""

from __future__ import annotations

import pytest

from smtpbench.protocol import sasl
from smtpbench.protocol.server import ServerConnection
from smtpbench.protocol.server_state import ServerConfig

USER, SECRET, TOKEN = "bench-user", "s3cr3t-Pa55w0rd-7f3a", "ya29.token-Zz9"


def test_cram_md5_rfc2195_example() -> None:
    challenge = b"<1896.697170952@postoffice.reston.mci.net>"
    mech = sasl.client("CRAM-MD5", "tim", "tanstaaftanstaaf")
    assert mech.initial() is None
    answer = mech.respond(sasl.b64(challenge))
    assert sasl.decode(answer) == "tim b913a602c7eda7a495b4e6e7334d3890"


def test_scram_sha256_rfc7677_example() -> None:
    mech = sasl.ScramSHA256("user", "pencil", nonce="rOprNGfwEbeRWgbNEkqO")
    assert sasl.decode(mech.initial() or "") == "n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
    server_first = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    final = sasl.decode(mech.respond(sasl.b64(server_first)))
    assert final == (
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
    )
    assert mech.respond(sasl.b64("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")) == ""
    mech.finish("2.7.0 Authentication successful")


def test_scram_wrong_server_signature_is_refused() -> None:
    mech = sasl.ScramSHA256("user", "pencil", nonce="rOprNGfwEbeRWgbNEkqO")
    mech.initial()
    mech.respond(sasl.b64("r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"))
    with pytest.raises(sasl.SASLError, match="wrong server signature"):
        mech.respond(sasl.b64("v=" + sasl.b64(bytes(32))))
    with pytest.raises(sasl.SASLError):
        mech.finish("ok")  # a 235 without proof is no success either


def test_scram_server_nonce_must_extend_ours() -> None:
    mech = sasl.ScramSHA256("user", "pencil", nonce="abc")
    with pytest.raises(sasl.SASLError, match="nonce"):
        mech.respond(sasl.b64("r=zzz123,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"))


def take(server: ServerConnection) -> bytes:
    data = b"".join(server.out)
    server.out.clear()
    return data


def exchange(mechanism: str, secret: str) -> tuple[bytes, list[bytes]]:
    """Run a client mechanism against the sans-I/O server role; (last reply, everything the client sent)."""
    config = ServerConfig(auth_users={USER: SECRET}, auth_token=TOKEN, allow_plain_auth_without_tls=True)
    server = ServerConnection(config)
    server.receive_data(b"EHLO client.test\r\n")
    ehlo = take(server)
    assert mechanism.encode() in ehlo
    mech = sasl.client(mechanism, USER, secret)
    first = mech.initial()
    sent = [f"AUTH {mechanism}{' ' + first if first else ''}\r\n".encode()]
    server.receive_data(sent[-1])
    reply = take(server)
    while reply.startswith(b"334 "):
        try:
            answer = mech.respond(reply[4:].decode().strip())
        except sasl.SASLError:
            answer = "*"
        sent.append(f"{answer}\r\n".encode())
        server.receive_data(sent[-1])
        reply = take(server)
    if reply.startswith(b"235"):
        mech.finish(reply[4:].decode())
    return reply, sent


@pytest.mark.parametrize("mechanism", sasl.MECHANISMS)
def test_every_mechanism_against_the_server_role(mechanism: str) -> None:
    good = TOKEN if mechanism in sasl.TOKEN_MECHANISMS else SECRET
    reply, _ = exchange(mechanism, good)
    assert reply.startswith(b"235 "), reply
    reply, _ = exchange(mechanism, good + "-wrong")
    assert reply.startswith(b"535 "), reply
