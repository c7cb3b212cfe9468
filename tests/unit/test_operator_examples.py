"""The examples parse into the typed spec and build children (the API server's check is in the e2e suite)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from callfs_operator.builders import children
from callfs_operator.spec import parse_cluster

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))


def test_there_are_minimal_and_full_examples() -> None:
    assert {p.name for p in EXAMPLES} >= {"minimal.yaml", "full.yaml"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_parses_and_builds(path: Path) -> None:
    body = yaml.safe_load(path.read_text())
    assert (body["apiVersion"], body["kind"]) == ("callfs.io/v1alpha1", "CallFSCluster")
    cluster = parse_cluster(body["metadata"]["name"], "default", body["spec"])
    assert any(o["kind"] == "StatefulSet" for o in children(cluster, {}))


def test_full_example_sets_every_spec_field() -> None:
    crd = yaml.safe_load((EXAMPLES[0].parents[1] / "charts/callfs/crds/callfsclusters.yaml").read_text())
    fields = set(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"])
    full = yaml.safe_load(next(p for p in EXAMPLES if p.name == "full.yaml").read_text())
    assert set(full["spec"]) == fields
