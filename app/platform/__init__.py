"""The platform under the domains: configuration, database, errors, logs, middleware, limits."""
