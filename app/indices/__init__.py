"""Satisfaction indices: pure math, the aggregation store that feeds it, and the routes."""
