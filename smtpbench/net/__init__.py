"""The thin Trio I/O layer: TCP connect, reply reading with deadlines, TLS upgrade.

Everything protocol-shaped comes from :mod:`smtpbench.protocol`; this package
only moves bytes and keeps time.
"""
