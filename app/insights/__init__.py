"""Insights: pain points, key drivers and (later) segments: why a number is what it is."""
