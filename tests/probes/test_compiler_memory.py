"""After the probes are compiled, release_compiler_memory gives back the compiler's heap and
code pages: a fresh process that compiled one probe holds far less of libLLVM afterwards.
Pages other processes also map (this pytest process may have compiled probes too) stay: the
kernel only reclaims the ones that are ours alone, so the test counts those (Private_Clean)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.usefixtures("ebpf")

SCRIPT = """
import json
from cauditd.probes import bpf

def resident_kb():
    anonymous = compiler = 0
    current = ""
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            fields = line.split()
            if "-" in fields[0] and not fields[0].endswith(":"):
                current = fields[5] if len(fields) > 5 else ""
            elif fields[0] == "Anonymous:":
                anonymous += int(fields[1])
            elif fields[0] == "Private_Clean:":
                if any(lib in current for lib in bpf.COMPILER_LIBRARIES):
                    compiler += int(fields[1])
    return anonymous, compiler

from bcc import BPF
probe = BPF(text='TRACEPOINT_PROBE(raw_syscalls, sys_enter) { return 0; }')
before = resident_kb()
bpf.release_compiler_memory()
print(json.dumps({"before": before, "after": resident_kb()}))
"""


def test_compiler_pages_and_heap_are_released() -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    sizes = json.loads(out.stdout)
    (heap_before, llvm_before), (heap_after, llvm_after) = sizes["before"], sizes["after"]
    assert llvm_before > 10_000, sizes  # compiling touched tens of MB of libLLVM/libclang
    assert llvm_after < llvm_before / 4, sizes
    assert heap_before - heap_after > 10_000, sizes  # LLVM's freed heap went back too
