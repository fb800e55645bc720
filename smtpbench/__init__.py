"""smtpbench: SMTP load and conformance testing.

The package is layered: ``protocol`` is a sans-I/O core (no sockets, imports
nothing else of ours); ``net`` adds Trio streams on top; ``load``, ``conform``,
``sink``, ``metrics`` and ``report`` build on those; ``cli`` ties them together.
"""

__version__ = "0.1.0"
