"""Which rank this process is, and whether its ranks can reach each other: pure functions of the
environment (and of this host's interfaces), checked before any process group is made.

`rank_env` maps what the launcher gave us to torch.distributed's variables: torchrun's (RANK,
WORLD_SIZE, MASTER_ADDR/PORT) when set; else an srun step's (SLURM_PROCID, SLURM_STEP_NUM_TASKS,
SLURM_LOCALID, the first node of the step's node list), so `srun -N2 wps train …` is one 2-rank
training, not two unrelated world-1 ones; else a world of one. A MASTER_PORT the user already set is
kept (submitit's TorchDistributedEnvironment raises on it). `check_network` refuses a multi-host
group that gloo/NCCL would bind to a loopback address — the rank-0 "Connection refused" / rank-1
hang of a node whose hostname resolves to 127.0.1.1 (Debian's /etc/hosts line) — naming the profile
field that fixes it.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

PORT_BASE, PORT_SPAN = 20000, 40000
"""MASTER_PORT from the SLURM job id when none is set: PORT_BASE + job_id mod PORT_SPAN (the range
submitit's TorchDistributedEnvironment draws from)."""


class RankSetupError(ValueError):
    """The environment names an impossible or incomplete rank layout (named variable)."""


class NetworkSetupError(ValueError):
    """The ranks of a multi-host cell could not reach each other as configured (names
    cluster.network_interface)."""


@dataclass(frozen=True)
class Ranks:
    rank: int
    world: int
    local_rank: int
    local_world: int
    master_addr: str | None
    master_port: int | None
    source: str
    """Where the layout came from: `torchrun` (RANK/WORLD_SIZE set), `srun` (mapped here), `single`."""
    nodes: int | None = None
    """Hosts the group spans, where the launcher says (srun's node list; torchrun's LOCAL_WORLD_SIZE)."""

    def env(self) -> dict[str, str]:
        """The variables torch.distributed and the trainer read."""
        if self.world == 1 and self.source == "single":
            return {}
        out = {
            "RANK": str(self.rank),
            "WORLD_SIZE": str(self.world),
            "LOCAL_RANK": str(self.local_rank),
            "LOCAL_WORLD_SIZE": str(self.local_world),
        }
        if self.master_addr is not None:
            out["MASTER_ADDR"] = self.master_addr
        if self.master_port is not None:
            out["MASTER_PORT"] = str(self.master_port)
        return out


def _int(environ: Mapping[str, str], name: str, default: int | None = None) -> int:
    raw = environ.get(name)
    if raw is None or raw == "":
        if default is None:
            raise RankSetupError(f"environment variable {name} is not set")
        return default
    m = re.match(r"^\s*(\d+)", raw)  # SLURM_TASKS_PER_NODE style "2(x3)" counts the first number
    if not m:
        raise RankSetupError(f"environment variable {name}={raw!r} is not an integer")
    return int(m.group(1))


def expand_nodelist(nodelist: str) -> list[str]:
    """SLURM's compressed host list ("node[1-3,7],gpu05") in order ("node1", "node2", "node3", …)."""
    hosts: list[str] = []
    for part in re.findall(r"[^,\[]+(?:\[[^\]]*\])?[^,]*", nodelist):
        m = re.match(r"^([^\[]*)\[([^\]]*)\](.*)$", part)
        if not m:
            hosts.append(part)
            continue
        prefix, body, suffix = m.groups()
        for rng in body.split(","):
            lo, _, hi = rng.partition("-")
            if not hi:
                hosts.append(f"{prefix}{lo}{suffix}")
                continue
            width = len(lo)
            for i in range(int(lo), int(hi) + 1):
                hosts.append(f"{prefix}{i:0{width}d}{suffix}")
    return hosts


def rank_env(environ: Mapping[str, str]) -> Ranks:
    """This process's rank layout from its environment (see the module docstring)."""
    if environ.get("RANK") not in (None, "") or environ.get("WORLD_SIZE") not in (None, ""):
        world = _int(environ, "WORLD_SIZE", 1)
        rank = _int(environ, "RANK", 0)
        if not 0 <= rank < world:
            raise RankSetupError(f"RANK={rank} is outside WORLD_SIZE={world}")
        addr, port_set = environ.get("MASTER_ADDR"), environ.get("MASTER_PORT")
        if world > 1 and (not addr or not port_set):
            missing = [n for n, v in (("MASTER_ADDR", addr), ("MASTER_PORT", port_set)) if not v]
            raise RankSetupError(
                f"WORLD_SIZE={world} but {' and '.join(missing)} not set: every rank must know where rank 0 listens"
            )
        local_world = _int(environ, "LOCAL_WORLD_SIZE", 0)
        return Ranks(
            rank=rank,
            world=world,
            local_rank=_int(environ, "LOCAL_RANK", rank if world > 1 else 0),
            local_world=local_world or 1,
            master_addr=addr or None,
            master_port=_int(environ, "MASTER_PORT") if port_set else None,
            source="torchrun",
            nodes=-(-world // local_world) if local_world else None,
        )
    # srun sets SLURM_STEP_NUM_TASKS for the tasks of a step; a batch script (no srun) has no step tasks
    step_tasks = environ.get("SLURM_STEP_NUM_TASKS")
    if step_tasks and _int(environ, "SLURM_STEP_NUM_TASKS") > 1:
        world = _int(environ, "SLURM_STEP_NUM_TASKS")
        rank = _int(environ, "SLURM_PROCID")
        nodes = expand_nodelist(environ.get("SLURM_STEP_NODELIST") or environ.get("SLURM_JOB_NODELIST") or "")
        addr = environ.get("MASTER_ADDR") or (nodes[0] if nodes else None)
        if not addr:
            raise RankSetupError(
                "srun step of several tasks without SLURM_STEP_NODELIST / SLURM_JOB_NODELIST "
                "or MASTER_ADDR: cannot tell where rank 0 listens"
            )
        job = environ.get("SLURM_JOB_ID") or environ.get("SLURM_JOBID") or "0"
        port = (
            _int(environ, "MASTER_PORT")
            if environ.get("MASTER_PORT")
            else PORT_BASE + _int({"j": job}, "j") % PORT_SPAN
        )
        per_node = environ.get("SLURM_STEP_TASKS_PER_NODE") or environ.get("SLURM_NTASKS_PER_NODE") or "1"
        return Ranks(
            rank=rank,
            world=world,
            local_rank=_int(environ, "SLURM_LOCALID", 0),
            local_world=_int({"n": per_node}, "n"),
            master_addr=addr,
            master_port=port,
            source="srun",
            nodes=len(nodes) or None,
        )
    return Ranks(rank=0, world=1, local_rank=0, local_world=1, master_addr=None, master_port=None, source="single")


def _is_ip(addr: str) -> bool:
    try:
        ipaddress.ip_address(addr)
        return True
    except ValueError:
        return False


def _is_loopback(addr: str) -> bool:
    try:
        return ipaddress.ip_address(addr).is_loopback
    except ValueError:
        return addr == "localhost"


def check_network(
    ranks: Ranks,
    interface: str | None,
    *,
    interfaces: Iterable[str],
    resolve: Callable[[str], list[str]],
    hostname: str,
) -> None:
    """Refuse what would hang or fail at rendezvous (NetworkSetupError naming the profile field):
    - `interface` (cluster.network_interface) that this host does not have;
    - a group spanning hosts with no interface named while this host's name resolves only to loopback
      addresses: gloo would bind there and peers on other hosts cannot connect.
    A world of one, or all ranks on one host (one node in the launcher's list, or a MASTER_ADDR that is
    or resolves to loopback), needs nothing."""
    have = sorted(set(interfaces))
    if interface is not None and interface not in have:
        raise NetworkSetupError(
            f"cluster.network_interface {interface!r} does not exist on host {hostname} "
            f"(its interfaces: {', '.join(have) or 'none'}); name the interface the "
            "nodes share (e.g. ib0, eth0) in the cluster profile"
        )
    if ranks.world <= 1 or interface is not None or ranks.master_addr is None or ranks.nodes == 1:
        return
    if ranks.nodes is None:  # the launcher did not say: rank 0 on a loopback address = all on this host
        master = [ranks.master_addr] if _is_ip(ranks.master_addr) else resolve(ranks.master_addr)
        if not master or all(_is_loopback(a) for a in master):
            return
    addrs = resolve(hostname)
    if addrs and all(_is_loopback(a) for a in addrs):
        raise NetworkSetupError(
            f"host {hostname} resolves to {', '.join(addrs)} (loopback): gloo/NCCL would bind "
            f"there and rank {ranks.rank} could not be reached from the other hosts of this "
            "cell; set cluster.network_interface in the cluster profile (e.g. eth0, ib0) or "
            "fix the host's /etc/hosts"
        )


def local_interfaces() -> list[str]:
    return [name for _, name in socket.if_nameindex()]


def resolve_host(name: str) -> list[str]:
    try:
        return sorted({str(ai[4][0]) for ai in socket.getaddrinfo(name, None)})  # typeshed: str | int
    except OSError:
        return []


def interface_address(name: str) -> str | None:
    """The IPv4 address of interface `name` on this host (None if it has none)."""
    import fcntl
    import struct

    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            packed = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", name[:15].encode()))  # SIOCGIFADDR
        return socket.inet_ntoa(packed[20:24])
    except OSError:
        return None


def check_profile_interface(cluster, *, interfaces: Iterable[str] | None = None, environ=None) -> None:
    """`wps launch`, before anything is submitted: the profile's `network_interface` must exist on this
    (submitting) host — cluster nodes and their login nodes name their fabric alike. Where they do not,
    WPS_SKIP_INTERFACE_CHECK=1 skips this check (the job still checks it on every node at start)."""
    import os

    name = getattr(cluster, "network_interface", None)
    environ = os.environ if environ is None else environ
    if not name or environ.get("WPS_SKIP_INTERFACE_CHECK") == "1":
        return
    have = sorted(set(local_interfaces() if interfaces is None else interfaces))
    if name not in have:
        raise NetworkSetupError(
            f"cluster.network_interface {name!r} (profile {getattr(cluster, 'name', '?')}) does "
            f"not exist on this host (its interfaces: {', '.join(have)}); name the interface "
            "the nodes share (e.g. ib0, eth0), or set WPS_SKIP_INTERFACE_CHECK=1 if only the "
            "compute nodes have it"
        )
