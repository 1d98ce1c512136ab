"""Settings from the environment (``KEEL_*``) and an optional ``keel.toml`` in the working directory."""

from __future__ import annotations

import functools
from pathlib import Path

from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

__all__ = ["Settings", "settings"]


class Settings(BaseSettings):
    """keel's settings. Environment variables win over ``keel.toml``; both over the defaults."""

    model_config = SettingsConfigDict(env_prefix="KEEL_", toml_file="keel.toml", extra="ignore")

    database_url: str = "sqlite:///.keel/keel.db"
    """Where runs are kept (SQLite or PostgreSQL URL); ``memory`` keeps nothing. Default ``sqlite:///.keel/keel.db``."""

    model: str = "local"
    """The model for agents that name none. Default ``local``, the embedded model."""

    data_dir: Path = Path.home() / ".cache" / "keel"
    """Where keel keeps assembled model files and other caches. Default ``~/.cache/keel``."""

    worker_id: str | None = None
    """A stable id for this worker process; unset means a one-off process that recovers no runs on start."""

    application_version: str = "1"
    """The version pinned on every run; runs are recovered only by workers of the same version. Default ``1``."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Order the sources: arguments, environment, keel.toml."""
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))


@functools.cache
def settings() -> Settings:
    """The process's settings, read once."""
    return Settings()
