"""Service configuration: one Settings object read from CX_* environment variables and `.env`."""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEV_PSEUDONYM_KEY = "cx-survey-development-pseudonym-key-do-not-use-in-production"
DEV_TOKEN_KEY = "cx-survey-development-invitation-token-key-do-not-use-in-production"  # noqa: S105


class Environment(StrEnum):
    development = "development"
    test = "test"
    production = "production"


class Settings(BaseSettings):
    """Everything the service and the `cx-survey` command can be configured with."""

    model_config = SettingsConfigDict(
        env_prefix="CX_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    env: Environment = Environment.development
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL (postgresql+asyncpg://...). Unset: an embedded PostgreSQL.",
    )
    data_dir: Path = Field(
        default=Path(".cx-data"), description="Where the embedded PostgreSQL keeps its data."
    )
    reporting_timezone: str = "UTC"
    pseudonym_key: str = DEV_PSEUDONYM_KEY
    token_key: str = Field(
        default=DEV_TOKEN_KEY,
        description="Secret that invitation tokens are derived from; rotating it voids every "
        "open invitation link.",
    )
    survey_url_template: str | None = Field(
        default=None,
        description="Where a frontend renders an invitation, with `{token}` in it "
        "(https://surveys.example.com/s/{token}); unset: invitations have no url.",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    trusted_proxies: Annotated[list[IPv4Network | IPv6Network], NoDecode] = Field(
        default_factory=list,
        description="Addresses or networks of reverse proxies whose X-Forwarded-For is believed "
        "(comma-separated); unset: the peer address is the client.",
    )
    public_rate_limit_per_second: float = Field(
        default=5.0,
        ge=0,
        description="Requests per second each client address may make on the public invitation "
        "routes; 0: no limit.",
    )
    public_rate_limit_burst: int = Field(
        default=30, ge=1, description="Public requests an address may make at once."
    )
    db_pool_size: int = Field(default=5, ge=1, le=200)
    db_max_overflow: int = Field(default=5, ge=0, le=200)
    db_pool_timeout: float = Field(default=10.0, gt=0)
    db_statement_timeout_ms: int = Field(default=30_000, ge=0)
    min_n_default: int = Field(default=30, ge=1)
    min_n_floor: int = Field(default=5, ge=1)
    log_level: str = "info"
    fold_interval_seconds: float = Field(
        default=1.0, ge=0, description="How often pending index deltas are folded; 0: never."
    )
    rate_limit_per_second: float = Field(
        default=100.0,
        ge=0,
        description="Requests per second each API key may make on average; 0: no limit.",
    )
    rate_limit_burst: int = Field(
        default=200, ge=1, description="Requests a key may make at once after being idle."
    )
    redis_url: str | None = Field(
        default=None,
        description="redis:// URL shared by every worker: exact rate limits across processes. "
        "Unset: each worker process limits on its own.",
    )
    idempotency_ttl_seconds: int = Field(
        default=86_400, ge=60, description="How long a stored Idempotency-Key answer is replayed."
    )
    retention_months: int | None = Field(
        default=None,
        ge=1,
        description="`cx-survey purge` deletes responses older than this; unset: kept forever.",
    )
    metrics_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Serve /metrics also on this port, without authentication (for a scraper "
        "inside the network); unset: only GET /metrics with an admin key.",
    )
    metrics_host: str = Field(
        default="127.0.0.1", description="The interface CX_METRICS_PORT listens on."
    )
    webhook_retry_scale: float = Field(
        default=1.0,
        gt=0,
        le=1.0,
        description="Multiplies the webhook retry schedule (5 s, 5 min, ... 10 h); tests use "
        "a small one.",
    )
    webhook_allow_http: bool = Field(
        default=False, description="Accept http:// webhook URLs (never in production)."
    )
    webhook_allow_private: bool = Field(
        default=False,
        description="Accept webhook URLs that resolve to loopback, private or link-local "
        "addresses (checked again at every delivery).",
    )
    webhook_log_days: int = Field(
        default=30, ge=1, description="How long delivered webhook payloads are kept."
    )
    webhook_poll_seconds: float = Field(
        default=0.5, ge=0, description="How often each process looks for due deliveries; 0: never."
    )
    shutdown_timeout_seconds: int = Field(
        default=20,
        ge=0,
        description="On SIGTERM, how long in-flight requests may take to finish.",
    )

    @field_validator("reporting_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {value!r}") from exc
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_networks(cls, value: object) -> object:
        if isinstance(value, str):
            parts = [part.strip() for part in value.split(",") if part.strip()]
            return [ip_network(part, strict=False) for part in parts]
        return value

    @field_validator("survey_url_template")
    @classmethod
    def _has_token(cls, value: str | None) -> str | None:
        if value and "{token}" not in value:
            raise ValueError("CX_SURVEY_URL_TEMPLATE must contain {token}")
        return value or None

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str | None) -> str | None:
        if not value:
            return None
        for prefix in ("postgresql://", "postgres://"):
            if value.startswith(prefix):
                return "postgresql+asyncpg://" + value[len(prefix) :]
        if not value.startswith("postgresql+asyncpg://"):
            raise ValueError("CX_DATABASE_URL must be a postgresql:// or postgresql+asyncpg:// URL")
        return value

    @model_validator(mode="after")
    def _refuse_unsafe(self) -> Settings:
        if self.env is Environment.production:
            if self.pseudonym_key == DEV_PSEUDONYM_KEY:
                raise ValueError(
                    "CX_PSEUDONYM_KEY must be set to a secret of your own when CX_ENV=production"
                )
            if self.token_key == DEV_TOKEN_KEY:
                raise ValueError(
                    "CX_TOKEN_KEY must be set to a secret of your own when CX_ENV=production"
                )
            if "*" in self.cors_origins:
                raise ValueError("CX_CORS_ORIGINS='*' is refused when CX_ENV=production")
        if len(self.pseudonym_key) < 32:
            raise ValueError("CX_PSEUDONYM_KEY must be at least 32 characters long")
        if len(self.token_key) < 32:
            raise ValueError("CX_TOKEN_KEY must be at least 32 characters long")
        if self.token_key == self.pseudonym_key and self.env is Environment.production:
            raise ValueError("CX_TOKEN_KEY and CX_PSEUDONYM_KEY must be different secrets")
        if self.min_n_default < self.min_n_floor:
            raise ValueError("CX_MIN_N_DEFAULT may not be below CX_MIN_N_FLOOR")
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.reporting_timezone)


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
