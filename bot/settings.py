"""Settings from ``PARLONS_*`` environment variables, optionally a TOML file
(``PARLONS_CONFIG_FILE``, default ``parlons.toml`` when present). Secrets are ``SecretStr``."""

from __future__ import annotations

import difflib
import os
import tomllib
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


class SettingsFileError(ValueError):
    """The settings file cannot be read, is not TOML, or names a setting that does not exist."""


class _StrictTomlSource(TomlConfigSettingsSource):
    """``parlons.toml``, refusing keys that are not settings (a typo would silently keep the
    default) and reporting syntax errors with the file's name."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path) -> None:
        try:
            super().__init__(settings_cls, toml_file=path)
        except tomllib.TOMLDecodeError as exc:
            raise SettingsFileError(f"{path}: not valid TOML: {exc}") from None
        except OSError as exc:
            raise SettingsFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
        fields = list(settings_cls.model_fields)
        for key in self.toml_data:
            if key not in fields:
                close = difflib.get_close_matches(key, fields, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise SettingsFileError(f"{path}: unknown setting '{key}'{hint}")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PARLONS_", env_nested_delimiter="__", extra="ignore"
    )

    database_url: str = Field(
        default="sqlite:///var/parlons.sqlite3",
        description="SQLAlchemy URL: sqlite:///path or postgresql://user@host/db",
    )
    # Administrators by immutable platform id: "telegram:123456", "matrix:@alice:example.org".
    admins: list[str] = Field(default_factory=list)
    default_locale: str = "fr"
    log_level: str = Field(
        default="INFO", pattern="^(?i:DEBUG|INFO|WARNING|ERROR|CRITICAL)$"
    )
    sqlite_synchronous: str = Field(default="FULL", pattern="^(FULL|NORMAL)$")

    telegram_token: SecretStr | None = None
    telegram_api_url: str = "https://api.telegram.org/bot"
    telegram_file_url: str = "https://api.telegram.org/file/bot"
    telegram_mode: str = Field(default="polling", pattern="^(polling|webhook)$")
    telegram_webhook_url: str | None = None
    telegram_webhook_secret: SecretStr | None = None
    telegram_webhook_listen: str = "127.0.0.1:8443"
    # Replies and broadcasts together (one pace per bot account): about 30/s is Telegram's
    # limit (paid broadcasts allow more), about one message a second per private chat.
    telegram_pace_per_second: float = Field(default=25.0, gt=0)
    telegram_pace_chat_interval: float = Field(default=1.0, ge=0)

    matrix_homeserver: str | None = None
    matrix_user_id: str | None = None
    matrix_password: SecretStr | None = None
    matrix_access_token: SecretStr | None = None
    matrix_device_id: str | None = None
    matrix_store_path: str = "var/matrix-store"
    # Encrypts the Olm/Megolm keys at rest in the store (keep it: changing it loses the store).
    matrix_store_key: SecretStr | None = None
    matrix_device_name: str = "Parlons"
    # Outgoing pace: messages per second overall, and the spacing of messages in one room.
    matrix_pace_per_second: float = Field(default=10.0, gt=0)
    matrix_pace_room_interval: float = Field(default=0.2, ge=0)
    # Encrypted rooms: "tofu" trusts each device of a room member the first time the bot sees
    # it (recorded in the store; later key changes for that device are refused), "ignore"
    # shares room keys with every device without recording any trust (README, "Run on Matrix").
    matrix_device_trust: str = Field(default="tofu", pattern="^(tofu|ignore)$")
    # Who may invite the bot into group rooms (DMs are accepted from anyone): Matrix user ids,
    # or "*" for everyone. Administrators (PARLONS_ADMINS) always may.
    matrix_room_inviters: list[str] = Field(default_factory=list)
    matrix_sync_timeout: float = Field(default=30.0, gt=0)
    matrix_timeline_limit: int = Field(default=50, ge=1, le=1000)
    # How long an encrypted message whose keys are missing waits for them before the citizen
    # is told it could not be read.
    matrix_undecryptable_wait: float = Field(default=60.0, ge=0)

    # Moderation (docs/moderation.md). Content is hidden automatically after this many reports.
    moderation_auto_hide_reports: int = Field(default=3, ge=1)
    # A ban also hides the banned person's contributions and comments in that consultation.
    moderation_ban_hides_content: bool = True
    # Opinion groups (README "Opinion groups"): participants with fewer votes are left out;
    # the seed makes the computation reproducible from the open data export.
    opinion_groups_min_votes: int = Field(default=5, ge=1)
    opinion_groups_seed: int = Field(default=15, ge=0)
    # Flood control: events per minute and comments per hour, per citizen (answering the
    # consultation's questions is never throttled); stricter for
    # citizens who arrived less than flood_newcomer_minutes ago. One polite warning per window.
    flood_actions_per_minute: int = Field(default=60, ge=1)
    flood_comments_per_hour: int = Field(default=10, ge=1)
    flood_newcomer_actions_per_minute: int = Field(default=30, ge=1)
    flood_newcomer_comments_per_hour: int = Field(default=4, ge=1)
    flood_newcomer_minutes: int = Field(default=60, ge=0)
    # Citizens' rights. The secret keys the one-way ids of the erasure log and of bans; when it
    # is not set, one is generated once in privacy_dir/secret. privacy_dir also holds the
    # append-only erasure log (erasures.log) that `parlons privacy reapply` reads after a
    # restore from a backup: keep it out of the database's backups' reach.
    privacy_secret: SecretStr | None = None
    privacy_dir: str = "var/privacy"
    # Personal data of citizens who have not written for this many months is erased by
    # `parlons privacy expire` (stated in the privacy notice).
    privacy_retention_months: int = Field(default=12, ge=1)
    # How often the scheduler's leader erases citizens past the retention period.
    privacy_housekeeping_hours: float = Field(default=24.0, gt=0)
    # Handled inbox rows and sent (or dead) outbox rows are deleted after this many days (README,
    # "Privacy: what is kept and for how long"); expiry and this pruning run in transactions of
    # at most privacy_batch_size rows, so other work goes on in between.
    privacy_message_retention_days: int = Field(default=30, ge=1)
    privacy_batch_size: int = Field(default=200, ge=1, le=10000)
    # Silent citizens erased per transaction (each is a few dozen statements).
    privacy_expiry_batch: int = Field(default=25, ge=1, le=1000)

    # Scheduler (docs/scheduler.md). A reminder whose time passed while no worker was running
    # is still sent within this grace (seconds), otherwise skipped; opening, closing, results
    # and announcements always run. Workers check for schedule changes every poll_interval and
    # try to become the leader every leader_retry seconds.
    scheduler_reminder_grace: float = Field(default=3600.0, ge=0)
    scheduler_poll_interval: float = Field(default=2.0, gt=0)
    scheduler_leader_retry: float = Field(default=2.0, gt=0)
    # Several workers (bot.workers): how often a worker tries to become a bot account's poller
    # (failover time), and where the operators' /healthz and /metrics (Prometheus) listen,
    # e.g. "127.0.0.1:9464" (unset: not served).
    worker_leader_retry: float = Field(default=2.0, gt=0)
    metrics_listen: str | None = None
    # Broadcast pace per platform: messages per second overall, seconds between two messages
    # to one private chat, messages per minute to one group or room (Telegram's limits, with a
    # margin). Synapse's default rc_message is 0.2/s per account: raise the Matrix pace only
    # for an application service or a bot exempted from rate limits.
    telegram_broadcast_per_second: float = Field(default=25.0, gt=0)
    telegram_broadcast_chat_interval: float = Field(default=1.0, ge=0)
    telegram_broadcast_group_per_minute: float = Field(default=20.0, gt=0)
    matrix_broadcast_per_second: float = Field(default=0.2, gt=0)
    matrix_broadcast_chat_interval: float = Field(default=5.0, ge=0)
    matrix_broadcast_group_per_minute: float = Field(default=12.0, gt=0)
    broadcast_per_second: float = Field(default=50.0, gt=0)
    # Each message of a broadcast is marked before and after it is sent (a crash of the process
    # leaves at most the one in flight in doubt); the marks are also forced to disk at least
    # this often (seconds), so a power cut can only resend the messages of that interval.
    # 0: force every mark to disk (one fsync per message).
    broadcast_durable_interval: float = Field(default=0.05, ge=0)

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, value: str) -> str:
        scheme, sep, rest = value.partition("://")
        if not sep or not scheme or not rest:
            raise ValueError("not a database URL: expected sqlite:///PATH or postgresql://...")
        backend = scheme.split("+", 1)[0].lower()
        if backend not in ("sqlite", "postgresql", "postgres"):
            raise ValueError(
                f"unsupported database '{backend}': Parlons runs on SQLite (sqlite:///PATH) "
                "or PostgreSQL (postgresql://USER@HOST/DB)"
            )
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        configured = os.environ.get("PARLONS_CONFIG_FILE")
        path = Path(configured or "parlons.toml")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if path.exists():
            sources.append(_StrictTomlSource(settings_cls, path))
        elif configured:
            raise SettingsFileError(f"{path}: no such file (PARLONS_CONFIG_FILE)")
        return tuple(sources)
