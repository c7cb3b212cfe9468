"""Where block copies go (callfs.placement): pure decisions."""

from __future__ import annotations

import pytest

from callfs.placement import Candidate, choose_nodes, live_holders, new_home, rank, repair_leader, replica_target

HASH = "ab" * 32


def test_replica_target_defaults_to_two_in_a_cluster_and_one_alone() -> None:
    assert replica_target(None, 1) == 1
    assert replica_target(None, 2) == 2
    assert replica_target(None, 5) == 2
    assert replica_target(3, 1) == 3
    with pytest.raises(ValueError):
        replica_target(0, 3)


def test_choose_nodes_skips_holders_and_down_nodes_and_ranks_by_rendezvous() -> None:
    nodes = [Candidate("a"), Candidate("b"), Candidate("c", up=False), Candidate("d"), Candidate("e")]
    chosen = choose_nodes(HASH, nodes, ["a"], 2)
    assert "a" not in chosen and "c" not in chosen
    assert sorted(chosen) == ["b", "d", "e"]
    assert chosen == sorted(["b", "d", "e"], key=lambda n: rank(HASH, n), reverse=True)


def test_choose_nodes_is_the_same_whatever_the_order_of_the_candidates() -> None:
    nodes = [Candidate(f"node-{i}") for i in range(6)]
    assert choose_nodes(HASH, nodes, [], 3) == choose_nodes(HASH, list(reversed(nodes)), [], 3)


def test_choose_nodes_spreads_blocks_over_the_cluster() -> None:
    nodes = [Candidate(f"node-{i}") for i in range(4)]
    firsts = {choose_nodes(f"{i:064x}", nodes, [], 1)[0] for i in range(64)}
    assert firsts == {c.instance_id for c in nodes}


def test_choose_nodes_prefers_a_failure_domain_without_a_copy() -> None:
    nodes = [Candidate("a", domain="z1"), Candidate("b", domain="z1"), Candidate("c", domain="z2"),
             Candidate("d", domain="z2"), Candidate("e", domain="z3")]
    for i in range(32):
        chosen = choose_nodes(f"{i:064x}", nodes, ["a"], 2)
        assert set(chosen[:2]) <= {"c", "d", "e"}  # never the holder's zone while another is free
        assert len({next(c.domain for c in nodes if c.instance_id == n) for n in chosen[:2]}) == 2
        assert sorted(chosen) == ["b", "c", "d", "e"]  # the others stay as fallbacks


def test_choose_nodes_never_lists_a_node_twice() -> None:
    nodes = [Candidate("a"), Candidate("a", up=False), Candidate("b")]
    assert choose_nodes(HASH, nodes, [], 3) in (["a", "b"], ["b", "a"])


def test_repair_leader_is_the_smallest_live_holder() -> None:
    nodes = [Candidate("a", up=False), Candidate("b"), Candidate("c")]
    assert live_holders(["a", "c", "b", "x"], nodes) == ["b", "c"]
    assert repair_leader(["a", "c", "b"], nodes) == "b"
    assert repair_leader(["a"], nodes) is None


def test_a_leaving_node_gets_no_new_copy_and_its_copies_do_not_count() -> None:
    nodes = [Candidate("a"), Candidate("b", leaving=True), Candidate("c")]
    for i in range(50):
        assert "b" not in choose_nodes(f"{i:064x}", nodes, [], 3)
    assert live_holders(["a", "b"], nodes) == ["a"]


def test_a_leaving_node_may_lead_the_repair_of_the_copy_only_it_has() -> None:
    nodes = [Candidate("a", up=False), Candidate("b", leaving=True), Candidate("c")]
    assert repair_leader(["a", "b"], nodes) == "b"
    assert repair_leader(["b", "c"], nodes) == "b"  # the smallest id that is up, leaving or not
    assert live_holders(["a", "b"], nodes) == []


def test_new_home_of_a_file_is_a_live_node_that_stays() -> None:
    nodes = [Candidate("a"), Candidate("b", leaving=True), Candidate("c", up=False), Candidate("d")]
    assert sorted(new_home("/f", nodes, "b")) == ["a", "d"]
    assert new_home("/f", nodes, "b") == new_home("/f", list(reversed(nodes)), "b")
    assert new_home("/f", [Candidate("b", leaving=True)], "b") == []
