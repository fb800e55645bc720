"""Suite-wide settings: hypothesis never fails by chance.

Every property test runs **derandomized** (examples derived from the test
itself, the same on every run and every machine) with no example database,
so a green suite stays green: a failure is reproducible, never a lottery.
Set ``SMTPBENCH_HYPOTHESIS=explore`` to search with fresh random examples
locally (and keep what it finds as an ``@example``).
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("smtpbench-ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("smtpbench-explore", derandomize=False, print_blob=True)
settings.load_profile("smtpbench-explore" if os.environ.get("SMTPBENCH_HYPOTHESIS") == "explore" else "smtpbench-ci")
