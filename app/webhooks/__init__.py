"""Webhooks: subscriptions, the outbox of deliveries written with each change, the sender."""
