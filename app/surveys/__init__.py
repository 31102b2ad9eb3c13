"""Versioned survey definitions, one primary rating question each."""
