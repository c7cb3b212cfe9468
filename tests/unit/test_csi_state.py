"""Persisted node state: round trip, atomic 0600 writes, key files (callfs_csi.state)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from callfs_csi.state import NodeState, PublishedTarget, StagedVolume, StateStore


def sample() -> NodeState:
    volume = StagedVolume(server="http://127.0.0.1:1", volume_path="/volumes/pvc-1", staging_path="/s/pvc-1",
                          key_file="/state/keys/a.key", read_only=False,
                          targets={"/t/1": PublishedTarget(True, ["noatime"], 5)})
    return NodeState({"pvc-1": volume})


def test_missing_state_file_is_an_empty_state(tmp_path: Path) -> None:
    assert StateStore(tmp_path / "state").load() == NodeState()


def test_state_round_trips_through_the_file(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state")
    store.save(sample())
    assert store.load() == sample()


def test_state_file_and_dirs_are_private(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state")
    store.save(sample())
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(store.keys_dir.stat().st_mode) == 0o700


def test_save_leaves_no_temporary_files(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state")
    for _ in range(3):
        store.save(sample())
    assert sorted(p.name for p in store.dir.iterdir()) == ["keys", "node-state.json", "pids"]


def test_unreadable_state_refuses_to_load(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.path.write_text("{not json")
    with pytest.raises(ValueError, match="not JSON"):
        store.load()
    store.path.write_text(json.dumps({"version": 99, "volumes": {}}))
    with pytest.raises(ValueError, match="version"):
        store.load()
    store.path.write_text(json.dumps({"version": 1, "volumes": {"v": {"server": "x"}}}))
    with pytest.raises(ValueError, match="malformed"):
        store.load()


def test_key_files_are_private_and_named_by_hash(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state")
    path = store.write_key("pvc-1@http://x:1/../../etc", "the-key-0123456789")
    assert path.parent == store.keys_dir
    assert path.read_text() == "the-key-0123456789"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    store.remove_key("pvc-1@http://x:1/../../etc")
    assert not path.exists()
    store.remove_key("never-written")


def test_find_target() -> None:
    state = sample()
    assert state.find_target("/t/1") == ("pvc-1", state.volumes["pvc-1"])
    assert state.find_target("/t/2") is None
    assert list(state.iter_targets()) == [("pvc-1", "/t/1", state.volumes["pvc-1"].targets["/t/1"])]
