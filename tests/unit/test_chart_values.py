"""What ``helm install`` of the chart does with the values an admin gives: the defaults install nothing that
cannot work, values.schema.json refuses typos and wrong types, every object carries the standard labels and a
release-scoped name, a namespace-scoped install gets Roles instead of cluster-wide rights, and ``helm test`` checks
exactly the release's workloads (rendered by helm; nothing here needs a cluster)."""

from __future__ import annotations

import itertools
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from callfs_operator.install_check import parser as install_check_parser
from support.chart import find, render, render_error

REPO = Path(__file__).resolve().parents[2]
STANDARD_LABELS = ("helm.sh/chart", "app.kubernetes.io/name", "app.kubernetes.io/instance",
                   "app.kubernetes.io/version", "app.kubernetes.io/managed-by", "app.kubernetes.io/component")
CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding", "StorageClass", "CSIDriver", "ClusterKopfPeering"}
NAMESPACED_RIGHTS = {"secrets", "persistentvolumeclaims", "statefulsets", "configmaps", "services",
                     "poddisruptionbudgets", "callfsclusters", "events"}


def resources_of(role: dict[str, Any]) -> set[str]:
    return {r for rule in role["rules"] for r in rule["resources"]}


def test_default_install_creates_no_storage_class_that_cannot_work() -> None:
    assert find(render(), "StorageClass") == []
    assert find(render({"csi.storageClass.cluster": "apps/demo"}), "StorageClass")


@pytest.mark.parametrize(("values", "said"), [
    ({"csi.storageclass.cluster": "apps/demo"}, "additional properties 'storageclass' not allowed"),
    ({"operator.replicas": "two"}, "/operator/replicas"),
    ({"operator.allNamespaces": "false"}, "watchNamespaces"),
    ({"operator.replicas": "2"}, "peering"),
    ({"csi.storageClass.cluster": "demo"}, "/csi/storageClass/cluster"),
    ({"csi.storageClass.cluster": "apps/demo", "csi.storageClass.server": "http://x:8443"}, "server"),
    ({"csi.storageClass.server": "http://x:8443"}, "csi.secret.name"),
    ({"csi.node.updateStrategy.type": "Sometimes"}, "updateStrategy"),
])
def test_values_an_install_cannot_use_are_refused(values: dict[str, str], said: str) -> None:
    assert said in render_error(values)


def test_every_object_carries_the_standard_labels() -> None:
    docs = render({"csi.storageClass.cluster": "apps/demo"})
    for d in docs:
        labels = d["metadata"].get("labels", {})
        missing = [k for k in STANDARD_LABELS if k not in labels]
        assert not missing, f"{d['kind']} {d['metadata']['name']} lacks {missing}"
        assert labels["app.kubernetes.io/instance"] == "callfs"
    for d in docs:
        template = d.get("spec", {}).get("template")
        if template:
            selector = d["spec"]["selector"]["matchLabels"]
            assert selector.items() <= template["metadata"]["labels"].items()
            assert selector["app.kubernetes.io/instance"] == "callfs"


def test_two_releases_claim_no_cluster_scoped_name_twice() -> None:
    first = render({"csi.storageClass.cluster": "apps/demo"}, release="callfs", namespace="callfs-system")
    second = render({"csi.enabled": "false", "operator.allNamespaces": "false", "operator.watchNamespaces": "{team}"},
                    release="team", namespace="team-system")
    names = [{(d["kind"], d["metadata"]["name"]) for d in docs if d["kind"] in CLUSTER_SCOPED}
             for docs in (first, second)]
    assert names[0] and names[1]
    assert names[0].isdisjoint(names[1])
    assert ("ClusterRole", "team-callfs-operator") in names[1]


def test_namespace_scoped_install_gets_roles_in_the_watched_namespaces_only() -> None:
    docs = render({"operator.allNamespaces": "false", "operator.watchNamespaces": "{a,b}"})
    (cluster_role,) = find(docs, "ClusterRole", "callfs-operator")
    assert resources_of(cluster_role) == {"persistentvolumes", "storageclasses", "customresourcedefinitions",
                                          "namespaces"}
    for rule in cluster_role["rules"]:
        assert set(rule["verbs"]) <= {"get", "list", "watch"}, rule
    roles = find(docs, "Role", "callfs-operator")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["a", "b"]
    for role in roles:
        assert resources_of(role) >= NAMESPACED_RIGHTS
    bindings = find(docs, "RoleBinding", "callfs-operator")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["a", "b"]
    (deployment,) = find(docs, "Deployment", "callfs-operator")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=a" in args and "--namespace=b" in args and "--all-namespaces" not in args


def test_cluster_wide_install_grants_nothing_unused() -> None:
    (cluster_role,) = find(render(), "ClusterRole", "callfs-operator")
    verbs = {(r, tuple(rule["verbs"])) for rule in cluster_role["rules"] for r in rule["resources"]}
    assert ("callfsclusters/status", ("patch",)) in verbs
    assert not find(render(), "Role", "callfs-operator")


def test_helm_test_checks_exactly_the_release_workloads() -> None:
    docs = render(release="team", namespace="team-system")
    hooks = [d for d in docs if d["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"]
    (pod,) = find(hooks, "Pod")
    (container,) = pod["spec"]["containers"]
    assert container["command"] == ["python", "-m", "callfs_operator.install_check"]
    args = install_check_parser().parse_args(container["args"])
    workloads = {(d["kind"], d["metadata"]["name"]) for d in docs if d["kind"] in ("Deployment", "DaemonSet")}
    assert workloads == {("Deployment", n) for n in args.deployment} | {("DaemonSet", n) for n in args.daemonset}
    assert args.namespace == "team-system"
    (role,) = find(hooks, "Role")
    allowed = {(rule["resources"][0], n) for rule in role["rules"] for n in rule["resourceNames"]}
    assert allowed == {(kind.lower() + "s", n) for kind, n in workloads}
    assert pod["spec"]["serviceAccountName"] == find(hooks, "RoleBinding")[0]["subjects"][0]["name"]


def test_manifests_start_with_their_namespace() -> None:
    docs = [d for d in yaml.safe_load_all((REPO / "manifests" / "callfs.yaml").read_text()) if d]
    assert (docs[0]["kind"], docs[0]["metadata"]["name"]) == ("Namespace", "callfs-system")
    namespaces = {d["metadata"].get("namespace") for d in docs[1:] if d["kind"] not in CLUSTER_SCOPED}
    assert namespaces == {"callfs-system"}
    assert not [d for d in docs if "helm.sh/hook" in d["metadata"].get("annotations", {})]


def readme_helm_commands() -> list[list[str]]:
    """Every ``helm install|upgrade ... charts/callfs`` command of the chart README (continued lines joined)."""
    text = (REPO / "charts" / "callfs" / "README.md").read_text().replace("\\\n", " ")
    return [shlex.split(line.strip()) for line in text.splitlines()
            if re.match(r"\s*helm (install|upgrade) \S+ charts/callfs\b", line)]


def test_readme_helm_commands_render_with_a_storage_class_where_they_promise_one() -> None:
    commands = readme_helm_commands()
    assert len(commands) >= 3
    for argv in commands:
        values = {k: v for a, b in itertools.pairwise(argv) if a == "--set" for k, v in [b.split("=", 1)]}
        docs = render(values)  # refused values (schema, fail) raise here
        if "csi.storageClass.cluster" in values:
            (sc,) = find(docs, "StorageClass")
            assert sc["parameters"]["cluster"] == values["csi.storageClass.cluster"]
