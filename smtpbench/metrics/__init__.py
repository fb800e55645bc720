"""Measurement: phase histograms and counters (recorder), the HdrHistogram
interval log (hlog), percentile distributions (hgrm) and summary.json."""
