"""Dynamic provisioning on a real control plane: ``callfs-csi --mode controller`` plus the CSI sidecars.

One implementation of the wiring, shared by the e2e tests (tests/e2e/test_csi_provisioner.py) and the
benchmark bench/pvc_bound.py: the CSIDriver object ``csi.callfs.io`` (no attach), a Secret holding the root API
key of a CallFS node, our controller on a unix socket in a work directory, and csi-provisioner (and, when asked,
csi-resizer) built by ``hack/tools.sh``, talking to that socket and to the API server through a kubeconfig.
StorageClasses pass the Secret through the standard ``csi.storage.k8s.io/*-secret-{name,namespace}``
parameters (CSI spec "Secrets Requirements"; the external-provisioner documentation names them).

:func:`running_provisioning` starts it all and stops it (SIGTERM, then SIGKILL after 15 s) on exit, deleting
the StorageClasses it created and printing the tail of each process log to stderr.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kubernetes import client as kclient

from support.node import NodeProcess
from support.waiting import wait_for

DRIVER = "csi.callfs.io"
"""The CSI driver name callfs-csi registers (GetPluginInfo)."""

BIND_TIMEOUT = 120
"""Seconds for a PVC to bind (or a PV to go away) on the 2-core machine."""

ROOT_SECRET = "callfs-root"
"""The Secret (in the test's namespace) holding the node's root API key as ``apiKey``."""

SECRET_KINDS = ("provisioner", "controller-expand", "node-stage")
"""The CSI secret parameters a StorageClass ``callfs`` points at the root key Secret."""

LOG_TAIL = 30
"""Lines of each process log written to stderr when provisioning stops."""


@dataclass
class Provisioning:
    """Our controller and csi-provisioner (and csi-resizer when started), running.

    ``node`` is the CallFS node the controller provisions on; ``socket`` the controller's unix socket;
    ``secret`` the Secret in ``namespace`` holding the node's root API key as ``apiKey``; ``api`` a cluster-admin
    API client. Kubernetes API errors propagate as ``kubernetes.client.ApiException``.
    """

    node: NodeProcess
    socket: Path
    namespace: str
    secret: str
    api: kclient.ApiClient
    storage_classes: list[str] = field(default_factory=list)

    def storage_class(self, name: str, on_delete: str, **parameters: str) -> None:
        """Create StorageClass ``name`` (provisioner ``csi.callfs.io``, expansion allowed, Immediate binding).

        Its parameters: ``server`` (the node's URL), ``onDelete`` (``delete|retain|archive``), the secret
        parameters of :data:`SECRET_KINDS`, and ``parameters`` (e.g. ``maxInodes="1000"``). Deleted on exit.
        """
        secret_params = {
            f"csi.storage.k8s.io/{kind}-secret-{part}": value
            for kind in SECRET_KINDS
            for part, value in (("name", self.secret), ("namespace", self.namespace))
        }
        kclient.StorageV1Api(self.api).create_storage_class(kclient.V1StorageClass(
            metadata=kclient.V1ObjectMeta(name=name), provisioner=DRIVER, reclaim_policy="Delete",
            allow_volume_expansion=True, volume_binding_mode="Immediate",
            parameters={"server": self.node.url, "onDelete": on_delete, **secret_params, **parameters},
        ))
        self.storage_classes.append(name)

    def claim(self, name: str, storage_class: str, size: str) -> None:
        """Create PVC ``name`` (ReadWriteMany, ``size`` such as ``"2Gi"``) of ``storage_class`` in ``namespace``."""
        claim = kclient.V1PersistentVolumeClaim(
            metadata=kclient.V1ObjectMeta(name=name),
            spec=kclient.V1PersistentVolumeClaimSpec(
                access_modes=["ReadWriteMany"], storage_class_name=storage_class,
                resources=kclient.V1VolumeResourceRequirements(requests={"storage": size}),
            ),
        )
        kclient.CoreV1Api(self.api).create_namespaced_persistent_volume_claim(self.namespace, claim)

    def resize_claim(self, name: str, size: str) -> None:
        """Patch PVC ``name``'s ``spec.resources.requests.storage`` to ``size`` (what ``kubectl patch`` sends)."""
        kclient.CoreV1Api(self.api).patch_namespaced_persistent_volume_claim(
            name, self.namespace, {"spec": {"resources": {"requests": {"storage": size}}}})

    def claim_capacity(self, name: str) -> str | None:
        """``status.capacity.storage`` of PVC ``name`` (e.g. ``"3Gi"``), ``None`` before it is bound."""
        pvc = kclient.CoreV1Api(self.api).read_namespaced_persistent_volume_claim(name, self.namespace)
        capacity = pvc.status.capacity or {}
        value = capacity.get("storage")
        return str(value) if value is not None else None

    def bound_volume(self, claim: str, timeout: float = BIND_TIMEOUT) -> kclient.V1PersistentVolume:
        """The PV PVC ``claim`` is Bound to, polled for up to ``timeout`` seconds (``AssertionError`` after)."""
        core = kclient.CoreV1Api(self.api)

        def bound() -> str | None:
            pvc = core.read_namespaced_persistent_volume_claim(claim, self.namespace)
            return pvc.spec.volume_name if pvc.status.phase == "Bound" else None

        pv_name = wait_for(bound, timeout, f"PVC {claim} to be Bound")
        return core.read_persistent_volume(pv_name)

    def wait_pv_gone(self, name: str, timeout: float = BIND_TIMEOUT) -> None:
        """Poll until PV ``name`` is deleted (404), for up to ``timeout`` seconds (``AssertionError`` after)."""
        core = kclient.CoreV1Api(self.api)

        def gone() -> bool:
            try:
                core.read_persistent_volume(name)
            except kclient.ApiException as exc:
                if exc.status == 404:
                    return True
                raise
            return False

        wait_for(gone, timeout, f"PV {name} to be deleted")

    def delete_claim(self, name: str) -> None:
        """Delete PVC ``name`` (without waiting for its PV)."""
        kclient.CoreV1Api(self.api).delete_namespaced_persistent_volume_claim(name, self.namespace)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def sidecar_env(kubeconfig: Path) -> dict[str, str]:
    """The environment of a sidecar that must authenticate with ``kubeconfig`` and nothing else.

    csi-provisioner takes ``KUBECONFIG`` from its environment in preference to ``--kubeconfig``, so an
    inherited ``KUBECONFIG`` (a developer's ``hack/dev-cluster.sh env``, an admin's) would silently replace the
    identity under test; it is set to ``kubeconfig`` here, and the flag is passed too.
    """
    return {**{k: v for k, v in os.environ.items() if k != "KUBECONFIG"}, "KUBECONFIG": str(kubeconfig)}


def _sidecar(binary: Path, socket: Path, kubeconfig: Path, log_path: Path, *flags: str) -> subprocess.Popen[bytes]:
    if not binary.exists():
        raise FileNotFoundError(f"{binary} is not built (bash hack/tools.sh install {binary.name})")
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [str(binary), f"--csi-address={socket}", f"--kubeconfig={kubeconfig}", "--leader-election=false",
             "--timeout=60s", "--v=4", *flags], stdout=log, stderr=subprocess.STDOUT, env=sidecar_env(kubeconfig))


@contextlib.contextmanager
def running_provisioning(
    api: kclient.ApiClient, kubeconfig: Path, bin_dir: Path, node: NodeProcess, namespace: str, work_dir: Path,
    *, resizer: bool = False, provisioner_flags: Sequence[str] = (), resizer_flags: Sequence[str] = (),
    snapshotter: bool = False, snapshotter_flags: Sequence[str] = (), volume_keys: bool = False,
) -> Iterator[Provisioning]:
    """Start our controller and csi-provisioner (plus csi-resizer when ``resizer``, csi-snapshotter when
    ``snapshotter``: it needs the snapshot CRDs and a snapshot-controller) against ``node``.

    ``namespace`` must exist (the root key Secret :data:`ROOT_SECRET` is created in it); ``work_dir`` receives the
    socket, key file, controller state and the logs (``controller.log``, ``csi-provisioner.log``,
    ``csi-resizer.log``, ``csi-snapshotter.log``). csi-provisioner runs with 4 worker threads and its client-go
    defaults (5 API requests/s, bursts of 10) unless ``provisioner_flags`` (appended to its command line) say
    otherwise; ``resizer_flags`` are appended to csi-resizer's, ``snapshotter_flags`` to csi-snapshotter's.
    ``kubeconfig`` is the sidecars' identity (an admin, or a ServiceAccount whose RBAC is under test), given as
    ``KUBECONFIG`` and ``--kubeconfig`` (:func:`sidecar_env`; the test process's own ``KUBECONFIG`` is not passed
    on). With ``volume_keys`` the controller writes each volume's key Secret into ``namespace``
    (``--volume-secret-namespace``), authenticating with ``kubeconfig`` too. Raises ``FileNotFoundError`` when a
    sidecar binary is not in ``bin_dir`` and ``AssertionError`` when the controller socket does not appear within
    30 s. Everything started is stopped on exit.
    """
    socket = work_dir / "controller.sock"
    key_file = work_dir / "root.key"
    key_file.write_text(node.key_for("root"))
    key_file.chmod(0o600)
    processes: list[subprocess.Popen[bytes]] = []
    storage = kclient.StorageV1Api(api)
    with contextlib.suppress(kclient.ApiException):  # already there from an earlier test
        storage.create_csi_driver(kclient.V1CSIDriver(
            metadata=kclient.V1ObjectMeta(name=DRIVER),
            spec=kclient.V1CSIDriverSpec(attach_required=False, pod_info_on_mount=False,
                                         volume_lifecycle_modes=["Persistent"]),
        ))
    secret = ROOT_SECRET
    kclient.CoreV1Api(api).create_namespaced_secret(namespace, kclient.V1Secret(
        metadata=kclient.V1ObjectMeta(name=secret), string_data={"apiKey": node.key_for("root")}))
    provisioning = Provisioning(node, socket, namespace, secret, api)
    logs = ["controller.log", "csi-provisioner.log"] + (["csi-resizer.log"] if resizer else []) + (
        ["csi-snapshotter.log"] if snapshotter else [])
    try:
        with (work_dir / "controller.log").open("ab") as log:
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "callfs_csi.main", "--endpoint", f"unix://{socket}", "--mode", "controller",
                 "--node-id", "e2e-controller", "--state-dir", str(work_dir / "state"), "--server", node.url,
                 "--api-key-file", str(key_file),
                 *(["--volume-secret-namespace", namespace] if volume_keys else [])],
                stdout=log, stderr=subprocess.STDOUT, env=sidecar_env(kubeconfig)))
        wait_for(lambda: socket.exists(), 30, "the controller socket")
        processes.append(_sidecar(bin_dir / "csi-provisioner", socket, kubeconfig, work_dir / "csi-provisioner.log",
                                  "--worker-threads=4", *provisioner_flags))
        if resizer:
            processes.append(_sidecar(bin_dir / "csi-resizer", socket, kubeconfig, work_dir / "csi-resizer.log",
                                      *resizer_flags))
        if snapshotter:
            processes.append(_sidecar(bin_dir / "csi-snapshotter", socket, kubeconfig,
                                      work_dir / "csi-snapshotter.log", *snapshotter_flags))
        yield provisioning
    finally:
        for process in reversed(processes):
            _stop(process)
        for name in provisioning.storage_classes:
            with contextlib.suppress(kclient.ApiException):
                storage.delete_storage_class(name)
        for log_name in logs:
            path = work_dir / log_name
            if path.exists():
                tail = "\n".join(path.read_text(errors="replace").splitlines()[-LOG_TAIL:])
                sys.stderr.write(f"--- {log_name} (tail)\n{tail}\n")
