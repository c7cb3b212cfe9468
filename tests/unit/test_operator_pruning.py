"""Children the spec no longer wants: deleted, except data and its credentials under deletionPolicy Retain."""

from __future__ import annotations

from typing import Any

import pytest

from callfs_operator.builders import children
from callfs_operator.pruning import Unwanted, message, unwanted
from callfs_operator.spec import parse_cluster


def live(kind: str, name: str, owner: str = "CallFSCluster") -> tuple[str, dict[str, Any]]:
    refs = [{"kind": owner, "name": "x", "controller": True}]
    return kind, {"metadata": {"name": name, "ownerReferences": refs}}


MANAGED_POSTGRES = [live("StatefulSet", "demo-postgres"), live("Service", "demo-postgres"),
                    live("Secret", "demo-postgres")]


@pytest.mark.parametrize("policy", ["Retain", "Delete"])
def test_switching_to_an_external_database_prunes_the_managed_one(policy: str) -> None:
    cluster = parse_cluster("demo", "ns1", {"metadata": {"externalSecret": {"name": "db"}}, "deletionPolicy": policy})
    desired = children(cluster, {})
    current = [live("StatefulSet", "demo-node"), live("ConfigMap", "demo-config"), *MANAGED_POSTGRES,
               live("Secret", "demo-internal")]
    found = unwanted(cluster, desired, current)
    secret_kept = "deletionPolicy Retain keeps the credentials of retained data" if policy == "Retain" else None
    assert found == [Unwanted("StatefulSet", "demo-postgres"), Unwanted("Service", "demo-postgres"),
                     Unwanted("Secret", "demo-postgres", secret_kept)]
    text = message(cluster, found)
    if policy == "Retain":
        assert text == ("deleted StatefulSet demo-postgres, Service demo-postgres, which the spec no longer wants; "
                        "kept Secret demo-postgres (deletionPolicy Retain keeps the credentials of retained data); "
                        "their PersistentVolumeClaims are retained (deletionPolicy Retain)")
    else:
        assert text == ("deleted StatefulSet demo-postgres, Service demo-postgres, Secret demo-postgres, which the "
                        "spec no longer wants; their PersistentVolumeClaims are deleted with them "
                        "(deletionPolicy Delete)")


def test_wanted_children_and_objects_of_other_controllers_stay() -> None:
    cluster = parse_cluster("demo", "ns1", {})
    current = [*MANAGED_POSTGRES, live("Secret", "demo-api-key"), live("Service", "stray", owner="Deployment")]
    assert unwanted(cluster, children(cluster, {}), current) == []
