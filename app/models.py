"""Every table, imported in one place so that Alembic sees the whole metadata."""

from app.audit.models import AuditEvent
from app.idempotency.models import IdempotencyRecord
from app.indices.models import IndexDelta, IndexRollup, IndexRollupStage, StageWeights, Target
from app.keys.models import ApiKey
from app.orgs.models import Org, OrgPlacement, TreeState
from app.platform.meta import Meta
from app.responses.models import Response, Tombstone
from app.surveys.models import Survey, SurveyVersion

__all__ = [
    "ApiKey",
    "AuditEvent",
    "IdempotencyRecord",
    "IndexDelta",
    "IndexRollup",
    "IndexRollupStage",
    "Meta",
    "Org",
    "OrgPlacement",
    "Response",
    "StageWeights",
    "Survey",
    "SurveyVersion",
    "Target",
    "Tombstone",
    "TreeState",
]
