"""Settings: defaults, then a TOML file, then DIALER_* variables; bad values name the knob."""

from __future__ import annotations

from pathlib import Path

import pytest

from dialer.settings import DEFAULT_DATABASE_URL, AmiServer, SettingsError, load_settings


def test_defaults_run_out_of_the_box_on_the_embedded_database() -> None:
    settings = load_settings(environ={})
    assert settings.database_url == DEFAULT_DATABASE_URL
    assert settings.database_url.startswith("sqlite+aiosqlite:///")
    assert settings.ami_servers == ()


def test_environment_variables_override_the_toml_file(tmp_path: Path) -> None:
    cfg = tmp_path / "dialer.toml"
    cfg.write_text('[dialer]\nhttp_port = 9000\ndatabase_url = "postgresql+asyncpg://db/x"\n')
    settings = load_settings(cfg, environ={"DIALER_HTTP_PORT": "9100"})
    assert settings.http_port == 9100
    assert settings.database_url == "postgresql+asyncpg://db/x"


def test_ami_servers_are_parsed_from_a_comma_separated_list() -> None:
    settings = load_settings(
        environ={
            "DIALER_AMI_SERVERS": "ami://dialer:s3cr%40t@10.0.0.5:5038?name=pbx1&max_channels=120,"
            "ami://dialer:x@pbx2"
        }
    )
    assert settings.ami_servers == (
        AmiServer("pbx1", "10.0.0.5", 5038, "dialer", "s3cr@t", 120),
        AmiServer("pbx2", "pbx2", 5038, "dialer", "x", 200),
    )
    assert "s3cr" not in settings.ami_servers[0].redacted()


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"DIALER_HTTP_PORT": "eighty"}, "DIALER_HTTP_PORT"),
        ({"DIALER_AMI_SERVERS": "http://x"}, "DIALER_AMI_SERVERS"),
        ({"DIALER_AMI_SERVERS": "ami://x:y@h?max_channels=lots"}, "max_channels"),
    ],
)
def test_a_bad_value_is_refused_with_the_name_of_the_variable(
    environ: dict[str, str], named: str
) -> None:
    with pytest.raises(SettingsError, match=named):
        load_settings(environ=environ)


def test_an_unknown_key_in_the_file_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "dialer.toml"
    cfg.write_text("http_prot = 1\n")
    with pytest.raises(SettingsError, match="http_prot"):
        load_settings(cfg, environ={})
