"""Simulator: cycle-approximate streaming simulation of a dataflow graph (see design.md section 2)."""
