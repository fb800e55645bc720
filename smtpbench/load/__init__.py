"""Load generation: profiles (:mod:`.profile`), units, and the engine that runs them."""
