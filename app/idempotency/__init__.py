"""The `Idempotency-Key` header on POST endpoints (draft-ietf-httpapi-idempotency-key-header)."""
