"""Configuration: the frozen stage-config base, the pseudonymisation secret and run settings.

This is the one module that reads the environment.  Stages receive what they
need as explicit keyword arguments.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from medpipe.errors import ConfigError

__all__ = [
    "FrozenConfig",
    "describe_validation_error",
    "SECRET_ENV",
    "DEMO_SECRET",
    "resolve_secret",
    "load_config",
]

C = TypeVar("C")
F = TypeVar("F", bound="FrozenConfig")

log = logging.getLogger(__name__)


def _problems(exc: ValidationError) -> list[tuple[str, str]]:
    """``(field path, reason)`` of each error; nested configs' problems are flattened."""
    out: list[tuple[str, str]] = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in err["loc"])
        nested = getattr((err.get("ctx") or {}).get("error"), "problems", None)
        if nested is not None:  # a FrozenConfig inside this one refused its part
            out += [(".".join(p for p in (where, w) if p), m) for w, m in nested]
            continue
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] not in ("value_error", "missing", "extra_forbidden", "assertion_error"):
            got = repr(err.get("input"))
            msg += f" (got {got[:60] + '...' if len(got) > 60 else got})"
        out.append((where, msg))
    return out


def describe_validation_error(exc: ValidationError) -> str:
    """One item per problem of a pydantic error: ``field.path: reason``.

    Parameters
    ----------
    exc
        The pydantic error.

    Returns
    -------
    str
        ``"; "``-joined ``<field>: <reason>`` items (whole-config rules name their
        fields in the reason).
    """
    return "; ".join(f"{w}: {m}" if w else m for w, m in _problems(exc))


def _config_error(cls: type, exc: ValidationError) -> ConfigError:
    problems = _problems(exc)
    text = "; ".join(f"{w}: {m}" if w else m for w, m in problems)
    err = ConfigError(f"invalid {cls.__name__}: {text}")
    err.problems = problems  # type: ignore[attr-defined]  # read by an enclosing config
    return err


class FrozenConfig(BaseModel):
    """Base of every stage config: frozen, strict-keyed, :class:`ConfigError` on bad input.

    * immutable and hashable; unknown keys are refused; floats must be finite;
    * every validation failure (constructor, :meth:`model_validate`,
      :meth:`model_validate_json`, :meth:`from_dict`, :meth:`from_yaml`) raises
      :class:`~medpipe.errors.ConfigError` (a ``ValueError``) naming the field and the reason;
    * :meth:`hash` is the one canonical digest: SHA-256 of :meth:`canonical_json`, 16 hex
      digits; it names the store group a config writes.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise _config_error(type(self), exc) from None

    @classmethod
    def model_validate(cls: type[F], obj: Any, **kwargs: Any) -> F:  # type: ignore[override]
        """Pydantic's ``model_validate``, raising :class:`ConfigError`."""
        try:
            return super().model_validate(obj, **kwargs)
        except ValidationError as exc:
            raise _config_error(cls, exc) from None

    @classmethod
    def model_validate_json(cls: type[F], json_data: Any, **kwargs: Any) -> F:  # type: ignore[override]
        """Pydantic's ``model_validate_json``, raising :class:`ConfigError`."""
        try:
            return super().model_validate_json(json_data, **kwargs)
        except ValidationError as exc:
            raise _config_error(cls, exc) from None

    @classmethod
    def default(cls: type[F]) -> F:
        """The default config (every field at its default)."""
        return cls()

    def canonical_json(self) -> str:
        """Canonical JSON: sorted keys, no whitespace, ASCII, defaults included."""
        return json.dumps(
            self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"),
            ensure_ascii=True, allow_nan=False,
        )

    def hash(self) -> str:
        """Stable 16-hex-digit SHA-256 prefix of :meth:`canonical_json`."""
        return hashlib.sha256(self.canonical_json().encode("ascii")).hexdigest()[:16]

    @classmethod
    def from_dict(cls: type[F], data: Mapping[str, Any]) -> F:
        """Build from a plain mapping (e.g. parsed YAML).

        Raises
        ------
        ConfigError
            ``data`` is not a mapping or not a valid config.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(
                f"a {cls.__name__} must be a mapping, got {type(data).__name__}"
            )
        return cls.model_validate(dict(data))

    @classmethod
    def from_yaml(cls: type[F], path: str | Path) -> F:
        """Read a config written by :meth:`to_yaml` (or by hand).

        Raises
        ------
        ConfigError
            The file cannot be read, is not YAML or not a valid config; the message
            starts with the path.
        """
        import yaml

        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        try:
            return cls.from_dict(data or {})
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None

    def to_yaml(self, path: str | Path) -> Path:
        """Write the config as YAML (every field, defaults included) and return the path."""
        import yaml

        path = Path(path)
        path.write_text(
            yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False), encoding="utf-8"
        )
        return path


#: Environment variable holding the HMAC secret used for pseudonymous keys.
SECRET_ENV = "MEDPIPE_SECRET"

#: The demo's well-known secret.  Keys made with it are *not* pseudonymous to anyone
#: who has read this file; never use it on a real archive.
DEMO_SECRET = "medpipe-demo-secret-NOT-FOR-REAL-DATA"


_warned = False  # the demo-secret warning is logged once per process


def resolve_secret(secret: str | None = None, *, allow_demo: bool = False) -> bytes:
    """Return the secret for keyed hashes of UIDs.

    Parameters
    ----------
    secret
        An explicit secret, e.g. one a Prefect flow read from a ``Secret`` block.
        Takes precedence over the environment.
    allow_demo
        If no secret is configured, fall back to :data:`DEMO_SECRET` with a warning
        (logging a warning once) instead of failing.  Only the demo should pass ``True``.

    Returns
    -------
    bytes
        The secret, UTF-8 encoded.

    Raises
    ------
    ConfigError
        If no secret is configured and ``allow_demo`` is false.
    """
    value = secret or os.environ.get(SECRET_ENV)
    if value:
        return value.encode()
    if allow_demo:
        global _warned
        if _warned:
            return DEMO_SECRET.encode()
        _warned = True
        msg = (
            f"{SECRET_ENV} is not set: using the public demo secret. Pseudonymous keys "
            "made with it can be recomputed by anyone; set it before ingesting real data."
        )
        log.warning(msg)
        return DEMO_SECRET.encode()
    raise ConfigError(
        f"No pseudonymisation secret: set the {SECRET_ENV} environment variable, "
        "create a Prefect Secret block named 'medpipe-secret', or pass --demo-secret "
        "for a throw-away run."
    )


def load_config(cls: type[C], path: str | Path | None) -> C:
    """Read a stage config from a YAML file, or the stage's default without one.

    Parameters
    ----------
    cls
        The config class (``PreprocessConfig``, ``FeatureConfig`` …).  Its ``from_yaml``
        and ``default`` class methods are used where it has them.
    path
        The YAML file, or ``None`` for the default config.

    Returns
    -------
    C
        The validated, frozen config.

    Raises
    ------
    ConfigError
        The file is missing or its content is not a valid config; the message names
        the file and the reason.
    """
    import yaml
    from pydantic import ValidationError

    if path is None:
        return cls.default() if hasattr(cls, "default") else cls()  # type: ignore[attr-defined]
    path = Path(path)
    try:
        if hasattr(cls, "from_yaml"):
            return cls.from_yaml(path)  # type: ignore[attr-defined]
        data: Any = yaml.safe_load(path.read_text()) or {}
        return cls.model_validate(data)  # type: ignore[attr-defined]
    except (ValidationError, ValueError, OSError, yaml.YAMLError) as err:
        if isinstance(err, ConfigError) and str(path) in str(err):
            raise
        raise ConfigError(f"{path}: {err}") from None


# --------------------------------------------------------------------------- environment
# Every MEDPIPE_* default that is not a secret is read here, and only here.

__all__ += [
    "ARCHIVE_ENV",
    "STORE_ENV",
    "TZ_ENV",
    "CLUSTER_CONFIG_ENV",
    "SAMPLE_NPZ_ENV",
    "PREFECT_API_ENV",
    "DEFAULT_CLUSTER_CONFIG",
    "EnvDefaults",
    "env_defaults",
]

#: Archive root default of ``medpipe serve`` (and ``deploy/prefect.yaml``).
ARCHIVE_ENV = "MEDPIPE_ARCHIVE"
#: Store default of ``medpipe serve`` (and ``deploy/prefect.yaml``).
STORE_ENV = "MEDPIPE_STORE"
#: IANA zone of the nightly schedule of ``medpipe serve`` (and ``deploy/prefect.yaml``).
TZ_ENV = "MEDPIPE_TZ"
#: Folder holding the ``--cluster slurm|kubernetes`` files (``<kind>.yaml``).
CLUSTER_CONFIG_ENV = "MEDPIPE_CLUSTER_CONFIG"
#: A MedMNIST ``.npz`` the demo uses instead of the packaged BreastMNIST file.
SAMPLE_NPZ_ENV = "MEDPIPE_SAMPLE_NPZ"
#: Set when the runs report to a Prefect server (Prefect's own setting).
PREFECT_API_ENV = "PREFECT_API_URL"

#: Where ``--cluster slurm|kubernetes`` looks without ``$MEDPIPE_CLUSTER_CONFIG``:
#: ``deploy/cluster`` under the current directory (the checkout root).
DEFAULT_CLUSTER_CONFIG = Path("deploy") / "cluster"


@dataclass(frozen=True)
class EnvDefaults:
    """The environment's defaults (``None`` where a variable is not set).

    Attributes
    ----------
    archive, store
        ``$MEDPIPE_ARCHIVE``, ``$MEDPIPE_STORE``.
    timezone
        ``$MEDPIPE_TZ``, default ``UTC``.
    cluster_config
        ``$MEDPIPE_CLUSTER_CONFIG``, default :data:`DEFAULT_CLUSTER_CONFIG`.
    sample_npz
        ``$MEDPIPE_SAMPLE_NPZ``.
    secret_set
        Whether ``$MEDPIPE_SECRET`` is set (its value is not kept here).
    prefect_api
        ``$PREFECT_API_URL``.
    """

    archive: str | None = None
    store: str | None = None
    timezone: str = "UTC"
    cluster_config: Path = DEFAULT_CLUSTER_CONFIG
    sample_npz: Path | None = None
    secret_set: bool = False
    prefect_api: str | None = None


def env_defaults(environ: Mapping[str, str] | None = None) -> EnvDefaults:
    """Read the environment's defaults.

    Parameters
    ----------
    environ
        The environment (default :data:`os.environ`); empty values count as unset.

    Returns
    -------
    EnvDefaults
    """
    env = os.environ if environ is None else environ

    def get(name: str) -> str | None:
        return env.get(name) or None

    npz = get(SAMPLE_NPZ_ENV)
    return EnvDefaults(
        archive=get(ARCHIVE_ENV),
        store=get(STORE_ENV),
        timezone=get(TZ_ENV) or "UTC",
        cluster_config=Path(get(CLUSTER_CONFIG_ENV) or DEFAULT_CLUSTER_CONFIG),
        sample_npz=Path(npz) if npz else None,
        secret_set=bool(get(SECRET_ENV)),
        prefect_api=get(PREFECT_API_ENV),
    )


# --------------------------------------------------------------------------- archive credentials
__all__ += ["DICOMWEB_TOKEN_ENV", "DICOMWEB_USER_ENV", "DICOMWEB_PASSWORD_ENV",
            "DicomwebAuth", "dicomweb_auth"]

#: Bearer token of a DICOMweb archive (``Authorization: Bearer …``).
DICOMWEB_TOKEN_ENV = "MEDPIPE_DICOMWEB_TOKEN"
#: User and password of a DICOMweb archive (HTTP basic auth), when no token is set.
DICOMWEB_USER_ENV = "MEDPIPE_DICOMWEB_USER"
DICOMWEB_PASSWORD_ENV = "MEDPIPE_DICOMWEB_PASSWORD"


@dataclass(frozen=True, repr=False)
class DicomwebAuth:
    """A DICOMweb archive's credentials (never from the command line; not printed)."""

    token: str | None = None
    user: str | None = None
    password: str | None = None

    def __repr__(self) -> str:
        kind = "bearer" if self.token else "basic" if self.user else "none"
        return f"DicomwebAuth({kind})"


def dicomweb_auth(environ: Mapping[str, str] | None = None) -> DicomwebAuth:
    """The DICOMweb credentials from the environment.

    Parameters
    ----------
    environ
        The environment (default :data:`os.environ`); empty values count as unset.

    Returns
    -------
    DicomwebAuth
        ``$MEDPIPE_DICOMWEB_TOKEN`` (bearer) or ``$MEDPIPE_DICOMWEB_USER`` with
        ``$MEDPIPE_DICOMWEB_PASSWORD`` (basic); empty when none is set.

    Raises
    ------
    ConfigError
        A user without a password.
    """
    env = os.environ if environ is None else environ
    token = env.get(DICOMWEB_TOKEN_ENV) or None
    user = env.get(DICOMWEB_USER_ENV) or None
    password = env.get(DICOMWEB_PASSWORD_ENV) or None
    if user and not password and not token:
        raise ConfigError(f"{DICOMWEB_USER_ENV} is set but {DICOMWEB_PASSWORD_ENV} is not")
    return DicomwebAuth(token=token, user=None if token else user,
                        password=None if token else password)
