"""Whatever a sweep's local Ray started dies with the sweep, even one killed with SIGKILL or by the OOM killer.

Ray alone gets most of the way: its GCS server and raylet receive SIGKILL when the sweep dies (PR_SET_PDEATHSIG),
the workers and the runs they started follow, and each run takes its kernel with it. But Ray's dashboard and
runtime-env agents, told that their raylet is gone, first try to report it to the dead GCS and wait a minute for
it. So the sweep starts this watcher by path (``python reaper.py PID``: the standard library only, no TensorFlow),
in a session of its own, with a pipe on its stdin that only the sweep holds. It notes every process started under
the sweep from then on; when the pipe closes (the sweep ended, however it ended) it sends SIGKILL to those still
running and to anything they started. Linux only, as /proc is."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys

POLL_SECONDS = 0.5  # how often the process tree is read; the agents start within a second of Ray


def processes() -> dict[int, tuple[int, int]]:
    """Each process's parent and start time (clock ticks after boot, which tell a reused pid apart)."""
    table = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rpartition(")")[2].split()  # after the name, which may hold spaces
        except OSError:  # it just ended
            continue
        table[int(entry)] = (int(fields[1]), int(fields[19]))
    return table


def below(roots: set[int], table: dict[int, tuple[int, int]]) -> set[tuple[int, int]]:
    """(pid, start time) of every process under ``roots``."""
    found, frontier = set(), set(roots)
    while frontier:
        children = {(pid, start) for pid, (parent, start) in table.items() if parent in frontier}
        frontier = {pid for pid, _ in children - found}
        found |= children
    return found


def watch(parent: int) -> None:
    """Note what ``parent`` starts after this process, and all under it, until stdin closes; then SIGKILL those
    still running and anything they started meanwhile."""
    me = os.getpid()
    born = processes()[me][1]
    seen: set[tuple[int, int]] = set()
    while not select.select([sys.stdin], [], [], POLL_SECONDS)[0]:
        table = processes()
        started = {pid for pid, (up, start) in table.items() if up == parent and start >= born and pid != me}
        seen |= {(pid, table[pid][1]) for pid in started} | below(started, table)
    table = processes()
    alive = {(pid, start) for pid, start in seen if table.get(pid, (0, None))[1] == start}
    for pid, _ in alive | below({pid for pid, _ in alive}, table):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


if __name__ == "__main__":
    watch(int(sys.argv[1]))
