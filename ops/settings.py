"""Settings from the environment (CASEWORK_*), with defaults for one machine."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CASEWORK_", extra="ignore")

    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    task_queue: str = "casework"
    database_url: str = f"sqlite+aiosqlite:///{ROOT / 'var' / 'casework.db'}"
    programs_dir: Path = ROOT / "programs"
    var_dir: Path = ROOT / "var"
    ui_port: int = 8233
    log_level: str = "INFO"
