"""deploy/kubernetes/: every manifest is valid against the Kubernetes schemas (kubernetes-validate,
strict), and the pieces agree: the ConfigMap's cauditd.toml is a config the daemon accepts, and
the paths, ports and probes it names are the ones the DaemonSet mounts and serves."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from cauditd import config as configmod
from tests.conftest import REPO

MANIFESTS = sorted((REPO / "deploy" / "kubernetes").glob("*.yaml"))
VERSIONS = ("1.30", "1.37")  # a cluster two years behind and the newest schemas


def documents() -> list[dict[str, Any]]:
    return [doc for path in MANIFESTS for doc in yaml.safe_load_all(path.read_text()) if doc]


def by_kind(kind: str) -> dict[str, Any]:
    (doc,) = [d for d in documents() if d["kind"] == kind]
    return doc


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifest_is_valid_kubernetes(path: Path, version: str) -> None:
    import kubernetes_validate

    for doc in yaml.safe_load_all(path.read_text()):
        kubernetes_validate.validate(doc, version, strict=True)


def test_validator_rejects_a_broken_daemonset() -> None:
    import kubernetes_validate

    broken = by_kind("DaemonSet")
    broken["spec"]["template"]["spec"]["containers"][0]["volumeMount"] = []  # misspelt key
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[-1], strict=True)


def test_configmap_holds_a_config_the_daemon_accepts(tmp_path: Path) -> None:
    data = by_kind("ConfigMap")["data"]
    path = tmp_path / "cauditd.toml"
    path.write_text(data["cauditd.toml"])
    config = configmod.load(path)
    assert config.api.listen == "0.0.0.0:7411" and len(config.api.tokens) == 2
    tomllib.loads(data["local.toml"])


def test_daemonset_mounts_what_the_config_names() -> None:
    config_text = by_kind("ConfigMap")["data"]["cauditd.toml"]
    config = configmod.from_table(configmod.Config, tomllib.loads(config_text), "cm", "")
    pod = by_kind("DaemonSet")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert pod["hostPID"] and pod["hostNetwork"]  # every process, host-side veths
    assert {"operator": "Exists"} in pod["tolerations"]
    for needed in ("/sys/kernel/tracing", "/sys/fs/bpf", "/sys/fs/cgroup", "/lib/modules",
                   "/usr/src", config.daemon.state_dir, config.probes.containerd_socket):
        assert needed in mounts, f"{needed} is not mounted"
        source = volumes[mounts[needed]["name"]]
        assert source.get("hostPath", {}).get("path") == needed, needed
    for token in config.api.tokens:
        directory = str(Path(token.file).parent)
        assert volumes[mounts[directory]["name"]]["secret"]["secretName"] == "cauditd-tokens"
        assert Path(token.file).name in by_kind("Secret")["stringData"]
    assert all(Path(p) == Path("/etc/cauditd/rules.d") for p in config.rules.paths)
    assert "/etc/cauditd/rules.d/local.toml" in mounts
    assert container["args"][-1] in mounts
    port = int(config.api.listen.rsplit(":", 1)[1])
    assert container["ports"][0]["containerPort"] == port
    assert container["resources"]["limits"]["memory"] and container["resources"]["requests"]


def test_probes_and_service_use_the_public_health_routes() -> None:
    from cauditd.api.app import ROUTES

    public = {route.path for route in ROUTES if route.role is None and route.method == "GET"}
    pod = by_kind("DaemonSet")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    probes = [container[k]["httpGet"] for k in ("livenessProbe", "readinessProbe", "startupProbe")]
    assert {p["path"] for p in probes} == {"/healthz", "/readyz"} <= public
    assert all(p["port"] == container["ports"][0]["name"] for p in probes)
    service = by_kind("Service")
    labels = pod.get("labels") or by_kind("DaemonSet")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == container["ports"][0]["name"]
