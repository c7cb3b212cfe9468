"""The progress of a node's drain (callfs.drain) and its reading by the client (callfs.client.DrainInfo)."""

from __future__ import annotations

import pytest

from callfs.client import DrainInfo
from callfs.drain import DrainProgress


@pytest.mark.parametrize(("blocks", "files", "state"), [(0, 0, "drained"), (1, 0, "draining"), (0, 1, "draining"),
                                                         (7, 3, "draining")])
def test_a_node_is_drained_when_no_block_and_no_file_is_left(blocks: int, files: int, state: str) -> None:
    found = DrainProgress("node-2", blocks, files)
    assert found.state == state
    assert found.to_json() == {"instance_id": "node-2", "state": state, "blocks_left": blocks, "files_left": files}
    read = DrainInfo.from_json(found.to_json())
    assert (read.instance_id, read.state, read.blocks_left, read.files_left) == ("node-2", state, blocks, files)
    assert read.drained is (state == "drained")


@pytest.mark.parametrize("body", [{}, {"instance_id": "n", "state": "drained", "blocks_left": "x", "files_left": 0}])
def test_a_malformed_drain_answer_is_refused(body: dict[str, object]) -> None:
    with pytest.raises((KeyError, ValueError)):
        DrainInfo.from_json(body)
