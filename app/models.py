"""Every table, imported in one place so that Alembic sees the whole metadata."""

from app.audit.models import AuditEvent
from app.cases.models import Case, CaseRule
from app.evaluations.models import EvaluationPeriod, EvaluationVersion, FrozenScorecard, Scheme
from app.executives.models import Executive, ExecutiveTarget, Purview
from app.idempotency.models import IdempotencyRecord
from app.indices.models import (
    IndexDelta,
    IndexRollup,
    IndexRollupStage,
    IndexRollupSurvey,
    StageWeights,
    Target,
)
from app.invitations.models import ContactRules, Invitation, OptOut, SamplingRule
from app.keys.models import ApiKey
from app.orgs.models import Org, OrgPlacement, TreeState
from app.platform.meta import Meta
from app.responses.models import Response, Tombstone
from app.surveys.models import Survey, SurveyVersion
from app.tasks.models import Task
from app.ui.models import UiSession
from app.webhooks.models import Delivery, Webhook

__all__ = [
    "ApiKey",
    "AuditEvent",
    "Case",
    "CaseRule",
    "ContactRules",
    "Delivery",
    "EvaluationPeriod",
    "EvaluationVersion",
    "Executive",
    "ExecutiveTarget",
    "FrozenScorecard",
    "IdempotencyRecord",
    "IndexDelta",
    "IndexRollup",
    "IndexRollupStage",
    "IndexRollupSurvey",
    "Invitation",
    "Meta",
    "OptOut",
    "Org",
    "OrgPlacement",
    "Purview",
    "Response",
    "SamplingRule",
    "Scheme",
    "StageWeights",
    "Survey",
    "SurveyVersion",
    "Target",
    "Task",
    "Tombstone",
    "TreeState",
    "UiSession",
    "Webhook",
]
