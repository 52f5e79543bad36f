"""Environment facts: S3 endpoint, region, credentials, Ray address, caches.

These never come from the job spec (a spec is shared, committed and logged; credentials are not).
Standard AWS variables are read first-class; ``PDGEN_*`` variables override them. Secrets are
``SecretStr`` so that ``repr`` and logs show ``**********``.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Where pdgen runs. Read from the environment; never from a spec."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    s3_endpoint: str | None = Field(
        default=None,
        validation_alias=AliasChoices("PDGEN_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"),
        description="S3 endpoint URL, e.g. http://127.0.0.1:9000 for a local server; unset for AWS.",
    )
    region: str = Field(
        default="us-east-1",
        validation_alias=AliasChoices("PDGEN_S3_REGION", "AWS_REGION", "AWS_DEFAULT_REGION"),
    )
    access_key_id: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("PDGEN_AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID")
    )
    secret_access_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("PDGEN_AWS_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY"),
    )
    session_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("PDGEN_AWS_SESSION_TOKEN", "AWS_SESSION_TOKEN")
    )
    cache_dir: Path = Field(
        default=Path.home() / ".cache" / "pdgen",
        validation_alias=AliasChoices("PDGEN_CACHE_DIR"),
        description="Node-local cache: models made or downloaded once per node.",
    )
    ray_address: str | None = Field(default=None, validation_alias=AliasChoices("RAY_ADDRESS"))
    verbose: bool = Field(
        default=False, validation_alias=AliasChoices("PDGEN_VERBOSE"),
        description="Ray, Ray Data, vLLM and library chatter on stderr (``pdgen --verbose``); "
                    "otherwise it goes to the run's log file and Ray's session logs, and stdout "
                    "holds the summary only.",
    )
    engine_service: Literal["auto", "off"] = Field(
        default="auto", validation_alias=AliasChoices("PDGEN_ENGINE_SERVICE"),
        description="auto: a job hands its batches to the generation service (``pdgen service "
                    "start``) when one is up for its model and settings, else starts its own "
                    "engine actors; off: always its own actors.",
    )
    broadcast_join_rows: int = Field(
        default=1_000_000, ge=0,
        validation_alias=AliasChoices("PDGEN_BROADCAST_JOIN_ROWS"),
        description="Joins whose small side (committed keys, catalog skus, grouped reviews) has at "
                    "most this many rows broadcast it through Ray's object store; larger ones use "
                    "Ray Data's hash join. 0 forces the hash join.",
    )
    broadcast_keys: int = Field(
        default=20_000_000, ge=0,
        validation_alias=AliasChoices("PDGEN_BROADCAST_KEYS"),
        description="Anti-joins (committed, rejected and staged keys) whose key set has at most this "
                    "many keys broadcast it as 16-byte digests, sorted once into Ray's object store and "
                    "read zero-copy by every worker (20M keys: 320 MB per node); larger ones use Ray "
                    "Data's hash join on the digests. 0 forces the hash join.",
    )

    @property
    def s3_scheme(self) -> str:
        return "http" if (self.s3_endpoint or "").startswith("http://") else "https"

    @property
    def s3_endpoint_hostport(self) -> str | None:
        if not self.s3_endpoint:
            return None
        return self.s3_endpoint.split("://", 1)[-1].rstrip("/")

    def secret_values(self) -> list[str]:
        """Every secret value in force, for redaction and for leak tests."""
        out = []
        for s in (self.access_key_id, self.secret_access_key, self.session_token):
            if s is not None and s.get_secret_value():
                out.append(s.get_secret_value())
        return out


@lru_cache(maxsize=1)
def _cached(env_key: tuple) -> Settings:
    return Settings()


def get_settings() -> Settings:
    """Settings for the current environment (re-read when the relevant variables change)."""
    keys = sorted(k for k in os.environ if k.startswith(("PDGEN_", "AWS_", "RAY_ADDRESS")))
    return _cached(tuple((k, os.environ[k]) for k in keys))
