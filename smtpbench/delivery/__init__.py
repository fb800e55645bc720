"""End-to-end delivery: message ids, the arrival tracker, the report protocol and the other ends.

See README, "Delivery latency".  Modules: :mod:`.ids` (the per-message id
header), :mod:`.tracker` (what was accepted, what arrived), :mod:`.wire`
(the sink -> run report protocol), :mod:`.reporter` (the sink's side of it),
:mod:`.listener` (the run's side), :mod:`.watch` (Maildir and mbox ends) and
:mod:`.end` (what a run starts and waits for).
"""
