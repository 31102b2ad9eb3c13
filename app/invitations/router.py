"""HTTP routes of invitations: the keyed API, the rules (admin) and the public token routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status

from app.indices import service as indices
from app.indices.router import (
    ChannelQuery,
    CustomerTypeQuery,
    From,
    Period,
    StagesQuery,
    To,
    TreeQuery,
    parse_filters,
)
from app.invitations import public, service
from app.invitations.models import InvitationStatus
from app.invitations.public import InvitationAnswered
from app.invitations.schemas import (
    ContactRulesIn,
    ContactRulesOut,
    InvitationIn,
    InvitationOut,
    InvitationStats,
    IssuedInvitation,
    PublicAnswered,
    PublicAnswers,
    PublicInvitation,
    PublicOptedOut,
    SamplingIn,
    SamplingList,
    SamplingOut,
)
from app.orgs.service import get_visible
from app.platform import clock
from app.platform.deps import (
    Admin,
    InvitationsReader,
    InvitationsWriter,
    Pagination,
    SessionDep,
    SettingsDep,
)
from app.platform.errors import ValidationFailed
from app.platform.metrics import INGESTED
from app.platform.pagination import Page, encode_cursor
from app.platform.ratelimit import Limiter, client_address
from app.platform.schemas import CODE_PATTERN, Instant, is_code

router = APIRouter(tags=["invitations"])

InvitationId = Annotated[str, Path(description="The invitation id.")]
SourcePath = Annotated[str, Path(description="A source (touchpoint system) code.")]


@router.post(
    "/v1/invitations",
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {
            "model": IssuedInvitation,
            "description": "Suppressed by a rule (token null), or the stored invitation of this "
            "(source, external_id) again.",
        }
    },
)
async def create_invitation(
    body: InvitationIn,
    session: SessionDep,
    principal: InvitationsWriter,
    settings: SettingsDep,
    response: Response,
) -> IssuedInvitation:
    """Ask a customer to answer a survey: 201 with a token, or 200 suppressed with its reason."""
    invitation, created = await service.create_invitation(
        session, body=body, principal=principal, settings=settings
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    response.headers["Location"] = f"/v1/invitations/{invitation.id}"
    response.headers["Cache-Control"] = "no-store"  # it holds the token
    return invitation


@router.get("/v1/invitations")
async def list_invitations(
    session: SessionDep,
    principal: InvitationsReader,
    page: Pagination,
    org: Annotated[
        str | None, Query(pattern=CODE_PATTERN, description="Org (and its subtree).")
    ] = None,
    status_: Annotated[InvitationStatus | None, Query(alias="status")] = None,
    start: Annotated[
        Instant | None, Query(alias="from", description="occurred_at ≥ this instant.")
    ] = None,
    end: Annotated[
        Instant | None, Query(alias="to", description="occurred_at < this instant.")
    ] = None,
) -> Page[InvitationOut]:
    """Invitations ordered by (occurred_at, id); never their tokens."""
    if start is not None and end is not None and start >= end:
        raise ValidationFailed.at(("query", "to"), "'to' must be after 'from'")
    items, last = await service.list_invitations(
        session,
        principal=principal,
        org_code=org,
        status=status_,
        start=start,
        end=end,
        page=page,
    )
    return Page[InvitationOut](items=items, next_cursor=encode_cursor(last) if last else None)


@router.get("/v1/invitations/{invitation_id}")
async def get_invitation(
    invitation_id: InvitationId, session: SessionDep, principal: InvitationsReader
) -> InvitationOut:
    """One invitation, without its token."""
    return await service.get_invitation(session, invitation_id=invitation_id, principal=principal)


@router.delete("/v1/invitations/{invitation_id}", status_code=status.HTTP_204_NO_CONTENT)
async def cancel_invitation(
    invitation_id: InvitationId, session: SessionDep, principal: InvitationsWriter
) -> Response:
    """Cancel a pending invitation: its token then finds nothing."""
    await service.cancel_invitation(session, invitation_id=invitation_id, principal=principal)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/v1/orgs/{code}/invitations/stats")
async def get_invitation_stats(
    code: Annotated[str, Path(description="An org code.")],
    session: SessionDep,
    principal: InvitationsReader,
    settings: SettingsDep,
    period: Period = None,
    start: From = None,
    end: To = None,
    tree: TreeQuery = None,
    stages: StagesQuery = None,
    channel: ChannelQuery = None,
    customer_type: CustomerTypeQuery = None,
    include_descendants: bool = True,
) -> InvitationStats:
    """Response rates: invitations whose occurred_at date lies in the window, orgs as in the
    index."""
    window = indices.parse_window(period, start, end)
    scope = indices.Scope(
        filters=parse_filters(stages, channel, customer_type),
        include_descendants=include_descendants,
        min_n=settings.min_n_default,
        tree=indices.parse_tree(tree),
        today=clock.today(settings.zone),
    )
    org = await get_visible(session, code=code, principal=principal)
    return await service.stats(session, org=org, window=window, scope=scope)


@router.get("/v1/sampling")
async def list_sampling_rules(session: SessionDep, admin: Admin) -> SamplingList:
    """Every source's sampling rate (sources without a rule send all)."""
    return await service.list_sampling(session)


@router.put(
    "/v1/sampling/{source}",
    responses={201: {"model": SamplingOut, "description": "The rule was created."}},
)
async def put_sampling_rule(
    source: SourcePath, body: SamplingIn, session: SessionDep, admin: Admin, response: Response
) -> SamplingOut:
    """Send only this share of the source's invitations (a deterministic hash decides)."""
    if not is_code(source):
        raise ValidationFailed.at(("path", "source"), f"must match {CODE_PATTERN}")
    rule, created = await service.put_sampling(
        session, source=source, rate=body.rate, principal=admin
    )
    if created:
        response.status_code = status.HTTP_201_CREATED
    return rule


@router.get("/v1/sampling/{source}")
async def get_sampling_rule(source: SourcePath, session: SessionDep, admin: Admin) -> SamplingOut:
    """A source's sampling rate."""
    return await service.get_sampling(session, source=source)


@router.delete("/v1/sampling/{source}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_sampling_rule(source: SourcePath, session: SessionDep, admin: Admin) -> Response:
    """Remove a source's rule: it sends all again."""
    await service.delete_sampling(session, source=source, principal=admin)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.put("/v1/contact-rules")
async def put_contact_rules(
    body: ContactRulesIn, session: SessionDep, admin: Admin
) -> ContactRulesOut:
    """Replace the contact rules (days between invitations of a customer)."""
    return await service.put_contact_rules(session, body=body, principal=admin)


@router.get("/v1/contact-rules")
async def get_contact_rules(session: SessionDep, admin: Admin) -> ContactRulesOut:
    """The contact rules in force (0 and none: no rule)."""
    return await service.get_contact_rules(session)


async def public_caller(request: Request, response: Response) -> None:
    """The public routes' guard: a rate limit per client address; answers are never cached."""
    settings = request.app.state.settings
    address = client_address(
        request.client.host if request.client else None,
        request.headers.getlist("x-forwarded-for"),
        settings.trusted_proxies,
    )
    limiter: Limiter = request.app.state.public_limiter
    await limiter.check(address)
    response.headers["Cache-Control"] = "no-store"


Token = Annotated[str, Path(description="The invitation's token.")]
public_router = APIRouter(
    prefix="/v1/public/invitations", tags=["public"], dependencies=[Depends(public_caller)]
)


@public_router.get("/{token}")
async def get_public_invitation(
    token: Token, session: SessionDep, settings: SettingsDep
) -> PublicInvitation:
    """The survey to render for this token (no API key)."""
    return await public.show(session, token=token, settings=settings)


@public_router.post(
    "/{token}/response",
    status_code=status.HTTP_201_CREATED,
    responses={410: {"description": "The invitation has expired."}},
)
async def submit_public_invitation(
    token: Token, body: PublicAnswers, session: SessionDep, settings: SettingsDep
) -> PublicAnswered:
    """Answer the invitation's survey, once (no API key)."""
    try:
        answered = await public.submit(
            session, token=token, answers=body.answers, settings=settings
        )
    except (InvitationAnswered, ValidationFailed) as refused:
        outcome = "duplicate" if isinstance(refused, InvitationAnswered) else "invalid"
        INGESTED.labels("invitation", outcome).inc()
        raise
    INGESTED.labels("invitation", "created").inc()
    return answered


@public_router.post("/{token}/opt-out")
async def opt_out_public_invitation(
    token: Token, session: SessionDep, settings: SettingsDep
) -> PublicOptedOut:
    """Ask no more of this customer (no API key)."""
    return await public.opt_out(session, token=token, settings=settings)
