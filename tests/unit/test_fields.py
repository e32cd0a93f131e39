"""One field spec serves every settings class: checks, environment variables and repr agree."""

from __future__ import annotations

import dataclasses
import datetime
import inspect
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import tiercache
from tiercache import MemoryCacheSettings, MultiTierCacheSettings, Settings
from tiercache import _fields as fields
from tiercache._decorator.options import OWNER, Options

SETTINGS_CLASSES = (Settings, MultiTierCacheSettings, MemoryCacheSettings)
#: Fields taken as given: objects the application built.
UNCHECKED = {"redis_client", "async_redis_client"}
KEY = "a-signing-key-of-enough-bytes"

#: A value each kind reads from a variable, and what it reads as (none of them a default).
TEXT_BY_KIND: dict[fields.Kind, tuple[str, Any]] = {
    fields.FLAG: ("off", False),
    fields.SECONDS: ("7", 7.0),
    fields.FRACTION: ("0.5", 0.5),
    fields.SIZE: ("7", 7),
    fields.OPTIONAL_SIZE: ("off", None),
    fields.COUNT: ("7", 7),
    fields.PORT: ("7", 7),
    fields.DB: ("7", 7),
    fields.TEXT: ("elsewhere", "elsewhere"),
    fields.OPTIONAL_TEXT: ("someone", "someone"),
    fields.NAMESPACE: ("svc", "svc"),
    fields.POLICY: ("tinylfu", "tinylfu"),
    fields.URL: ("redis://cache:6380/2", "redis://cache:6380/2"),
    fields.OPTIONAL_URL: ("redis://cache:6380/2", "redis://cache:6380/2"),
    fields.SIGNING_KEYS: (KEY, (KEY.encode(),)),
    fields.SIGNING_TEXT: (KEY, KEY),
}


def _declared(cls: type) -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(cls) if f.name not in UNCHECKED]


@pytest.mark.parametrize("cls", [*SETTINGS_CLASSES, Options])
def test_every_field_declares_its_kind(cls: type) -> None:
    """No field of a settings class is left unchecked, but the client objects."""
    for field in _declared(cls):
        assert isinstance(field.metadata.get("kind"), fields.Kind), f"{cls.__name__}.{field.name}"


@pytest.mark.parametrize("cls", SETTINGS_CLASSES)
def test_every_field_reads_from_its_variable(cls: type, tmp_path: Path) -> None:
    """Each field is set by its TIERCACHE_ variable, parsed by its kind."""
    certificate = tmp_path / "cert.pem"
    certificate.write_text("not read here")
    for field in _declared(cls):
        variable = field.metadata["variable"] or f"TIERCACHE_{field.name.upper()}"
        text, expected = TEXT_BY_KIND[field.metadata["kind"]]
        if field.name.startswith("l2_ssl_") and field.name != "l2_ssl":
            text = expected = str(certificate)
        if field.default is False:
            text, expected = "on", True
        overrides = {"signing_key": KEY} if field.name == "pickle_signed_values" else {}
        read = (
            cls.from_env({variable: text}, **overrides)
            if cls is not Settings
            else Settings.from_environment({variable: text})
        )
        assert getattr(read, field.name) == expected, variable
        assert expected != field.default, f"{variable}: the sample is the default, so proves nothing"


@pytest.mark.parametrize("cls", [MultiTierCacheSettings, Settings])
def test_a_bad_value_names_the_class_and_the_field(cls: type) -> None:
    """Whatever field is wrong, the error says which, and of what."""
    for field in _declared(cls):
        with pytest.raises((TypeError, ValueError)) as raised:
            cls(**{field.name: object()})
        message = str(raised.value)
        assert message.startswith(f"{cls.__name__}: "), message
        named = "signing_key" if "signing" in field.name else field.name
        assert named in message, message


def test_a_bad_variable_names_the_variable() -> None:
    with pytest.raises(ValueError, match=r"Settings: TIERCACHE_L2_TIMEOUT='soon' is not a number"):
        MultiTierCacheSettings.from_env({"TIERCACHE_L2_TIMEOUT": "soon"})
    with pytest.raises(ValueError, match=r"environment: TIERCACHE_MAX_CONNECTIONS='x' is not"):
        Settings.from_environment({"TIERCACHE_MAX_CONNECTIONS": "x"})


def test_durations_may_be_timedeltas_and_are_kept_as_seconds() -> None:
    settings = MultiTierCacheSettings(l1_ttl_seconds=datetime.timedelta(minutes=2))
    assert settings.l1_ttl_seconds == 120.0
    assert Settings(timeout=datetime.timedelta(milliseconds=50)).timeout == 0.05


def test_settings_made_by_hand_are_checked_too() -> None:
    """Settings, as restore() takes them, are checked when made, not when first used."""
    with pytest.raises(ValueError, match=r"Settings: timeout must be a finite number > 0"):
        Settings(timeout=-1)


def test_options_refuse_unknown_names_listing_the_known_ones() -> None:
    expected = rf"{re.escape(OWNER)}: unknown option\(s\) \['ttl'\]; the options are \['cache_if'"
    with pytest.raises(TypeError, match=expected):
        Options.checked({"ttl": 5})


_SECRET = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=20, max_size=30)


@given(password=_SECRET, key=_SECRET)
def test_repr_shows_no_secret(password: str, key: str) -> None:
    """Passwords (in the URL or their own field) and signing keys never reach a repr."""
    adapter = MultiTierCacheSettings(l2_password=password, signing_key=key)
    with_url = MultiTierCacheSettings(l2_url=f"redis://app:{password}@cache:6379/0")
    decorator = Settings(redis_url=f"redis://app:{password}@cache:6379/0", signing_keys=(key.encode(),))
    for shown in (repr(adapter), repr(with_url), repr(decorator), repr(Options(signing_key=(key.encode(),)))):
        assert password not in shown and key not in shown, shown
    assert "l2_password='***'" in repr(adapter) and "signing_keys='<1 key(s)>'" in repr(decorator)


def test_configure_takes_every_setting() -> None:
    """configure()'s typed keywords and Settings' fields name the same settings."""
    parameters = set(inspect.signature(tiercache.configure).parameters)
    names = {f.name for f in dataclasses.fields(Settings)} - {"signing_keys"} | {"signing_key"}
    assert parameters == names


def test_the_configuration_table_lists_every_setting() -> None:
    """docs/tiers.md's table names each configure() keyword and each TIERCACHE_* variable."""
    table = (Path(__file__).parents[2] / "docs" / "tiers.md").read_text().split("## Configuration")[1]
    table = table.split("\n\n")[1]
    for name in inspect.signature(tiercache.configure).parameters:
        assert f"`{name}=`" in table, name
    for field in dataclasses.fields(Settings):
        variable = field.metadata.get("variable", None)
        if variable is not None:
            assert f"`{variable or f'TIERCACHE_{field.name.upper()}'}`" in table, field.name
