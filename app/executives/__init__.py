"""Executives, the orgs they answer for per period (purviews), and their CSI targets."""
