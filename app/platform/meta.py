"""Facts about the database itself, such as the reporting time zone it was built for."""

from __future__ import annotations

from sqlalchemy import String, Text, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import Mapped, mapped_column

from app.platform.db import Base

REPORTING_TIMEZONE = "reporting_timezone"


class Meta(Base):
    __tablename__ = "meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class TimezoneMismatch(RuntimeError):
    """The database was built for another reporting time zone than the configured one."""


async def check_reporting_timezone(conn: AsyncConnection, configured: str) -> None:
    """Record the zone on first use; refuse a different one later."""
    await conn.execute(
        insert(Meta)
        .values(key=REPORTING_TIMEZONE, value=configured)
        .on_conflict_do_nothing(index_elements=["key"])
    )
    recorded = await conn.scalar(select(Meta.value).where(Meta.key == REPORTING_TIMEZONE))
    if recorded != configured:
        raise TimezoneMismatch(
            f"The database was built for reporting time zone {recorded!r}, but "
            f"CX_REPORTING_TIMEZONE is {configured!r}. Dates of every index would shift. "
            f"Set CX_REPORTING_TIMEZONE={recorded} again, or run "
            f"`cx-survey rebuild --reporting-timezone {configured}` to rebuild for the new zone."
        )


async def set_reporting_timezone(conn: AsyncConnection, zone: str) -> None:
    """Record `zone` as the reporting time zone (the rebuild command's last step)."""
    await conn.execute(
        insert(Meta)
        .values(key=REPORTING_TIMEZONE, value=zone)
        .on_conflict_do_update(index_elements=["key"], set_={"value": zone})
    )
