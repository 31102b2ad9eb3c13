"""Evaluation periods: schemes, scorecards, closing and reopening, stored versions."""
