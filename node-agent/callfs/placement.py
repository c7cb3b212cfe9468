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
    and its failure ``domain`` (zone or rack label; ``None``: the node is its own domain)."""

    instance_id: str
    up: bool = True
    domain: str | None = None


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
    """Peers to copy a block to, best first: live candidates not in ``holders`` (the nodes with a copy
    already), ranked by :func:`rank`, those of a failure domain without a copy first. Returns every eligible
    node (more than ``count`` when there are), so a caller can move on to the next when one fails; the first
    ``count`` are the placement. Pure; never lists a node twice.
    """
    if count < 0:
        raise ValueError("count must be >= 0")
    by_id: dict[str, Candidate] = {}
    for c in candidates:
        by_id.setdefault(c.instance_id, c)
    held = set(holders)
    used_domains = {by_id[h].domain or f"node:{h}" for h in held if h in by_id}
    eligible = [c for c in by_id.values() if c.up and c.instance_id not in held]
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
    """The ``holders`` that are up among ``candidates``, sorted (a holder unknown to membership is not live)."""
    up = {c.instance_id for c in candidates if c.up}
    return sorted({h for h in holders if h in up})


def repair_leader(holders: Iterable[str], candidates: Iterable[Candidate]) -> str | None:
    """The node that repairs a block: the live holder with the smallest id (``None``: no live copy)."""
    live = live_holders(holders, candidates)
    return live[0] if live else None
