"""The organization tree: orgs addressed by code, with materialized ancestor paths."""
