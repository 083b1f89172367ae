"""Fleet rule rollout through a JetStream key-value bucket: one key per rule file plus a manifest.

`cauditctl fleet rules push FILES` puts each file under its name, then the manifest (file names,
their sha256 and the set's digest), then deletes keys of files the set no longer has. Followers
act on the manifest only: they fetch the files it names, check each against its hash (a push
still under way is retried at the next look), write them to a new directory and reload their
rules from it as a local reload does; a set that does not compile is refused (the old one keeps
running) and reported on `<prefix>.rules.<bucket>.status.<host>`.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

MANIFEST_KEY = "_manifest"
_KEY = re.compile(r"^[-_=.A-Za-z0-9]+$")
RULE_SUFFIXES = (".toml", ".yaml", ".yml")


class RolloutError(ValueError):
    """A rule set that cannot be pushed or fetched as it is."""


def digest(files: Mapping[str, bytes]) -> str:
    """The rule set's digest: sha256 over its files' names and contents, in name order."""
    h = hashlib.sha256()
    for name in sorted(files):
        content = files[name]
        h.update(f"{name}\0{len(content)}\0".encode())
        h.update(content)
    return "sha256:" + h.hexdigest()


def file_key(name: str) -> str:
    """The bucket key of a rule file (its base name); RolloutError if the name cannot be one."""
    if not _KEY.match(name) or name == MANIFEST_KEY or name.startswith("."):
        raise RolloutError(f"{name!r}: rule file names in a bucket use only letters, digits, "
                           "'-', '_', '=' and '.'")
    return name


@dataclass(frozen=True, slots=True)
class Manifest:
    """What a push contains: file name -> sha256 of its content, and the set's digest."""

    digest: str
    files: dict[str, str] = field(default_factory=dict)
    pushed_by: str = ""
    pushed_at: str = ""

    def to_bytes(self) -> bytes:
        return json.dumps({"digest": self.digest, "files": self.files,
                           "pushed_by": self.pushed_by, "pushed_at": self.pushed_at},
                          sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> Manifest:
        try:
            doc = json.loads(raw)
            files = {str(k): str(v) for k, v in dict(doc["files"]).items()}
            for name in files:
                file_key(name)
            return cls(str(doc["digest"]), files, str(doc.get("pushed_by", "")),
                       str(doc.get("pushed_at", "")))
        except (ValueError, KeyError, TypeError) as exc:
            raise RolloutError(f"the bucket's manifest is not one cauditd wrote: {exc}") from None

    @classmethod
    def of(cls, files: Mapping[str, bytes], **meta: str) -> Manifest:
        hashes = {name: hashlib.sha256(content).hexdigest() for name, content in files.items()}
        return cls(digest(files), hashes, **meta)

    def verify(self, files: Mapping[str, bytes]) -> bool:
        """True when `files` are exactly this manifest's (a push in progress gives False)."""
        return set(files) == set(self.files) and all(
            hashlib.sha256(files[n]).hexdigest() == h for n, h in self.files.items()
        )


def read_rule_files(paths: Iterable[Path]) -> dict[str, bytes]:
    """Rule files named on a push command line (directories: their rule files), by base name."""
    files: dict[str, bytes] = {}
    for path in paths:
        members = sorted(p for p in path.iterdir() if p.suffix in RULE_SUFFIXES) \
            if path.is_dir() else [path]
        for member in members:
            name = file_key(member.name)
            if name in files:
                raise RolloutError(f"two files named {name} in one push")
            try:
                files[name] = member.read_bytes()
            except OSError as exc:
                raise RolloutError(f"{member}: {exc.strerror}") from None
    if not files:
        raise RolloutError("no rule files to push")
    return files


def local_digest(paths: Iterable[Path]) -> str:
    """The digest of rule files on disk (the rule set a host runs without rollout)."""
    files: dict[str, bytes] = {}
    for path in paths:
        members = sorted(path.rglob("*")) if path.is_dir() else [path]
        for member in members:
            if member.is_file() and member.suffix in RULE_SUFFIXES:
                try:
                    files[str(member)] = member.read_bytes()
                except OSError:
                    continue
    return digest(files)


def install(files: Mapping[str, bytes], root: Path, manifest: Manifest) -> Path:
    """Write a fetched set to root/<digest>/ (complete before it is used) and return it."""
    target = root / manifest.digest.replace(":", "-")
    if target.is_dir():
        return target
    staging = root / f".{target.name}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True, mode=0o700)
    for name, content in files.items():
        (staging / file_key(name)).write_bytes(content)
    (staging / MANIFEST_KEY).write_bytes(manifest.to_bytes())
    staging.rename(target)
    return target


def prune(root: Path, keep: Iterable[Path]) -> None:
    """Remove installed sets other than `keep` (the running one and the one being tried)."""
    kept = {p.resolve() for p in keep}
    for entry in root.iterdir() if root.is_dir() else ():
        if entry.is_dir() and entry.resolve() not in kept and entry.name != "current":
            shutil.rmtree(entry, ignore_errors=True)
