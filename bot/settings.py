"""Settings from ``PARLONS_*`` environment variables, optionally a TOML file
(``PARLONS_CONFIG_FILE``, default ``parlons.toml`` when present). Secrets are ``SecretStr``."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


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
    log_level: str = "INFO"
    sqlite_synchronous: str = Field(default="FULL", pattern="^(FULL|NORMAL)$")

    telegram_token: SecretStr | None = None
    telegram_api_url: str = "https://api.telegram.org/bot"
    telegram_file_url: str = "https://api.telegram.org/file/bot"
    telegram_mode: str = Field(default="polling", pattern="^(polling|webhook)$")
    telegram_webhook_url: str | None = None
    telegram_webhook_secret: SecretStr | None = None
    telegram_webhook_listen: str = "127.0.0.1:8443"

    matrix_homeserver: str | None = None
    matrix_user_id: str | None = None
    matrix_password: SecretStr | None = None
    matrix_access_token: SecretStr | None = None
    matrix_device_id: str | None = None
    matrix_store_path: str = "var/matrix-store"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = Path(os.environ.get("PARLONS_CONFIG_FILE", "parlons.toml"))
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if path.exists():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)
