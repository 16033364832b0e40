"""Checking an outcome: expectations and invariants, the fault-free baseline, the verdict."""
