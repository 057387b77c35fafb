"""A fault proxy shared by every client, with faults per client process.

Kafka clients connect where the broker's metadata points, one address for
everybody, so a proxy per reco instance cannot sit on the broker path the
way one per instance does on the PostgreSQL path (each instance has its own
URL). :class:`RoutingProxy` listens on the address the broker advertises and
learns which process opened each connection (Linux: the client socket's inode
in ``/proc/net/tcp``, then the process whose ``/proc/<pid>/fd`` holds it);
faults then apply to one instance's connections only, current and future,
which is a network partition between that instance and the broker.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

import anyio.abc
import attrs
from anyio.abc import SocketAttribute

from tests.support.tcp_proxy import Link, TcpProxy


def _hex_endpoint(port: int) -> str:
    return f"0100007F:{port:04X}"  # 127.0.0.1 in /proc/net/tcp's little-endian hex


def socket_inode(local_port: int, remote_port: int) -> str | None:
    """The inode of the IPv4 socket 127.0.0.1:local_port -> 127.0.0.1:remote_port."""
    local, remote = _hex_endpoint(local_port), _hex_endpoint(remote_port)
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == local and fields[2] == remote:
            return fields[9]
    return None


def owner(inode: str, pids: list[int]) -> int | None:
    """Which of ``pids`` holds the socket ``inode``."""
    wanted = f"socket:[{inode}]"
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue  # exited
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == wanted:
                    return pid
            except OSError:
                continue
    return None


@attrs.define
class LinkFault:
    """The fault applied to one instance's connections (and to those it opens later)."""

    latency: float = 0.0
    blackholed: bool = False


class RoutingProxy(TcpProxy):
    """A :class:`TcpProxy` whose faults can target the connections of one named process."""

    def __init__(
        self, target_host: str, target_port: int, *, port: int,
        processes: Callable[[], Mapping[int, str]],
    ) -> None:  # fmt: skip
        super().__init__(target_host, target_port, port=port)
        self.processes = processes  # pid -> instance name, read at each accept
        self.faults: dict[str, LinkFault] = {}
        self.owners: dict[int, str] = {}  # id(link) -> instance name

    def links_of(self, name: str) -> list[Link]:
        return [link for link in self.links if self.owners.get(id(link)) == name]

    def set_latency_for(self, name: str, seconds: float) -> None:
        self.faults.setdefault(name, LinkFault()).latency = seconds
        for link in self.links_of(name):
            link.latency = seconds

    def blackhole_for(self, name: str) -> None:
        self.faults.setdefault(name, LinkFault()).blackholed = True
        for link in self.links_of(name):
            link.blackhole()

    def half_open_for(self, name: str) -> None:
        self.faults.setdefault(name, LinkFault()).blackholed = True
        for link in self.links_of(name):
            link.half_open()

    def reset_for(self, name: str) -> None:
        for link in self.links_of(name):
            link.reset()

    def heal(self, name: str) -> None:
        """No fault for ``name`` any more: held data is delivered, latency is gone."""
        self.faults.pop(name, None)
        for link in self.links_of(name):
            link.latency = 0.0
            link.restore()

    async def _accept(self, client: anyio.abc.SocketStream) -> None:
        name = self._name_of(client)
        fault = self.faults.get(name, LinkFault()) if name else LinkFault()
        link = Link(client, latency=fault.latency, blackholed=fault.blackholed)
        self.links.append(link)
        if name:
            self.owners[id(link)] = name
        try:
            await link.serve(self.target)
        finally:
            self.links.remove(link)
            self.owners.pop(id(link), None)

    def _name_of(self, client: anyio.abc.SocketStream) -> str | None:
        inode = socket_inode(client.extra(SocketAttribute.remote_port), self.port)
        if inode is None:
            return None
        processes = self.processes()
        pid = owner(inode, list(processes))
        return None if pid is None else processes[pid]
