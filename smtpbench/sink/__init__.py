"""The embedded sink: a fast, compliant Trio SMTP server with load knobs and faults.

``server.serve(config)`` runs it in-process (tests, the conformance matrix);
``embedded.EmbeddedSink`` runs ``smtpbench sink`` as a subprocess (load
tests); ``faults.FAULTS`` lists the switchable protocol violations, one per
conformance check id.
"""
