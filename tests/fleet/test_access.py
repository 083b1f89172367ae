"""Credentials and TLS from files, as the NATS tools take them; a stream not as configured."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cauditd.fleet.connection import Access, FleetError
from tests.conftest import unavailable
from tests.fakes import make_finding
from tests.fleet.cluster import Cluster, nats_server_problem
from tests.fleet.ctl import Fleetctl
from tests.fleet.hosts import SimHost, fleet_config
from tests.harness import CAUDITD


def make_tls(root: Path) -> dict[str, Path]:
    """A CA and a server certificate for 127.0.0.1, made with openssl."""
    root.mkdir(parents=True, exist_ok=True)
    paths = {n: root / f"{n}.pem" for n in ("ca", "ca-key", "server", "server-key")}

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
            "/CN=cauditd test CA", "-keyout", str(paths["ca-key"]), "-out", str(paths["ca"]))
    csr = root / "server.csr"
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", str(paths["server-key"]), "-out", str(csr))
    ext = root / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", str(csr), "-CA", str(paths["ca"]), "-CAkey",
            str(paths["ca-key"]), "-CAcreateserial", "-days", "2", "-extfile", str(ext),
            "-out", str(paths["server"]))
    return paths


def make_nkey_user(root: Path) -> tuple[Path, str]:
    """A user NKey: the seed in a 0600 file, and its public key for the server's config."""
    import nkeys

    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    path = root / "user.nk"
    path.write_bytes(seed + b"\n")
    path.chmod(0o600)
    public = nkeys.from_seed(bytearray(seed)).public_key.decode()
    return path, public


def server(root: Path, config: str, scheme: str = "nats") -> Cluster:
    problem = nats_server_problem()
    if problem:
        unavailable(problem)
    cluster = Cluster(root / "nats", size=1, config=config, scheme=scheme)
    cluster.start()
    return cluster


async def publish_three(tmp_path: Path, config: Any) -> SimHost:
    host = await SimHost(tmp_path / "host", "web-1", config).start()
    for rule in ("a", "b", "c"):
        host.add(make_finding(rule=rule))
    await host.drained(30)
    return host


async def test_tls_and_nkey_seed_from_files(tmp_path: Path) -> None:
    tls = make_tls(tmp_path / "tls")
    seed_file, public = make_nkey_user(tmp_path)
    cluster = server(tmp_path, (
        f'tls {{\n  cert_file: "{tls["server"]}"\n  key_file: "{tls["server-key"]}"\n}}\n'
        f'authorization {{\n  users: [ {{ nkey: "{public}" }} ]\n}}\n'), scheme="tls")
    try:
        config = fleet_config(cluster.urls, tls_ca_file=str(tls["ca"]), nkey_file=str(seed_file))
        host = await publish_three(tmp_path, config)
        await host.stop()
        ctl = Fleetctl(cluster.urls, "--tls-ca", str(tls["ca"]), "--nkey", str(seed_file))
        found = await ctl.findings()
        assert sorted(f["rule"] for f in found) == ["a", "b", "c"]
        refused = await Fleetctl(cluster.urls, "--tls-ca", str(tls["ca"])).run("findings")
        assert refused.returncode != 0
        assert "authorization violation" in refused.stderr.lower(), refused.stderr
    finally:
        cluster.stop()


async def test_token_from_file(tmp_path: Path) -> None:
    token = base64.b32encode(os.urandom(15)).decode()
    cluster = server(tmp_path, f'authorization {{\n  token: "{token}"\n}}\n')
    token_file = tmp_path / "nats.token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    try:
        host = await publish_three(tmp_path, fleet_config(cluster.urls,
                                                          token_file=str(token_file)))
        assert host.fleet.status()["state"] == "connected"
        await host.stop()
    finally:
        cluster.stop()


async def test_missing_secret_file_stops_the_start(tmp_path: Path,
                                                   nats_single: Cluster) -> None:
    host = SimHost(tmp_path / "h", "web-1",
                   fleet_config(nats_single.urls, creds_file=str(tmp_path / "nope.creds")))
    with pytest.raises(FleetError, match=r"nope.creds: no such file"):
        await host.start()
    await host.stop()


@pytest.mark.parametrize(("name", "mode", "why"), [
    ("token", 0o644, "readable or writable by others"),
    ("user.creds", 0o620, "readable or writable by others"),
    ("ca.pem", 0o666, "writable by group or others"),
])
def test_credential_files_others_could_read_or_change_are_refused(
    tmp_path: Path, name: str, mode: int, why: str
) -> None:
    path = tmp_path / name
    path.write_text("x\n")
    path.chmod(mode)
    field = {"token": "token_file", "user.creds": "creds_file", "ca.pem": "tls_ca_file"}[name]
    access = Access(servers=("nats://127.0.0.1:9",), **{field: str(path)})
    with pytest.raises(FleetError, match=why):
        access.options()


def test_daemon_says_why_it_cannot_start(tmp_path: Path) -> None:
    config = tmp_path / "cauditd.toml"
    config.write_text(
        f'[daemon]\nstate_dir = "{tmp_path / "state"}"\n[api]\nenabled = false\n'
        "[probes]\nenabled = false\n[network]\nenabled = false\n"
        f'[fleet]\nservers = ["nats://127.0.0.1:9"]\ncreds_file = "{tmp_path}/gone.creds"\n')
    done = subprocess.run([*CAUDITD, "run", "--config", str(config)], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PYTHONPATH": "daemon"})
    assert done.returncode == 1
    assert f"cauditd: fleet: {tmp_path}/gone.creds: no such file" in done.stderr


async def test_stream_with_other_settings_is_refused_by_name(
    tmp_path: Path, nats_single: Cluster, js_client: Any
) -> None:
    await js_client.add_stream(name="CAUDITD", subjects=["cauditd.*.finding.*"], max_age=3600)
    host = await SimHost(tmp_path / "h", "web-1", fleet_config(nats_single.urls)).start()
    try:
        host.add(make_finding())
        await host.store.flush()
        for _ in range(100):
            if host.fleet.last_error:
                break
            await asyncio.sleep(0.1)
        error = host.fleet.last_error
        assert "stream CAUDITD exists with other settings" in error
        assert "max_age_s: the stream has 3600.0, the config asks for 2592000.0" in error
        assert "subjects: the stream has ['cauditd.*.finding.*']" in error
        assert host.depth == 1  # kept in the outbox, not dropped
        assert host.fleet.status()["state"] == "starting"
    finally:
        await host.stop()


async def test_missing_stream_is_not_created_when_told_not_to(
    tmp_path: Path, nats_single: Cluster
) -> None:
    config = fleet_config(nats_single.urls, create_stream=False)
    host = await SimHost(tmp_path / "h", "web-1", config).start()
    try:
        for _ in range(100):
            if host.fleet.last_error:
                break
            await asyncio.sleep(0.1)
        assert "stream CAUDITD does not exist and fleet.create_stream is false" in \
            host.fleet.last_error
    finally:
        await host.stop()


def test_cauditctl_without_nats_support_is_not_needed_for_local_commands() -> None:
    """cauditctl's local commands do not import nats (a host without a fleet pays nothing)."""
    code = ("import sys, cauditd.ctl as c; c.build_parser(); "
            "sys.exit(1 if 'nats' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0
