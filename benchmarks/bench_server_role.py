"""CPU cost of the sans-I/O server role alone (no sockets, no Trio): µs per message.

Feeds ``--messages`` transactions (MAIL, RCPT, DATA, ~1 KiB of content, the
final dot) into one :class:`~smtpbench.protocol.server.ServerConnection`
configured as the sink is by default, either one command per call (as a
client without pipelining arrives) or one call per message (pipelined), and
checks every reply was positive.  This is the protocol share of the sink's
CPU per message; ``bench_sink.py`` measures the whole sink.
"""

from __future__ import annotations

import argparse
import sys
import time

from smtpbench.protocol.commands import encode_data
from smtpbench.protocol.server import ServerConnection
from smtpbench.protocol.server_state import ServerConfig

BODY = b"Subject: bench\r\n\r\n" + b"x" * 70 + b"\r\n" + (b"y" * 76 + b"\r\n") * 12


def pieces(pipelined: bool) -> list[bytes]:
    """One message's input, split as it would arrive."""
    parts = [b"MAIL FROM:<sender@client.example>\r\n", b"RCPT TO:<user@example.test>\r\n", b"DATA\r\n"]
    parts.append(encode_data(BODY))
    return [b"".join(parts)] if pipelined else parts


def run(messages: int, pipelined: bool) -> float:
    """Seconds of CPU for ``messages`` messages."""
    conn = ServerConnection(ServerConfig(local_domains=frozenset({"example.test"})))
    conn.receive_data(b"EHLO client.example\r\n")
    conn.out.clear()
    parts = pieces(pipelined)
    receive = conn.receive_data
    out = conn.out
    start = time.process_time()
    for _ in range(messages):
        for part in parts:
            receive(part)
            out.clear()
    elapsed = time.process_time() - start
    if conn.stats.messages_accepted != messages:
        raise SystemExit(f"bench: only {conn.stats.messages_accepted} of {messages} messages accepted")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    """Print µs of CPU per message, best of ``--rounds``, per input shape."""
    p = argparse.ArgumentParser(description="CPU cost of smtpbench's sans-I/O server role per message.")
    p.add_argument("--messages", type=int, default=50_000)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    if not 1 <= args.rounds <= 50 or not 100 <= args.messages <= 10_000_000:
        p.error("--rounds must be 1..50 and --messages 100..10000000")
    for pipelined in (False, True):
        best = min(run(args.messages, pipelined) for _ in range(args.rounds))
        shape = "pipelined (1 feed/msg)" if pipelined else "one feed per command"
        print(f"{shape:<24} {best / args.messages * 1e6:6.2f} µs CPU/msg")
    return 0


if __name__ == "__main__":
    sys.exit(main())
