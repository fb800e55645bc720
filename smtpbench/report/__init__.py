"""Human-facing output: live progress during a run and the final summary table."""
