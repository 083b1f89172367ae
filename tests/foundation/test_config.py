"""The config file: defaults, and errors that name the file and the key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cauditd import cli, config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cauditd.toml"
    path.write_text(text)
    return path


def test_missing_default_file_means_defaults() -> None:
    loaded = config.load(None)
    assert loaded.api.listen == "127.0.0.1:7411"
    assert loaded.daemon.state_dir == "/var/lib/cauditd"


def test_values_are_read(tmp_path: Path) -> None:
    path = write(tmp_path, '[api]\nlisten = "127.0.0.1:9999"\n[store]\nretention_days = 7\n')
    loaded = config.load(path)
    assert loaded.api.listen == "127.0.0.1:9999"
    assert loaded.store.retention_days == 7.0
    assert loaded.path == str(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[api]\nlisten = 5\n", "api.listen must be a string, not an integer"),
        ("[bogus]\n", "unknown key 'bogus'"),
        ("[api]\nlsiten = 'x'\n", "unknown key 'api.lsiten'"),
        ("[probes]\ntrack_host = 'yes'\n", "probes.track_host must be a boolean, not a string"),
        ("[probes]\nringbuf_pages = true\n", "probes.ringbuf_pages must be an integer"),
        ("[rules]\npaths = 'x'\n", "rules.paths must be a list, not a string"),
        ("[rules]\npaths = [1]\n", "rules.paths[0] must be a string"),
        ("api = 3\n", "api must be a table"),
        ("[[alerts.sinks]]\nkind = 'slack'\n", "needs key 'name'"),
        ("[[alerts.sinks]]\nname='a'\nkind='slack'\nurl2='x'\n", "alerts.sinks[0].url2"),
        ("[api\n", "not valid TOML"),
    ],
)
def test_errors_name_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(config.ConfigError) as caught:
        config.load(path)
    assert str(caught.value).startswith(str(path))
    assert message in str(caught.value)


def test_named_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match="no such file"):
        config.load(tmp_path / "absent.toml")


def test_check_config_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path, "[daemon]\nlog_format = 'json'\n")
    assert cli.main(["check-config", "--config", str(good)]) == 0
    bad = write(tmp_path, "[daemon]\nlog_fromat = 'json'\n")
    assert cli.main(["check-config", "--config", str(bad)]) == 2
    assert "daemon.log_fromat" in capsys.readouterr().err


def test_configuration_doc_is_current() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    assert config.reference_markdown() in doc, "run scripts/gen-config-doc.sh"


@pytest.mark.parametrize(("mode", "owner", "match"), [
    (0o664, 0, r"mode 0664, writable by group or others \(chmod 0644"),
    (0o646, 0, "mode 0646"),
    (0o644, 65534, "owned by uid 65534"),
])
def test_config_another_user_could_change_is_refused(tmp_path: Path, mode: int, owner: int,
                                                     match: str) -> None:
    path = write(tmp_path, "[daemon]\nlog_format = 'json'\n")
    path.chmod(mode)
    os.chown(path, owner, owner)
    with pytest.raises(config.ConfigError, match=match) as caught:
        config.load(path)
    assert str(caught.value).startswith(str(path))


def test_readable_config_is_fine(tmp_path: Path) -> None:
    path = write(tmp_path, "[daemon]\nlog_format = 'json'\n")
    path.chmod(0o644)
    assert config.load(path).daemon.log_format == "json"


def test_check_config_checks_the_apis_token_files(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    token = tmp_path / "read.token"
    token.write_text("r" * 32 + "\n")
    token.chmod(0o644)
    path = write(tmp_path, f'[[api.tokens]]\nfile = "{token}"\nrole = "read"\n')
    assert cli.main(["check-config", "--config", str(path)]) == 2
    assert f"{token}: refusing a token file with mode 0644" in capsys.readouterr().err
    token.chmod(0o600)
    assert cli.main(["check-config", "--config", str(path)]) == 0
