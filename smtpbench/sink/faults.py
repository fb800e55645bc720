"""Switchable protocol violations, each named by the conformance check it breaks.

Contract with the conformance suite: the default sink passes every check in
``/work/shared/reference/conformance-checks.md``; a sink started with
``faults={"X-01"}`` makes check X-01 fail (or warn, for a SHOULD-level
check).  Each fault is the most realistic way a real server gets that check
wrong; the few that necessarily disturb other checks say so.
"""

from __future__ import annotations

from collections.abc import Iterable

from smtpbench.errors import ConfigError

FAULTS: dict[str, str] = {
    "G-01": "the 221 reply to QUIT ends in a bare LF instead of CRLF",
    "C-01": "the greeting hides the host name behind asterisks (`220 ****...`, Cisco PIX style)",
    "C-02": "greets with 554 and closes at once instead of waiting for QUIT (every other check then sees a refusal)",
    "C-03": "pauses 0.3 s before the greeting and throws away anything the client sent meanwhile",
    "E-01": "answers HELO with the EHLO-style multi-line keyword list",
    "E-02": "accepts EHLO/HELO without an argument (250) and opens the session",
    "E-03": "a repeated EHLO does not reset the open transaction",
    "E-04": "advertises EXPN in the EHLO list but still answers EXPN with 502",
    "E-05": "command verbs are case-sensitive: lower-case verbs get 500",
    "X-01": "empty and blank command lines are silently ignored (no reply)",
    "X-02": "a MAIL syntax error (501) inside a transaction also aborts that transaction",
    "X-03": "RSET ignores its argument (`RSET x` gets 250)",
    "X-04": "off-by-CRLF line limit: a command line of exactly 512 octets gets 500 line too long",
    "X-05": "underscores are accepted in EHLO names and sender domains",
    "X-06": "sends 421 and closes after the first unknown command (X-01 fails too: same MUST)",
    "S-01": "NOOP, RSET, HELP, VRFY and EXPN before EHLO/HELO get 503",
    "S-02": "RCPT without MAIL is accepted (an implicit null sender is assumed)",
    "S-03": "DATA without an accepted recipient gets 354",
    "S-04": "a nested MAIL gets 250 and silently restarts the transaction",
    "R-01": "RSET answers 250 but keeps the sender and recipients",
    "R-02": "NOOP with an argument gets 501",
    "R-03": "after the 221 to QUIT the connection is left open until the client closes it",
    "V-01": "VRFY claims every address is valid (250 for any argument)",
    "V-02": "advertises EXPN and answers it with a multi-line 250 of bare names, not <local@domain>",
    "V-03": "HELP is answered with 250 (as aiosmtpd does)",
    "A-01": "the null reverse-path `MAIL FROM:<>` is refused with 553",
    "A-02": "postmaster is matched case-sensitively and only with a domain (`<Postmaster>` gets 550)",
    "A-03": "source routes (`<@a,@b:user@d>`) are refused as syntax errors (501)",
    "A-04": "paths longer than 64 octets are refused with 501 path too long",
    "D-01": "no Received: trace header is added to delivered messages",
    "D-02": "dot-stuffing is not undone: stored lines keep their extra leading dot",
    "D-03": "a message text line over 1000 octets gets an immediate 500 in the middle of DATA",
    "D-04": "a hidden message size limit of 60000 octets (below the 64 KiB minimum): 552 after the data",
    "D-05": "<LF>.<LF> ends DATA (SMTP smuggling)",
    "D-06": "<LF>.<CR><LF> ends DATA (the Postfix CVE-2023-51764 variant); <LF>.<LF> does not",
    "D-07": "a bare LF ends a command line",
    "D-08": "8-bit octets without BODY=8BITMIME abort DATA with an immediate 554; the rest is read as commands",
    "L-01": "only 50 recipients are accepted per message (452 from the 51st)",
    "L-02": "after the first 452 too many recipients, the recipients already accepted are dropped",
    "P-01": "in a pipelined group starting with MAIL, RCPT replies are sent after the DATA reply",
    "P-02": "RSET flushes the rest of the input buffer (pipelined commands after it are lost)",
    "P-03": "input pipelined after the end of data (`.` CRLF) is thrown away",
    "T-01": "answers STARTTLS with 220 and then closes instead of doing the handshake",
    "T-02": "`STARTTLS now` is accepted (argument ignored) and TLS starts",
    "T-03": "the EHLO state survives STARTTLS: MAIL right after the handshake gets 250",
    "T-04": "plaintext pipelined after STARTTLS is kept and executed inside TLS (CVE-2011-0411)",
    "T-05": "requires STARTTLS before MAIL (530), as a submission server would (every plaintext check is affected)",
    "U-01": "advertises and accepts AUTH PLAIN/LOGIN without TLS",
    "U-02": "a `*` cancellation of AUTH is answered 535 as if the credentials were wrong",
    "U-03": "the first failed AUTH gets 535 and then a 421 and disconnect",
    "U-04": "AUTH is accepted again after a successful AUTH",
    "U-05": "the AUTH= MAIL parameter is refused with 555 unless the client is authenticated",
    "Z-01": "the SIZE declared on MAIL is not checked against the limit",
    "Z-02": "malformed SIZE values (non-digits, too long, missing) are ignored instead of refused",
    "Z-03": "over-size DATA gets an early 552 as soon as the limit is passed, before the final dot",
    "B-01": "stores every message with the high bit of each octet cleared",
    "B-02": "the SMTPUTF8 MAIL parameter accepts a value (`SMTPUTF8=YES` gets 250)",
    "B-03": "advertises SMTPUTF8 but refuses non-ASCII addresses even with the parameter (553 5.6.7)",
    "B-04": "unknown MAIL and RCPT parameters are silently ignored (250)",
    "K-01": "`BDAT 0 LAST` is refused with 501",
    "K-02": "DATA is accepted after BDAT in the same transaction",
    "K-03": "a rejected BDAT does not consume its chunk: the chunk is read as commands",
    "N-01": "DSN parameters are not validated (any RET/ENVID/NOTIFY/ORCPT value, duplicates too, gets 250)",
    "ES-01": "NOOP and RSET replies carry no enhanced status code",
    "LG-01": "advertises ETRN and answers a bare ETRN with 250",
    "SEC-01": "open relay: foreign recipients are accepted without authentication",
    "TO-01": "idle sessions are dropped silently (no 421) after a tenth of the idle timeout",
    "TO-02": "on shutdown, sessions are closed without a 421 and a message in progress is delivered",
}

#: Checks the sink cannot break: they only apply to server roles or
#: behaviours the sink does not have (submission policies).
NOT_COVERED: dict[str, str] = {
    "T-06": "TLS-required submission policy: the sink does not play a submission server",
    "U-06": "authentication-required submission policy: likewise",
    "T-07": "the certificate: proven by running with and without --ca-file (tests/test_conform_verdicts.py)",
    "T-08": "TLS versions: proven with a sink context that still allows TLS 1.0 (tests/test_conform_verdicts.py)",
}


def validate_faults(ids: Iterable[str]) -> frozenset[str]:
    """Return the ids as a frozenset (upper-cased), or raise ConfigError naming the valid ids."""
    out = set()
    for raw in ids:
        fid = raw.strip().upper()
        if fid not in FAULTS:
            raise ConfigError(
                f"unknown fault {raw!r}",
                key="--fault",
                expected="one of " + ", ".join(FAULTS),
            )
        out.add(fid)
    return frozenset(out)
