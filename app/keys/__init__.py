"""API keys: issuing, hashing, revocation and the request principal."""
