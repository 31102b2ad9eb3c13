"""Survey responses: validation against the survey version, idempotent ingestion, reads."""
