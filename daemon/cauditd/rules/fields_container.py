"""Falco's container fields beyond the basics (those of its container plugin): start time, type,
image id, labels and mounts, and the pod's uid.

Mounts are the runtime's (Docker's inspect document): a mount is looked up by index or by a
glob on its source (container.mount.source[...] by its destination), as the plugin does.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import Any

from cauditd.events import ContainerMount, Event
from cauditd.rules import procfs
from cauditd.rules.fields import ALL, Extractor, FieldType, _field

S, INT, B = FieldType.STRING, FieldType.INT, FieldType.BOOL


def _start_ns(ev: Event) -> int | None:
    """The start of the container's first process while it lives, else the runtime's (or our
    first sight's) start time of the container."""
    container = ev.container
    if container.is_host:
        return None
    started = procfs.start_time_ns(container.pid) if container.pid else None
    return started if started is not None else container.started_ns or None


@_field("container.start_ts", INT, ALL, "When the container's first process started, ns since "
        "the epoch.", volatile=True)
def _container_start_ts(ev: Event) -> Any:
    return _start_ns(ev)


@_field("container.duration", INT, ALL, "Nanoseconds since container.start_ts.", volatile=True)
def _container_duration(ev: Event) -> Any:
    started = _start_ns(ev)
    return ev.wall_ns - started if started is not None else None


@_field("container.type", S, ALL, 'The container runtime: "docker", "containerd", "cri-o".')
def _container_type(ev: Event) -> Any:
    return None if ev.container.is_host else ev.container.runtime or None


@_field("container.image.id", S, ALL, "The image id the runtime gives.")
def _container_image_id(ev: Event) -> Any:
    return ev.container.image_id or None


def _make_label(key: str) -> Extractor:
    return lambda ev: ev.container.labels.get(key)


@_field("container.label", S, ALL, "A container label's value: container.label[KEY].",
        arg="key", make=_make_label)
def _container_label(ev: Event) -> Any:
    return None


@_field("container.labels", S, ALL, 'The container\'s labels as "key:value, ..." (without '
        "Kubernetes' own io.kubernetes.* labels).")
def _container_labels(ev: Event) -> Any:
    labels = [f"{k}:{v}" if v else k for k, v in sorted(ev.container.labels.items())
              if not k.startswith(("io.kubernetes.", "annotation."))]
    return ", ".join(labels) or None


@_field("k8s.pod.uid", S, ALL, "Kubernetes pod uid (from the container's labels).")
def _k8s_pod_uid(ev: Event) -> Any:
    return ev.container.labels.get("io.kubernetes.pod.uid")


def mount_text(mount: ContainerMount) -> str:
    """source:dest:mode:rdwr:propagation, as Falco prints a mount."""
    rw = "true" if mount.rw else "false"
    return f"{mount.source}:{mount.dest}:{mount.mode}:{rw}:{mount.propagation}"


@_field("container.mounts", S, ALL, 'The container\'s mounts: '
        '"source:dest:mode:rdwr:propagation,..." (known for Docker containers).')
def _container_mounts(ev: Event) -> Any:
    return ",".join(map(mount_text, ev.container.mounts)) or None


def find_mount(mounts: tuple[ContainerMount, ...], key: str,
               by: Callable[[ContainerMount], str]) -> ContainerMount | None:
    """The mount at index `key`, else the first whose `by` (source or dest) matches the glob."""
    if key.isdigit():
        index = int(key)
        return mounts[index] if index < len(mounts) else None
    return next((m for m in mounts if fnmatch.fnmatchcase(by(m), key)), None)


def _mount_field(name: str, show: Callable[[ContainerMount], str], by_dest: bool,
                 what: str) -> None:
    def make(key: str) -> Extractor:
        def extract(ev: Event) -> Any:
            mount = find_mount(ev.container.mounts, key,
                               (lambda m: m.dest) if by_dest else (lambda m: m.source))
            return show(mount) if mount is not None else None

        return extract

    looked_up = "destination" if by_dest else "source"
    _field(name, S, ALL, f"{what} of one mount, by index ({name}[0]) or by a glob on its "
           f"{looked_up} ({name}[/var/run/docker.sock]).", arg="key", make=make)(
        lambda ev: None)


_mount_field("container.mount", mount_text, False, "source:dest:mode:rdwr:propagation")
_mount_field("container.mount.source", lambda m: m.source, True, "The source")
_mount_field("container.mount.dest", lambda m: m.dest, False, "The destination")
_mount_field("container.mount.mode", lambda m: m.mode, False, "The mode")
_mount_field("container.mount.rdwr", lambda m: "true" if m.rw else "false", False,
             "Read-write (true/false)")
_mount_field("container.mount.propagation", lambda m: m.propagation, False, "The propagation")
