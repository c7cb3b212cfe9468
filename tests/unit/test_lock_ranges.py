"""File lock range arithmetic (``callfs.locks.ranges``): POSIX record locks and ``flock`` as Linux keeps them."""

from __future__ import annotations

import itertools
import random

import pytest

from callfs.locks import ranges
from callfs.locks.ranges import TO_EOF, FileLock


def req(action: ranges.Action, start: int = 0, length: int = 0, *, owner: str = "a", session: str = "s",
        kind: ranges.Kind = "posix") -> ranges.LockRequest:
    return ranges.request(session, owner, kind, action, start, length)


def run(*requests: ranges.LockRequest) -> list[FileLock]:
    """Apply ``requests`` in order, each one expected to be granted; the final locks."""
    locks: list[FileLock] = []
    for wanted in requests:
        locks, blocking = ranges.apply(locks, wanted)
        assert blocking is None, (wanted, blocking)
    return locks


def spans(locks: list[FileLock]) -> list[tuple[str, str, int, int]]:
    return [(lock.owner, lock.type, lock.start, lock.end) for lock in locks]


def test_range_end_and_validation() -> None:
    assert ranges.range_end(0, 0) == TO_EOF
    assert ranges.range_end(10, 5) == 15
    for start, length in ((-1, 1), (0, -1), (ranges.MAX_OFFSET + 1, 1), (ranges.MAX_OFFSET, 2)):
        with pytest.raises(ValueError):
            ranges.range_end(start, length)
    with pytest.raises(ValueError):
        ranges.request("s", "o", "posix", "grab")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ranges.request("s", "o", "fcntl", "read")  # type: ignore[arg-type]


def test_flock_is_always_the_whole_file() -> None:
    wanted = ranges.request("s", "o", "flock", "write", 10, 20)
    assert (wanted.start, wanted.end) == (0, TO_EOF)


def test_shared_locks_coexist_exclusive_conflicts() -> None:
    locks = run(req("read", 0, 10, owner="a"), req("read", 5, 10, owner="b"))
    assert len(locks) == 2
    _, blocking = ranges.apply(locks, req("write", 8, 1, owner="c"))
    assert blocking is not None and blocking.owner in ("a", "b")
    after, blocking = ranges.apply(locks, req("write", 15, 5, owner="c"))
    assert blocking is None
    assert spans(after)[-1] == ("c", "write", 15, 20)


def test_write_conflicts_with_read_and_write_of_others() -> None:
    locks = run(req("write", 100, 0, owner="a"))
    assert ranges.apply(locks, req("read", 99, 2, owner="b"))[1] == locks[0]
    assert ranges.apply(locks, req("read", 0, 100, owner="b"))[1] is None  # touching is not overlapping
    assert ranges.conflict(locks, req("write", 5000, 1, owner="b")) == locks[0]  # to EOF


def test_conflict_leaves_locks_unchanged() -> None:
    locks = run(req("read", 0, 10, owner="a"), req("read", 0, 10, owner="b"))
    after, blocking = ranges.apply(locks, req("write", 0, 10, owner="a"))  # upgrade refused: b reads
    assert blocking is not None and blocking.owner == "b"
    assert after == locks


def test_same_session_other_owner_conflicts() -> None:
    locks = run(req("write", 0, 10, owner="p1"))
    assert ranges.conflict(locks, req("write", 0, 10, owner="p2")) is not None
    assert ranges.conflict(locks, req("write", 0, 10, owner="p1", session="other")) is not None
    assert ranges.conflict(locks, req("write", 0, 10, owner="p1")) is None


def test_unlock_splits() -> None:
    locks = run(req("write", 0, 100), req("unlock", 40, 20))
    assert spans(locks) == [("a", "write", 0, 40), ("a", "write", 60, 100)]


def test_unlock_trims_both_ends_and_drops_covered() -> None:
    locks = run(req("read", 0, 10), req("read", 20, 10), req("read", 40, 10), req("unlock", 5, 40))
    assert spans(locks) == [("a", "read", 0, 5), ("a", "read", 45, 50)]


def test_unlock_to_eof() -> None:
    locks = run(req("write", 10, 0), req("unlock", 50, 0))
    assert spans(locks) == [("a", "write", 10, 50)]


def test_unlock_of_nothing_is_fine() -> None:
    assert run(req("unlock", 0, 0)) == []
    locks = run(req("write", 0, 10, owner="b"), req("unlock", 0, 0, owner="a"))
    assert spans(locks) == [("b", "write", 0, 10)]  # another owner's lock is not touched


def test_adjacent_and_overlapping_same_type_merge() -> None:
    assert spans(run(req("read", 0, 10), req("read", 10, 10))) == [("a", "read", 0, 20)]
    assert spans(run(req("read", 0, 10), req("read", 5, 10))) == [("a", "read", 0, 15)]
    assert spans(run(req("read", 0, 10), req("read", 20, 10), req("read", 5, 20))) == [("a", "read", 0, 30)]
    assert spans(run(req("write", 0, 10), req("write", 10, 0))) == [("a", "write", 0, TO_EOF)]


def test_different_types_do_not_merge() -> None:
    assert spans(run(req("read", 0, 10), req("write", 10, 10))) == [("a", "read", 0, 10), ("a", "write", 10, 20)]


def test_upgrade_in_the_middle_splits() -> None:
    locks = run(req("read", 0, 100), req("write", 40, 20))
    assert spans(locks) == [("a", "read", 0, 40), ("a", "write", 40, 60), ("a", "read", 60, 100)]


def test_downgrade_then_merge_back() -> None:
    locks = run(req("read", 0, 100), req("write", 40, 20), req("read", 40, 20))
    assert spans(locks) == [("a", "read", 0, 100)]


def test_whole_file_downgrade_lets_readers_in() -> None:
    locks = run(req("write", 0, 0, owner="a"))
    assert ranges.conflict(locks, req("read", 0, 1, owner="b")) is not None
    locks = run(*[req("write", 0, 0, owner="a"), req("read", 0, 0, owner="a")])
    assert ranges.conflict(locks, req("read", 0, 1, owner="b")) is None
    assert ranges.conflict(locks, req("write", 0, 1, owner="b")) is not None


def test_upgrade_granted_when_alone() -> None:
    locks = run(req("read", 0, 10, owner="a"), req("read", 20, 10, owner="b"), req("write", 0, 15, owner="a"))
    assert spans(locks) == [("a", "write", 0, 15), ("b", "read", 20, 30)]


def test_flock_and_posix_are_independent() -> None:
    locks = run(req("write", 0, 0, owner="a", kind="flock"))
    assert ranges.conflict(locks, req("write", 0, 0, owner="b", kind="posix")) is None
    locks = run(req("write", 0, 0, owner="a", kind="flock"), req("write", 0, 0, owner="b", kind="posix"))
    assert len(locks) == 2
    after = run(*[req("write", 0, 0, owner="a", kind="flock"), req("write", 0, 0, owner="a", kind="posix"),
                  req("unlock", kind="flock")])
    assert [(lock.kind, lock.owner) for lock in after] == [("posix", "a")]


def test_flock_shared_exclusive_and_conversion() -> None:
    locks = run(req("read", kind="flock", owner="a"), req("read", kind="flock", owner="b"))
    assert ranges.conflict(locks, req("write", kind="flock", owner="a")) is not None
    locks = run(req("read", kind="flock", owner="a"), req("write", kind="flock", owner="a"))
    assert spans(locks) == [("a", "write", 0, TO_EOF)]


def test_without_sessions_and_json_round_trip() -> None:
    locks = run(req("write", 0, 10, session="s1", owner="x"), req("read", 20, 0, session="s2", owner="x"))
    assert spans(ranges.without_sessions(locks, ["s1"])) == [("x", "read", 20, TO_EOF)]
    assert ranges.decode(ranges.encode(locks)) == locks
    assert locks[1].to_json()["length"] == 0


@pytest.mark.parametrize("seed", range(20))
def test_random_sequences_keep_invariants(seed: int) -> None:
    """Random requests: an owner's locks of one kind never overlap, conflicting locks of different owners never
    coexist, and the byte-level model agrees with the ranges."""
    rng = random.Random(seed)
    locks: list[FileLock] = []
    model: dict[tuple[str, int], str] = {}  # (owner, byte) -> type, bytes 0..63 only
    for _ in range(200):
        owner = rng.choice("abc")
        action = rng.choice(["read", "write", "unlock"])
        start = rng.randrange(0, 60)
        length = rng.randrange(1, 64 - start)
        wanted = req(action, start, length, owner=owner)  # type: ignore[arg-type]
        locks, blocking = ranges.apply(locks, wanted)
        if blocking is None:
            for byte in range(start, start + length):
                if action == "unlock":
                    model.pop((owner, byte), None)
                else:
                    model[(owner, byte)] = action
        for i, one in enumerate(locks):
            for other in locks[i + 1:]:
                if ranges.overlaps(one, other.start, other.end):
                    assert one.owner != other.owner
                    assert one.type == other.type == "read"
        derived = {(lock.owner, byte): lock.type for lock in locks for byte in range(lock.start, lock.end)}
        assert derived == model
        mine = sorted((lock.start, lock.end, lock.type) for lock in locks if lock.owner == owner)
        for (_, end, kind), (start2, _, kind2) in itertools.pairwise(mine):
            assert not (end == start2 and kind == kind2), "touching same-type locks should be merged"
