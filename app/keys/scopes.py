"""The scopes an API key can hold."""

from __future__ import annotations

from enum import StrEnum


class Scope(StrEnum):
    orgs_write = "orgs:write"
    surveys_read = "surveys:read"
    surveys_write = "surveys:write"
    responses_read = "responses:read"
    responses_write = "responses:write"
    indices_read = "indices:read"
    indices_write = "indices:write"
    evaluations_read = "evaluations:read"
    evaluations_write = "evaluations:write"
    invitations_read = "invitations:read"
    invitations_write = "invitations:write"
    cases_read = "cases:read"
    cases_write = "cases:write"
    insights_read = "insights:read"
    admin = "admin"
