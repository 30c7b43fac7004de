"""Research scripts (ablations, sweeps): run from a source checkout, never installed."""
