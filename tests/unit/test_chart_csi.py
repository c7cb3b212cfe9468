"""The CSI objects of the chart, as helm renders them for a StorageClass of CallFSCluster ``apps/demo``, agree
with the driver itself.

The plugin's command lines parse with ``callfs-csi``'s own parser, the driver name is the one the plugin reports,
the plugin registers itself with kubelet at the kubelet's paths and answers its own liveness probe (or, with the
sidecar values, every sidecar talks to the socket the plugin listens on), the node plugin mounts through the
socket the mount service listens on (and the service sees the plugin's paths), the StorageClass parameters are
accepted by ``parse_parameters``, and the CSIDriver object promises only what the driver advertises. (That
``manifests/callfs.yaml`` is the chart rendered is checked by tests/e2e/test_operator_cluster.py.)
"""

from __future__ import annotations

import re
import shlex
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from callfs_csi import csi_pb2
from callfs_csi.config import DRIVER_NAME, Mode
from callfs_csi.controller import CONTROLLER_CAPABILITIES
from callfs_csi.health import parse_http_endpoint
from callfs_csi.main import config_from_args, parser, self_services_from_args
from callfs_csi.mount_main import build_parser as mount_parser
from callfs_csi.mount_service import parser as mount_service_parser
from callfs_csi.node import NODE_CAPABILITIES
from callfs_csi.params import parse_parameters
from callfs_csi.server import SelfServices, grpc_address
from callfs_csi.volume_keys import secret_name
from support.chart import render

REPO = Path(__file__).resolve().parents[2]
TOOLS_SH = REPO / "hack" / "tools.sh"
CLUSTER = "apps/demo"
SECRET_KINDS = ("provisioner", "controller-expand")
"""The CSI secret parameters that name the root key Secret (node-stage names each volume's own, csi.volumeKeys)."""

PLUGINS = [("Deployment", "callfs-csi-controller", Mode.CONTROLLER), ("DaemonSet", "callfs-csi-node", Mode.NODE)]
MOUNT_SERVICE = "callfs-mount-service"


SIDECARS = (("csi.node.registrar", "sidecar"), ("csi.controller.healthCheck", "sidecar"))
"""Values that hand registration and /healthz to the upstream sidecars instead of the plugin (the default)."""


@cache
def docs(extra: tuple[tuple[str, str], ...] = ()) -> list[dict[str, Any]]:
    """The chart's objects with a StorageClass of CallFSCluster :data:`CLUSTER` (and its generated key), and
    ``extra`` values."""
    return render({"csi.storageClass.cluster": CLUSTER, **dict(extra)})


def objects(kind: str, extra: tuple[tuple[str, str], ...] = ()) -> list[dict[str, Any]]:
    return [d for d in docs(extra) if d["kind"] == kind]


def one(kind: str, name: str, extra: tuple[tuple[str, str], ...] = ()) -> dict[str, Any]:
    found = [d for d in objects(kind, extra) if d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind} {name}: {len(found)} rendered"
    return found[0]


def pod_spec(kind: str, name: str, extra: tuple[tuple[str, str], ...] = ()) -> dict[str, Any]:
    spec: dict[str, Any] = one(kind, name, extra)["spec"]["template"]["spec"]
    return spec


def container(spec: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = (c for c in spec["containers"] if c["name"] == name)
    return found  # type: ignore[no-any-return]


def flag(c: dict[str, Any], name: str) -> str:
    """The value of ``--name=value`` among ``c``'s args."""
    values = [a.split("=", 1)[1] for a in c.get("args", []) if a.startswith(f"--{name}=")]
    assert len(values) == 1, f"{c['name']}: --{name} given {len(values)} times"
    return values[0]


def plugin_argv(c: dict[str, Any]) -> list[str]:
    """The plugin's args with ``$(VAR)`` references expanded as kubelet would (fieldRef values made up)."""
    env = {e["name"]: f"<{e['valueFrom']['fieldRef']['fieldPath']}>" for e in c.get("env", []) if "valueFrom" in e}
    argv = []
    for arg in c["args"]:
        for name, value in env.items():
            arg = arg.replace(f"$({name})", value)
        assert "$(" not in arg, f"{arg}: refers to an undefined variable"
        argv.append(arg)
    return argv


def volume_path(spec: dict[str, Any], c: dict[str, Any], path: str) -> tuple[str, PurePosixPath]:
    """``(volume name, path inside the volume)`` of ``path`` as container ``c`` sees it."""
    target = PurePosixPath(path)
    mounts = [m for m in c.get("volumeMounts", []) if target.is_relative_to(m["mountPath"])]
    assert mounts, f"{c['name']}: {path} is on no volume"
    mount = max(mounts, key=lambda m: len(m["mountPath"]))
    return mount["name"], target.relative_to(mount["mountPath"])


def volume(spec: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = (v for v in spec["volumes"] if v["name"] == name)
    return found  # type: ignore[no-any-return]


def storage_class() -> dict[str, Any]:
    (sc,) = objects("StorageClass")
    return sc


@pytest.mark.parametrize(("kind", "name", "mode"), PLUGINS)
def test_plugin_command_line_parses_with_callfs_csi_parser(kind: str, name: str, mode: Mode) -> None:
    plugin = container(pod_spec(kind, name), "callfs-csi")
    assert plugin["command"] == ["callfs-csi"]
    args = parser().parse_args(plugin_argv(plugin))  # exits (SystemExit 2) on an unknown or malformed option
    config = config_from_args(args)
    assert config.mode == mode
    grpc_address(args.endpoint)  # raises on an endpoint the server cannot bind


def test_node_plugin_is_named_after_its_node() -> None:
    plugin = container(pod_spec("DaemonSet", "callfs-csi-node"), "callfs-csi")
    assert flag(plugin, "node-id") == "$(NODE_NAME)"
    (env,) = (e for e in plugin["env"] if e["name"] == "NODE_NAME")
    assert env["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"


def test_driver_name_is_the_one_the_plugin_reports() -> None:
    (driver,) = objects("CSIDriver")
    assert driver["metadata"]["name"] == DRIVER_NAME
    assert storage_class()["provisioner"] == DRIVER_NAME


@pytest.mark.parametrize(("kind", "name", "mode"), PLUGINS)
def test_every_sidecar_talks_to_the_plugin_socket(kind: str, name: str, mode: Mode) -> None:
    spec = pod_spec(kind, name, SIDECARS)
    plugin = container(spec, "callfs-csi")
    endpoint = parser().parse_args(plugin_argv(plugin)).endpoint
    socket = volume_path(spec, plugin, grpc_address(endpoint).removeprefix("unix://"))
    sidecars = [c for c in spec["containers"] if c is not plugin and c["name"] != MOUNT_SERVICE]
    assert {c["name"] for c in sidecars} >= {"liveness-probe"}
    for sidecar in sidecars:
        assert volume_path(spec, sidecar, flag(sidecar, "csi-address")) == socket, sidecar["name"]


def pinned_version(variable: str) -> str:
    """A version pinned at the top of hack/tools.sh (what the e2e tests build and run)."""
    match = re.search(rf"^{variable}=(\S+)$", TOOLS_SH.read_text(), re.MULTILINE)
    assert match, f"{variable} is not pinned in {TOOLS_SH}"
    return match.group(1)


def test_controller_sidecars_are_the_versions_the_e2e_tests_run() -> None:
    spec = pod_spec("Deployment", "callfs-csi-controller")
    images = {c["name"]: c["image"] for c in spec["containers"]}
    assert images["csi-provisioner"] == (
        f"registry.k8s.io/sig-storage/csi-provisioner:{pinned_version('CSI_PROVISIONER_VERSION')}")
    assert images["csi-resizer"] == f"registry.k8s.io/sig-storage/csi-resizer:{pinned_version('CSI_RESIZER_VERSION')}"
    assert set(images) == {"callfs-csi", "csi-provisioner", "csi-resizer"}  # the plugin answers /healthz
    socket_volume, _ = volume_path(spec, container(spec, "callfs-csi"), "/csi/csi.sock")
    assert volume(spec, socket_volume) == {"name": socket_volume, "emptyDir": {}}


def test_kubelet_finds_the_node_socket_where_the_plugin_registers_it() -> None:
    spec = pod_spec("DaemonSet", "callfs-csi-node")
    assert [c["name"] for c in spec["containers"]] == ["callfs-csi", MOUNT_SERVICE]
    plugin = container(spec, "callfs-csi")
    args = parser().parse_args(plugin_argv(plugin))
    services = self_services_from_args(args)
    socket_volume, inside = volume_path(spec, plugin, grpc_address(args.endpoint).removeprefix("unix://"))
    host_dir = PurePosixPath(volume(spec, socket_volume)["hostPath"]["path"])
    assert services.kubelet_endpoint == str(host_dir / inside)
    assert host_dir.name == DRIVER_NAME  # kubelet's convention: <kubelet dir>/plugins/<driver name>
    # The registration socket lands in the host's <kubelet dir>/plugins_registry, where kubelet watches, under
    # the name node-driver-registrar would give it.
    assert services.registration_socket is not None
    registration_volume, registration = volume_path(spec, plugin, services.registration_socket)
    kubelet_dir = PurePosixPath(volume(spec, registration_volume)["hostPath"]["path"])
    assert kubelet_dir / registration == host_dir.parent.parent / "plugins_registry" / f"{DRIVER_NAME}-reg.sock"
    assert "registration-dir" not in {v["name"] for v in spec["volumes"]}


@pytest.mark.parametrize(("kind", "name", "mode"), PLUGINS)
def test_the_plugin_answers_its_own_liveness_probe(kind: str, name: str, mode: Mode) -> None:
    spec = pod_spec(kind, name)
    plugin = container(spec, "callfs-csi")
    assert "liveness-probe" not in {c["name"] for c in spec["containers"]}
    endpoint = self_services_from_args(parser().parse_args(plugin_argv(plugin))).http_endpoint
    assert endpoint is not None
    host, port = parse_http_endpoint(endpoint)
    assert host is None  # the kubelet probes the pod's address
    probe_port = plugin["livenessProbe"]["httpGet"]["port"]
    assert [p["containerPort"] for p in plugin["ports"] if p["name"] == probe_port] == [port]
    assert plugin["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_kubelet_finds_the_node_socket_where_the_registrar_sidecar_says() -> None:
    spec = pod_spec("DaemonSet", "callfs-csi-node", SIDECARS)
    plugin, registrar = container(spec, "callfs-csi"), container(spec, "node-driver-registrar")
    assert self_services_from_args(parser().parse_args(plugin_argv(plugin))) == SelfServices()
    socket_volume, inside = volume_path(spec, plugin, grpc_address(flag(plugin, "endpoint")).removeprefix("unix://"))
    host_dir = PurePosixPath(volume(spec, socket_volume)["hostPath"]["path"])
    assert PurePosixPath(flag(registrar, "kubelet-registration-path")) == host_dir / inside
    assert host_dir.name == DRIVER_NAME  # kubelet's convention: <kubelet dir>/plugins/<driver name>
    registration, _ = volume_path(spec, registrar, "/registration/x")
    assert volume(spec, registration)["hostPath"]["path"] == str(host_dir.parent.parent / "plugins_registry")


def test_node_plugin_mounts_reach_the_host_and_its_state_survives_restarts() -> None:
    spec = pod_spec("DaemonSet", "callfs-csi-node")
    plugin = container(spec, "callfs-csi")
    assert plugin["securityContext"]["privileged"] is True
    kubelet_mount = next(m for m in plugin["volumeMounts"] if m["name"] == "kubelet-dir")
    # kubelet sends host paths (staging and target paths): the plugin must see them at the same place, and its
    # mounts there must propagate back to the host.
    assert volume(spec, "kubelet-dir")["hostPath"]["path"] == kubelet_mount["mountPath"]
    assert kubelet_mount.get("mountPropagation") == "Bidirectional"
    state_volume, _ = volume_path(spec, plugin, flag(plugin, "state-dir"))
    assert "hostPath" in volume(spec, state_volume)
    fuse_volume, _ = volume_path(spec, plugin, "/dev/fuse")
    assert volume(spec, fuse_volume)["hostPath"] == {"path": "/dev/fuse", "type": "CharDevice"}


def test_node_plugin_mounts_through_the_socket_the_mount_service_listens_on() -> None:
    spec = pod_spec("DaemonSet", "callfs-csi-node")
    plugin, service = container(spec, "callfs-csi"), container(spec, MOUNT_SERVICE)
    mount_command = shlex.split(parser().parse_args(plugin_argv(plugin)).mount_command)
    assert mount_command[0] == "callfs-mount"
    # What the plugin runs: the mount command, then the arguments it adds (callfs_csi.mounter.Mounter.mount_fuse).
    mount_args = mount_parser().parse_args(
        [*mount_command[1:], "http://callfs:8443", "/volumes/pvc-1", "/var/lib/kubelet/staging", "--key-file", "k"])
    assert service["command"] == [MOUNT_SERVICE]
    listening = mount_service_parser().parse_args(service["args"]).socket  # exits (SystemExit 2) on a bad option
    assert mount_args.via_service == listening
    socket_volume = volume_path(spec, plugin, mount_args.via_service)
    assert socket_volume == volume_path(spec, service, listening)
    assert volume(spec, socket_volume[0]) == {"name": socket_volume[0], "emptyDir": {}}


def test_mount_service_sees_the_plugin_paths_and_its_mounts_reach_the_host() -> None:
    spec = pod_spec("DaemonSet", "callfs-csi-node")
    plugin, service = container(spec, "callfs-csi"), container(spec, MOUNT_SERVICE)
    assert service["securityContext"]["privileged"] is True
    # callfs-mount is handed the plugin's staging path (kubelet directory) and key/pid/log files (state
    # directory): the service must see each on the same volume at the same path.
    kubelet_dir = next(m for m in plugin["volumeMounts"] if m["name"] == "kubelet-dir")["mountPath"]
    for path in (f"{kubelet_dir}/plugins/kubernetes.io/csi/x/globalmount", f"{flag(plugin, 'state-dir')}/keys/k"):
        assert volume_path(spec, service, path) == volume_path(spec, plugin, path), path
    kubelet_mount = next(m for m in service["volumeMounts"] if m["name"] == "kubelet-dir")
    assert kubelet_mount.get("mountPropagation") == "Bidirectional"
    assert volume_path(spec, service, "/dev/fuse")[0] == volume_path(spec, plugin, "/dev/fuse")[0]
    # The daemons' pid files are read by the plugin in /proc: one PID namespace for the pod.
    assert spec["shareProcessNamespace"] is True
    assert "livenessProbe" not in service  # restarting this container would take every mount down


def test_node_plugin_is_replaced_only_when_its_pod_is_deleted() -> None:
    assert one("DaemonSet", "callfs-csi-node")["spec"]["updateStrategy"] == {"type": "OnDelete"}


def test_storage_class_parameters_are_accepted_by_the_driver() -> None:
    sc = storage_class()
    parameters = sc["parameters"]
    parse_parameters(parameters)  # raises InvalidArgument on an unknown key or a malformed value
    assert sc["allowVolumeExpansion"] is True
    assert sc["volumeBindingMode"] == "Immediate"
    prefix = "csi.storage.k8s.io/"
    secrets = {(parameters[f"{prefix}{kind}-secret-namespace"], parameters[f"{prefix}{kind}-secret-name"])
               for kind in SECRET_KINDS}
    assert len(secrets) == 1  # one Secret for every call; the controller's Role names it


def test_controller_may_read_exactly_the_storage_class_secret() -> None:
    parameters = storage_class()["parameters"]
    namespace = parameters["csi.storage.k8s.io/provisioner-secret-namespace"]
    name = parameters["csi.storage.k8s.io/provisioner-secret-name"]
    role = one("Role", "callfs-csi-controller-secret")
    assert role["metadata"]["namespace"] == namespace
    assert role["rules"] == [{"apiGroups": [""], "resources": ["secrets"], "resourceNames": [name], "verbs": ["get"]}]
    secret_rules = [r for r in one("ClusterRole", "callfs-csi-controller")["rules"] if "secrets" in r["resources"]]
    assert secret_rules == []


def test_controller_runs_as_the_service_account_its_roles_are_bound_to() -> None:
    spec = pod_spec("Deployment", "callfs-csi-controller")
    account = spec["serviceAccountName"]
    namespace = one("Deployment", "callfs-csi-controller")["metadata"]["namespace"]
    bindings = (("ClusterRoleBinding", "callfs-csi-controller"), ("RoleBinding", "callfs-csi-controller-secret"))
    for kind, name in bindings:
        assert one(kind, name)["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": namespace}]


def test_leader_election_goes_with_several_controller_replicas() -> None:
    deployment = one("Deployment", "callfs-csi-controller")
    several = deployment["spec"]["replicas"] > 1
    spec = deployment["spec"]["template"]["spec"]
    for sidecar in ("csi-provisioner", "csi-resizer"):
        assert flag(container(spec, sidecar), "leader-election") == str(several).lower()
    assert any(r["metadata"]["name"] == "callfs-csi-controller-leader-election" for r in objects("Role")) == several
    if not several:
        assert deployment["spec"]["strategy"] == {"type": "Recreate"}


def test_csi_driver_object_promises_what_the_driver_advertises() -> None:
    (driver,) = objects("CSIDriver")
    spec = driver["spec"]
    publishes = csi_pb2.ControllerServiceCapability.RPC.PUBLISH_UNPUBLISH_VOLUME in CONTROLLER_CAPABILITIES
    assert spec["attachRequired"] is publishes is False
    # The pod's fsGroup reaches the driver as volume_mount_group (callfs-mount --gid), whatever the access mode.
    assert csi_pb2.NodeServiceCapability.RPC.VOLUME_MOUNT_GROUP in NODE_CAPABILITIES
    assert spec["fsGroupPolicy"] == "File"
    assert spec["volumeLifecycleModes"] == ["Persistent"]
    assert spec["podInfoOnMount"] is False


def test_nodes_stage_each_volume_with_the_secret_the_controller_writes_for_it() -> None:
    parameters = storage_class()["parameters"]
    deployment = one("Deployment", "callfs-csi-controller")
    namespace = deployment["metadata"]["namespace"]
    config = config_from_args(parser().parse_args(plugin_argv(container(pod_spec("Deployment",
                                                                                   "callfs-csi-controller"),
                                                                          "callfs-csi"))))
    assert config.volume_secret_namespace == namespace
    name = parameters["csi.storage.k8s.io/node-stage-secret-name"]
    assert name.replace("${pv.name}", "pvc-1") == secret_name("pvc-1")  # what external-provisioner resolves
    assert parameters["csi.storage.k8s.io/node-stage-secret-namespace"] == namespace
    role = one("Role", "callfs-csi-controller-volume-keys")
    assert role["metadata"]["namespace"] == namespace
    assert role["rules"] == [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["create", "patch", "delete"]}]
    binding = one("RoleBinding", "callfs-csi-controller-volume-keys")
    assert binding["subjects"][0]["name"] == pod_spec("Deployment", "callfs-csi-controller")["serviceAccountName"]


def test_without_volume_keys_nodes_stage_with_the_root_key_and_the_controller_writes_no_secret() -> None:
    rendered = render({"csi.storageClass.cluster": CLUSTER, "csi.volumeKeys": "false"})
    (sc,) = [d for d in rendered if d["kind"] == "StorageClass"]
    parameters = sc["parameters"]
    assert parameters["csi.storage.k8s.io/node-stage-secret-name"] == "demo-api-key"
    assert not [d for d in rendered if d["metadata"]["name"] == "callfs-csi-controller-volume-keys"]
    (deployment,) = [d for d in rendered if d["kind"] == "Deployment" and d["metadata"]["name"] ==
                     "callfs-csi-controller"]
    assert "--volume-secret-namespace" not in " ".join(container(deployment["spec"]["template"]["spec"],
                                                                 "callfs-csi")["args"])


def test_storage_class_of_a_cluster_hands_out_the_key_its_operator_generated() -> None:
    parameters = storage_class()["parameters"]
    assert parameters["cluster"] == CLUSTER
    namespace, name = CLUSTER.split("/")
    for kind in SECRET_KINDS:
        assert parameters[f"csi.storage.k8s.io/{kind}-secret-namespace"] == namespace
        assert parameters[f"csi.storage.k8s.io/{kind}-secret-name"] == f"{name}-api-key"


def test_node_plugin_is_not_preempted_and_every_sidecar_has_resources() -> None:
    node = pod_spec("DaemonSet", "callfs-csi-node")
    assert node["priorityClassName"] == "system-node-critical"
    for kind, name, _ in PLUGINS:
        for extra in ((), SIDECARS):
            for c in pod_spec(kind, name, extra)["containers"]:
                assert c.get("resources", {}).get("requests"), f"{name}/{c['name']} requests nothing"


def test_snapshots_add_the_pinned_snapshotter_on_the_plugin_socket_and_a_class_of_the_driver() -> None:
    snap_docs = render({"csi.storageClass.cluster": CLUSTER, "csi.snapshots.enabled": "true"})
    (deployment,) = [d for d in snap_docs
                     if d["kind"] == "Deployment" and d["metadata"]["name"] == "callfs-csi-controller"]
    spec = deployment["spec"]["template"]["spec"]
    snapshotter = container(spec, "csi-snapshotter")
    version = pinned_version("EXTERNAL_SNAPSHOTTER_VERSION")
    assert snapshotter["image"] == f"registry.k8s.io/sig-storage/csi-snapshotter:{version}"
    assert volume_path(spec, snapshotter, flag(snapshotter, "csi-address")) == volume_path(
        spec, container(spec, "callfs-csi"), "/csi/csi.sock")
    assert csi_pb2.ControllerServiceCapability.RPC.CREATE_DELETE_SNAPSHOT in CONTROLLER_CAPABILITIES
    (vsc,) = [d for d in snap_docs if d["kind"] == "VolumeSnapshotClass"]
    assert vsc["driver"] == DRIVER_NAME
    sc_parameters = storage_class()["parameters"]
    for part in ("name", "namespace"):
        assert vsc["parameters"][f"csi.storage.k8s.io/snapshotter-secret-{part}"] == sc_parameters[
            f"csi.storage.k8s.io/provisioner-secret-{part}"]
    (role,) = [d for d in snap_docs
               if d["kind"] == "ClusterRole" and d["metadata"]["name"] == "callfs-csi-controller"]
    granted = {r for rule in role["rules"] for r in rule["resources"]}
    assert {"volumesnapshotclasses", "volumesnapshotcontents", "volumesnapshotcontents/status"} <= granted
    assert not [d for d in docs() if d["kind"] == "VolumeSnapshotClass"]  # off by default: CRDs may be absent
