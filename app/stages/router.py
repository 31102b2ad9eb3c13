"""GET /v1/stages."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from app.platform.deps import PrincipalDep
from app.stages import STAGE_NAMES, Stage


class StageOut(BaseModel):
    code: Stage
    name: str
    position: int


class StageList(BaseModel):
    items: list[StageOut]


router = APIRouter(tags=["stages"])


@router.get("/v1/stages")
async def list_stages(principal: PrincipalDep) -> StageList:
    """The five journey stages in order."""
    return StageList(
        items=[StageOut(code=s, name=STAGE_NAMES[s], position=s.position) for s in Stage]
    )
