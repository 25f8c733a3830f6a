"""Settings: ``KYSO_*`` environment variables, then an optional ``kyso.toml``, then defaults.

Built once by the app factory or the CLI entry point and passed down; never a module
global. The user PIN is not a setting: it is read at login time from
``KYSO_HSM_PIN`` or the PIN file, so it never sits in this object or its ``repr``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from hsm import HsmConfig, PinSource
from kyso.errors import SettingsError

PIN_ENV_VAR = "KYSO_HSM_PIN"


class Settings(BaseSettings):
    """Every setting, its environment variable is ``KYSO_`` + the upper-case name."""

    model_config = SettingsConfigDict(env_prefix="KYSO_", extra="ignore", frozen=True)

    data_dir: Path = Field(
        Path("var"), description="Where the embedded token, secrets and SQLite live."
    )
    host: str = Field("127.0.0.1", description="Address the HTTP service listens on.")
    port: int = Field(8000, ge=1, le=65535, description="Port the HTTP service listens on.")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default SQLite at <data_dir>/kyso.db."
    )
    migrate_on_start: bool = Field(
        True, description="Apply Alembic migrations when the service starts."
    )
    hsm_module: str | None = Field(
        None, description="PKCS#11 module path; default: SoftHSM2, auto-detected."
    )
    hsm_token_label: str | None = Field(
        None, description="Token label; default: <data_dir>/secrets/token-label."
    )
    hsm_token_serial: str | None = Field(None, description="Token serial (wins over the label).")
    hsm_pin_file: Path | None = Field(
        None, description="File holding the user PIN; default <data_dir>/secrets/user-pin."
    )
    hsm_pool_size: int = Field(4, ge=1, le=256, description="PKCS#11 sessions kept open.")
    hsm_acquire_timeout: float = Field(
        5.0, gt=0, le=300, description="Seconds to wait for a free session before failing."
    )
    hsm_retry_interval: float = Field(
        2.0, ge=0, le=300, description="Seconds between reopen attempts while the token is down."
    )
    softhsm_conf: Path | None = Field(
        None,
        description="SOFTHSM2_CONF for the embedded token; default "
        "<data_dir>/softhsm/softhsm2.conf when it exists and SOFTHSM2_CONF is unset.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Log level."
    )
    log_format: Literal["json", "text"] = Field("json", description="Log line format.")
    audit_origin: str = Field(
        "kyso.local/audit",
        min_length=1,
        max_length=200,
        description="Origin line of the audit log's checkpoints; also the checkpoint key name.",
    )
    audit_checkpoint_interval: float = Field(
        60.0, gt=0, le=86400, description="Seconds between audit checkpoints when the log grew."
    )
    audit_sequence_interval: float = Field(
        0.2, gt=0, le=60, description="Seconds between sequencing passes of the audit log."
    )

    public_url: str | None = Field(
        None,
        pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$",
        max_length=200,
        description="Base URL of the public endpoints written into certificates (AIA, CRL "
        "distribution point) and QR links; default http://<host>:<port>.",
    )
    pki_organisation: str = Field(
        "Bộ Công an",
        min_length=1,
        max_length=64,
        description="O of the CA certificates and of officer and seal subjects.",
    )
    pki_key_spec: Literal["ec-p256", "ec-p384", "rsa-2048", "rsa-3072", "rsa-4096"] = Field(
        "ec-p256", description="Key type generated on the token for CA, OCSP, TSA and people."
    )
    pki_crl_validity_hours: float = Field(
        24.0, gt=0, le=24 * 31, description="Hours from a CRL's thisUpdate to its nextUpdate."
    )
    pki_ocsp_validity_minutes: float = Field(
        60.0, gt=0, le=7 * 24 * 60, description="Minutes an OCSP response may be relied on."
    )
    pki_officer_validity_days: int = Field(
        730, ge=1, le=3650, description="Validity of officer signing certificates, in days."
    )
    pki_seal_validity_days: int = Field(
        1095, ge=1, le=3650, description="Validity of agency seal certificates, in days."
    )
    pki_expiry_warning_days: int = Field(
        30,
        ge=1,
        le=365,
        description="Credentials ending within this many days are counted as expiring "
        "(metric kyso_pki_certificates_expiring, kyso pki expiring).",
    )
    pki_trust_dir: Path | None = Field(
        None,
        description="Trust store folder (anchors/ and intermediates/ of PEM files); default "
        "<data_dir>/trust.",
    )
    signing_level: Literal["B-B", "B-T", "B-LT", "B-LTA"] = Field(
        "B-LT",
        description="PAdES baseline level of signatures unless a request names one "
        "(B-T and above are timestamped by Kyso's own TSA).",
    )
    signing_rsa_pss: bool = Field(
        False, description="RSA credentials sign with RSASSA-PSS instead of PKCS#1 v1.5."
    )
    signing_max_bytes: int = Field(
        64 * 1024 * 1024,
        ge=1024,
        le=1024 * 1024 * 1024,
        description="Largest PDF accepted for signing, in bytes (larger: 413).",
    )
    signing_max_pages: int = Field(
        1000, ge=1, le=100_000, description="Most pages a PDF for signing may have (more: 422)."
    )
    tsa_url: str | None = Field(
        None,
        pattern=r"^https?://",
        max_length=512,
        description="External RFC 3161 TSA for signature timestamps (e.g. a national TSA); "
        "default: Kyso's own TSA, called in process. With an external TSA only B-B and B-T.",
    )
    tsa_timeout: float = Field(
        10.0, gt=0, le=120, description="Seconds to wait for the external TSA's answer."
    )
    blob_dir: Path | None = Field(
        None,
        description="Where document revisions and stamp images are stored (content-addressed); "
        "default <data_dir>/blobs.",
    )
    verify_workers: int = Field(
        2, ge=1, le=64, description="Isolated worker processes that verify untrusted PDFs."
    )
    verify_max_bytes: int = Field(
        64 * 1024 * 1024,
        ge=1024,
        le=1024 * 1024 * 1024,
        description="Largest PDF accepted for verification, in bytes (larger: 413).",
    )
    verify_memory_mb: int = Field(
        1024, ge=128, le=65536, description="Address space of a verifier worker (RLIMIT_AS), MiB."
    )
    verify_cpu_seconds: int = Field(
        20, ge=1, le=3600, description="CPU seconds one verification may use."
    )
    verify_wall_seconds: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="Seconds one verification may take before its worker "
        "is killed (the answer is then INDETERMINATE with the reason).",
    )
    access_token_seconds: int = Field(
        600,
        ge=60,
        le=3600,
        description="Lifetime of an OAuth2 access token issued to a service client.",
    )
    rate_login_per_minute: int = Field(
        10,
        ge=1,
        le=10_000,
        description="Sign-in attempts a minute per account and per address (bursts of as many).",
    )
    rate_authorize_per_minute: int = Field(
        30, ge=1, le=10_000, description="Signature activations a minute per caller."
    )
    rate_sign_per_minute: int = Field(
        600, ge=1, le=100_000, description="Signing requests a minute per caller."
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        max_length=32,
        description="Origins whose web pages may call the API from a browser (none by "
        "default: CORS closed).",
    )
    verify_fetch_allow: list[str] | None = Field(
        None,
        max_length=64,
        description="Hosts (``host`` or ``host:port``) the verifier may fetch certificates and "
        "revocation data from; default: Kyso's own public host:port. Loopback and private "
        "addresses need their exact host:port here.",
    )
    report_seal_credential: int | None = Field(
        None,
        ge=1,
        description="Seal credential that seals PDF verification reports (Kyso's own seal); "
        "default: reports are not sealed.",
    )

    @model_validator(mode="after")
    def _external_tsa_level(self) -> Settings:
        if self.tsa_url is not None and self.signing_level in ("B-LT", "B-LTA"):
            raise ValueError(
                "KYSO_TSA_URL (an external TSA) allows KYSO_SIGNING_LEVEL B-B or B-T only: "
                "B-LT needs the status of the TSA's certificate, which Kyso cannot fetch yet"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = Path(os.environ.get("KYSO_CONFIG", "kyso.toml"))
        return (
            init_settings,
            env_settings,
            TomlConfigSettingsSource(settings_cls, toml_file=toml_file),
        )

    @property
    def data_path(self) -> Path:
        return self.data_dir.resolve()

    @property
    def secrets_dir(self) -> Path:
        return self.data_path / "secrets"

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_path / 'kyso.db'}"

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def blob_path(self) -> Path:
        return (self.blob_dir or self.data_path / "blobs").resolve()

    @property
    def trust_path(self) -> Path:
        return (self.pki_trust_dir or self.data_path / "trust").resolve()

    def hsm_config(self) -> HsmConfig:
        label = self.hsm_token_label
        if not (label or self.hsm_token_serial):
            label_file = self.secrets_dir / "token-label"
            try:
                label = label_file.read_text(encoding="utf-8").strip()
            except OSError:
                raise SettingsError(
                    "no HSM token configured: set KYSO_HSM_TOKEN_LABEL (or _SERIAL), or run "
                    f"'make run' once to provision the embedded token ({label_file} is missing)"
                ) from None
        return HsmConfig(
            module_path=self.hsm_module,
            token_label=label,
            token_serial=self.hsm_token_serial,
            pin=PinSource(
                env_var=PIN_ENV_VAR, file=self.hsm_pin_file or self.secrets_dir / "user-pin"
            ),
            pool_size=self.hsm_pool_size,
            acquire_timeout=self.hsm_acquire_timeout,
            retry_interval=self.hsm_retry_interval,
        )

    def apply_softhsm_conf(self) -> None:
        """Point SoftHSM2 at the embedded token directory, before the module is loaded."""
        conf = self.softhsm_conf
        if conf is None:
            if os.environ.get("SOFTHSM2_CONF"):
                return
            conf = self.data_path / "softhsm" / "softhsm2.conf"
            if not conf.is_file():
                return
        os.environ["SOFTHSM2_CONF"] = str(conf.resolve())


def load_settings(**overrides: object) -> Settings:
    explicit = os.environ.get("KYSO_CONFIG")
    if explicit and not Path(explicit).is_file():
        raise SettingsError(f"KYSO_CONFIG names {explicit}, which is not a readable file")
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as ex:
        # One line per the CLI's contract, and without pydantic's echo of the input values.
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'settings'}: {error['msg']}"
            for error in ex.errors()
        )
        raise SettingsError(f"invalid settings: {problems}") from None
    except ValueError as ex:
        raise SettingsError(f"invalid settings: {' '.join(str(ex).split())}") from None
