"""Scorers: one number per input, higher = more likely the bad thing (wrong, or OOD)."""
