"""Where the copies of a block go: pure decisions, no I/O (the I/O is :mod:`callfs.replication`).

Rules:

* **How many copies** (:func:`replica_target`): ``backend.replicas`` when configured, else 2 once the cluster
  has at least two registered nodes and 1 for a node alone. A write needs that many copies on *distinct* nodes.
* **Which nodes** (:func:`choose_nodes`): the writing node keeps one copy; the others go to live peers ranked
  by rendezvous hashing of ``(block hash, node id)``, so a file's blocks spread evenly over the cluster and
  every node computes the same ranking. Failure domains: the node always (never two copies on one node); when
  nodes carry a ``domain`` label (zone or rack), a node of a domain that holds no copy yet is preferred over one
  of a domain that does. Membership does not carry zone/rack labels today, so in practice the rule is
  node-level: with replicas *R*, any *R - 1* nodes may fail without losing an acknowledged block.
* **Leaving nodes** (being drained before removal, :mod:`callfs.drain`): never chosen for a new copy, and their
  copies do not count towards the *R* a block needs (:func:`live_holders`), so repair copies every block they
  hold until *R* copies exist on nodes that stay. They still serve reads and may lead a repair (their copy may be
  the only live one).
* **Who repairs** (:func:`repair_leader`): of the live nodes holding a copy, the one with the smallest id, so
  that exactly one node copies a block that lost a replica.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Candidate:
    """A node copies may go to: its ``instance_id``, whether it is ``up`` (heartbeat within the node timeout),
    its failure ``domain`` (zone or rack label; ``None``: the node is its own domain), and whether it is
    ``leaving`` (being drained: it takes no new copy and its copies do not count)."""

    instance_id: str
    up: bool = True
    domain: str | None = None
    leaving: bool = False


def replica_target(configured: int | None, registered_nodes: int) -> int:
    """Copies each block needs: ``configured`` (>= 1) when set, else 2 for a cluster of ``registered_nodes``
    >= 2 and 1 for a node alone. Raises ``ValueError`` for ``configured`` < 1."""
    if configured is not None:
        if configured < 1:
            raise ValueError("replicas must be >= 1")
        return configured
    return 2 if registered_nodes >= 2 else 1


def rank(block_hash: str, instance_id: str) -> bytes:
    """The rendezvous weight of a node for a block (highest first): SHA-256 of ``hash/node``."""
    return hashlib.sha256(f"{block_hash}/{instance_id}".encode()).digest()


def choose_nodes(
    block_hash: str, candidates: Iterable[Candidate], holders: Sequence[str], count: int
) -> list[str]:
    """Peers to copy a block to, best first: live candidates that are not leaving and not in ``holders`` (the
    nodes with a copy already), ranked by :func:`rank`, those of a failure domain without a copy first. Returns
    every eligible node (more than ``count`` when there are), so a caller can move on to the next when one fails;
    the first ``count`` are the placement. Pure; never lists a node twice.
    """
    if count < 0:
        raise ValueError("count must be >= 0")
    by_id: dict[str, Candidate] = {}
    for c in candidates:
        by_id.setdefault(c.instance_id, c)
    held = set(holders)
    used_domains = {by_id[h].domain or f"node:{h}" for h in held if h in by_id}
    eligible = [c for c in by_id.values() if c.up and not c.leaving and c.instance_id not in held]
    eligible.sort(key=lambda c: rank(block_hash, c.instance_id), reverse=True)
    ordered: list[str] = []
    seen_domains = set(used_domains)
    for c in eligible:  # first pass: one node per new failure domain
        domain = c.domain or f"node:{c.instance_id}"
        if domain not in seen_domains:
            seen_domains.add(domain)
            ordered.append(c.instance_id)
    ordered += [c.instance_id for c in eligible if c.instance_id not in ordered]
    return ordered


def live_holders(holders: Iterable[str], candidates: Iterable[Candidate]) -> list[str]:
    """The ``holders`` whose copies count towards a block's target: up and not leaving among ``candidates``,
    sorted (a holder unknown to membership is not live)."""
    staying = {c.instance_id for c in candidates if c.up and not c.leaving}
    return sorted({h for h in holders if h in staying})


def repair_leader(holders: Iterable[str], candidates: Iterable[Candidate]) -> str | None:
    """The node that repairs a block: the holder that is up with the smallest id, leaving or not (a leaving
    node's copy may be the only live one); ``None``: no live copy."""
    up = {c.instance_id for c in candidates if c.up}
    found = sorted({h for h in holders if h in up})
    return found[0] if found else None


def new_home(path: str, candidates: Iterable[Candidate], current: str) -> list[str]:
    """Nodes to move the bytes of the file at ``path`` to, off node ``current`` (a leaving node): live nodes
    that are not leaving, best first by :func:`rank` of the path (files spread evenly, every node computes the
    same order). Empty when no node can take them."""
    return choose_nodes(path, candidates, [current], 1)
