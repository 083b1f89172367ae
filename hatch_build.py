"""Build the compiled record decoder (daemon/cauditd/probes/_fastrecords.c) into the package.

A hatchling build hook: a wheel gets the module beside the Python sources, an editable install
(`pip install -e`, what scripts/bootstrap.sh does) gets it built in place. Without gcc or the
Python headers the build says so and goes on: cauditd then decodes every record in Python
(cauditd.probes.records), only slower. `python3 hatch_build.py` builds it in place by hand.

The module carries the SHA-256 of the source it was built from, and records.py refuses it when
the source beside it differs, so an edited .c is never run from a stale build.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

try:
    from hatchling.builders.hooks.plugin.interface import BuildHookInterface
except ImportError:  # run by hand, outside a build
    BuildHookInterface = object  # type: ignore[assignment,misc]

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "daemon/cauditd/probes/_fastrecords.c"
MODULE = "cauditd/probes/_fastrecords" + sysconfig.get_config_var("EXT_SUFFIX")
# Warnings are shown, not fatal: a newer compiler's new warning must not leave a host decoding
# in Python (tests/probes/test_fastrecords.py builds with -Werror).
CFLAGS = ["-O2", "-g", "-Wall", "-Wextra", "-Wno-unused-parameter",
          "-Wno-missing-field-initializers", "-fPIC", "-shared"]


def build(out: Path, extra: tuple[str, ...] = ()) -> str | None:
    """Compile the module to `out` (with `extra` flags); None, or why it could not."""
    cc = shutil.which("gcc") or shutil.which("cc")
    include = Path(sysconfig.get_paths()["include"])
    if cc is None:
        return "no C compiler (apt-get install gcc)"
    if not (include / "Python.h").exists():
        return f"no Python headers in {include} (apt-get install python3-dev)"
    sha = hashlib.sha256(SOURCE.read_bytes()).hexdigest()
    out.parent.mkdir(parents=True, exist_ok=True)
    command = [cc, *CFLAGS, *extra, f"-I{include}", f'-DCAUDITD_SOURCE_SHA="{sha}"', str(SOURCE),
               "-o", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    return None if done.returncode == 0 else f"{cc} failed:\n{done.stderr}"


class CompiledDecoderHook(BuildHookInterface):  # type: ignore[misc,valid-type]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict) -> None:  # type: ignore[type-arg]
        if self.target_name != "wheel":
            return
        if version == "editable":
            out = HERE / "daemon" / MODULE
        else:
            out = Path(tempfile.mkdtemp(prefix="cauditd-ext-")) / Path(MODULE).name
        error = build(out)
        if error is not None:
            print(f"cauditd: not building the compiled record decoder: {error}", file=sys.stderr)
            return
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        if version != "editable":
            build_data["force_include"][str(out)] = MODULE


if __name__ == "__main__":
    problem = build(HERE / "daemon" / MODULE)
    sys.exit(f"cauditd: {problem}" if problem else None)
