"""The audit log: who changed what, when (no personal data)."""
