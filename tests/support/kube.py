"""A real Kubernetes control plane for the test session, started by ``hack/dev-cluster.sh``.

The control plane is the one a developer gets from ``hack/dev-cluster.sh up``: etcd, kube-apiserver,
kube-controller-manager and kube-scheduler built from the Go module proxy by ``hack/tools.sh``, plus kwok
running fake nodes on which scheduled pods go Running and Ready. Everything listens on free loopback ports;
the state (PKI, kubeconfigs, etcd data, component logs) lives in a pytest temporary directory and is removed
by ``hack/dev-cluster.sh down`` at session end. The start/stop logic is that script's, not repeated here.

Fixtures:

* ``kube_cluster`` (session): a :class:`KubeCluster` (kubeconfig path, bin dir with ``kubectl``, logs).
* ``kube_api`` (session): a ``kubernetes.client.ApiClient`` authenticated as a cluster admin.
* ``kube_namespace`` (function): a fresh namespace name, deleted (without waiting) after the test.

When the tools are not built, the fixtures *fail* under ``CI=true`` (so CI cannot pass by skipping the
control-plane tests) and otherwise skip, with the reason repeated in the terminal summary
(:func:`support.machine.unavailable`).

When a test that uses the cluster fails, what each component logged while it ran is attached to its report
(sections ``kube <component> log``).
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as kclient
from kubernetes import config as kconfig
from xdist.scheduler import LoadScopeScheduling

from support.machine import in_ci, unavailable

REPO = Path(__file__).resolve().parents[2]
TOOLS_SH = REPO / "hack" / "tools.sh"
DEV_CLUSTER_SH = REPO / "hack" / "dev-cluster.sh"

COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
"""The processes ``hack/dev-cluster.sh`` starts, each logging to ``<state_dir>/logs/<component>.log``."""

REQUIRED_TOOLS = ("kubernetes", "etcd", "kwok")
"""``hack/tools.sh`` tool names the control plane needs."""

NODE_COUNT = 3
"""Fake (kwok) nodes in the test cluster, named ``kwok-node-0`` .. ``kwok-node-2``."""

UP_TIMEOUT = 240  # seconds for `dev-cluster.sh up` (the cluster is normally ready in well under a minute)
KUBE_TEST_DIRS = ("tests/e2e/", "tests/realnode/")
"""Where every test that uses the control plane lives (one xdist work unit; tests/realnode runs on its own)."""
KUBE_GROUP = "kube-control-plane"
DOWN_TIMEOUT = 120  # seconds for `dev-cluster.sh down`
LOG_LINES = 200  # lines of each component log attached to a failing test

_skip_reason: list[str] = []  # set when the session skipped the control-plane tests; shown in the summary
_active: list[KubeCluster] = []  # the running cluster, for attaching logs to failing tests
_log_offsets = pytest.StashKey[dict[str, int]]()


@dataclass(frozen=True)
class KubeCluster:
    """A running control plane.

    ``state_dir`` is the ``--dir`` given to ``hack/dev-cluster.sh``; ``kubeconfig`` authenticates as a
    cluster admin (client certificate, group ``system:masters``); ``bin_dir`` holds ``kubectl`` and the other
    tools built by ``hack/tools.sh`` (``helm``, ``csi-sanity``, ``csi-provisioner`` when built).
    """

    state_dir: Path
    kubeconfig: Path
    bin_dir: Path

    def log_path(self, component: str) -> Path:
        """The log file of ``component`` (one of :data:`COMPONENTS`)."""
        return self.state_dir / "logs" / f"{component}.log"

    def kubectl(self, *args: str, stdin: str | None = None, timeout: float = 60, kubeconfig: Path | None = None) -> str:
        """Run ``kubectl`` against this cluster and return its stdout.

        It authenticates with ``kubeconfig`` (default: the admin's :attr:`kubeconfig`). ``timeout`` is in
        seconds. Raises ``subprocess.CalledProcessError`` (with stderr) on a non-zero exit and
        ``subprocess.TimeoutExpired`` when it runs longer than ``timeout``.
        """
        proc = subprocess.run(
            [str(self.bin_dir / "kubectl"), "--kubeconfig", str(kubeconfig or self.kubeconfig), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )
        return proc.stdout

    def can_i(self, *args: str, kubeconfig: Path | None = None) -> bool:
        """Whether ``kubectl auth can-i <args>`` (e.g. ``"create", "namespaces"``) answers yes for ``kubeconfig``.

        The API server's authorizer (RBAC here) decides, for the user ``kubeconfig`` authenticates as (default:
        the admin). Raises ``subprocess.CalledProcessError`` when kubectl answers neither yes nor no.
        """
        kubectl = str(self.bin_dir / "kubectl")
        argv = [kubectl, "--kubeconfig", str(kubeconfig or self.kubeconfig), "auth", "can-i", *args]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        answer = proc.stdout.strip()
        if (proc.returncode, answer) not in ((0, "yes"), (1, "no")):
            raise subprocess.CalledProcessError(proc.returncode, argv, proc.stdout, proc.stderr)
        return answer == "yes"

    def username(self, kubeconfig: Path | None = None) -> str:
        """The user name the API server authenticates ``kubeconfig`` as (``kubectl auth whoami``)."""
        return self.kubectl("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}", kubeconfig=kubeconfig)

    def helm(self, *args: str, timeout: float = 60) -> str:
        """Run the ``helm`` built by ``hack/tools.sh`` and return its stdout (for ``helm template``: the manifests).

        ``timeout`` is in seconds. Raises ``FileNotFoundError`` when helm is not built,
        ``subprocess.CalledProcessError`` (with stderr) on a non-zero exit and ``subprocess.TimeoutExpired``.
        """
        helm = self.bin_dir / "helm"
        if not helm.exists():
            raise FileNotFoundError(f"{helm} is not built (bash hack/tools.sh install helm)")
        proc = subprocess.run([str(helm), *args], capture_output=True, text=True, timeout=timeout, check=True)
        return proc.stdout

    def service_account_kubeconfig(self, namespace: str, name: str, path: Path, duration: str = "2h") -> Path:
        """Write to ``path`` a kubeconfig that authenticates as ServiceAccount ``namespace/name`` and return it.

        The credential is a bound token from ``kubectl create token`` valid for ``duration`` (a kubectl duration
        such as ``"2h"``); the API server and its CA are the admin kubeconfig's. Whatever runs with it gets exactly
        the RBAC of that ServiceAccount, which must exist. Raises ``subprocess.CalledProcessError`` when the token
        cannot be created.
        """
        token = self.kubectl("create", "token", name, "-n", namespace, "--duration", duration).strip()
        admin = yaml.safe_load(self.kubeconfig.read_text())
        cluster = admin["clusters"][0]
        user = f"system:serviceaccount:{namespace}:{name}"
        config = {
            "apiVersion": "v1", "kind": "Config", "clusters": [cluster],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": user, "context": {"cluster": cluster["name"], "user": user}}],
            "current-context": user,
        }
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path


def tools_missing() -> str | None:
    """``None`` when ``hack/tools.sh`` has built what the control plane needs, else what is missing."""
    proc = subprocess.run(["bash", str(TOOLS_SH), "check", *REQUIRED_TOOLS], capture_output=True, text=True, timeout=60)
    if proc.returncode == 0:
        return None
    return proc.stderr.strip() or f"hack/tools.sh check exited {proc.returncode}"


def bin_dir() -> Path:
    """The directory ``hack/tools.sh`` builds the binaries into (it may not exist yet)."""
    out = subprocess.run(["bash", str(TOOLS_SH), "bin-dir"], capture_output=True, text=True, timeout=60, check=True)
    return Path(out.stdout.strip())


def _log_sizes(cluster: KubeCluster) -> dict[str, int]:
    sizes = {}
    for component in COMPONENTS:
        try:
            sizes[component] = cluster.log_path(component).stat().st_size
        except FileNotFoundError:
            sizes[component] = 0
    return sizes


def _log_since(path: Path, offset: int | None, lines: int) -> str:
    """The last ``lines`` lines of ``path`` written after byte ``offset`` (the whole file when ``None``)."""
    try:
        with path.open("rb") as f:
            if offset is not None:
                f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return f"({path} does not exist)"
    text = data.decode("utf-8", errors="replace").splitlines()
    skipped = len(text) - lines
    tail = "\n".join(text[-lines:])
    return (f"... ({skipped} earlier lines in {path})\n" if skipped > 0 else "") + tail


@pytest.fixture(scope="session")
def kube_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    """Start the control plane with ``NODE_COUNT`` Ready kwok nodes; stop it and remove its state at the end.

    Fails (``CI=true``) or skips (elsewhere) when the tools are not built; fails when the cluster does not
    come up within ``UP_TIMEOUT`` seconds, with the script's output (which ends with the failing component's
    log).
    """
    missing = tools_missing()
    if missing is not None:
        message = (
            "the Kubernetes control-plane tools are not built (run `bash hack/tools.sh install`, "
            f"tens of minutes the first time): {missing}"
        )
        if not in_ci():
            _skip_reason.append(message)
        unavailable(message)
    state_dir = tmp_path_factory.mktemp("kube-cluster")
    up = subprocess.run(
        ["bash", str(DEV_CLUSTER_SH), "up", "--dir", str(state_dir), "--nodes", str(NODE_COUNT)],
        capture_output=True,
        text=True,
        timeout=UP_TIMEOUT,
    )
    if up.returncode != 0:
        pytest.fail(f"hack/dev-cluster.sh up failed (exit {up.returncode}):\n{up.stderr}", pytrace=False)
    cluster = KubeCluster(state_dir=state_dir, kubeconfig=state_dir / "kubeconfig", bin_dir=bin_dir())
    _active.append(cluster)
    try:
        yield cluster
    finally:
        _active.remove(cluster)
        subprocess.run(
            ["bash", str(DEV_CLUSTER_SH), "down", "--dir", str(state_dir)],
            capture_output=True,
            text=True,
            timeout=DOWN_TIMEOUT,
            check=True,
        )


@pytest.fixture(scope="session")
def kube_api(kube_cluster: KubeCluster) -> Iterator[kclient.ApiClient]:
    """A ``kubernetes`` API client for ``kube_cluster``, as a cluster admin; closed at session end."""
    api = kconfig.new_client_from_config(config_file=str(kube_cluster.kubeconfig))
    try:
        yield api
    finally:
        api.close()


@pytest.fixture
def kube_namespace(kube_api: kclient.ApiClient) -> Iterator[str]:
    """A fresh namespace (``e2e-<random>``); its deletion is requested after the test, not awaited."""
    name = f"e2e-{uuid.uuid4().hex[:10]}"
    core = kclient.CoreV1Api(kube_api)
    core.create_namespace(kclient.V1Namespace(metadata=kclient.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        try:
            core.delete_namespace(name)
        except kclient.ApiException as e:
            if e.status != 404:  # a test may delete its namespace itself
                raise


class _OneControlPlaneScheduling(LoadScopeScheduling):
    """pytest-xdist scheduling: every test under ``KUBE_TEST_DIRS`` on one worker, every other test on its own.

    Each worker that runs a control-plane test starts its own control plane (etcd, kube-apiserver,
    controller-manager, scheduler, kwok); on a small machine two of them starve each other's controllers. One
    work unit for all of them means one worker and one control plane, while the other workers share the rest
    of the suite test by test. (xdist's own ``loadgroup`` cannot do this with pytest 9.2: it renames
    ``item._nodeid``, which pytest no longer reads.)
    """

    def _split_scope(self, nodeid: str) -> str:
        return KUBE_GROUP if nodeid.startswith(KUBE_TEST_DIRS) else nodeid


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> LoadScopeScheduling | None:
    """Use ``_OneControlPlaneScheduling`` for ``--dist loadgroup``; other modes keep pytest-xdist's own."""
    if config.getvalue("dist") != "loadgroup":
        return None
    return _OneControlPlaneScheduling(config, log)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Fail a control-plane test outside ``KUBE_TEST_DIRS``: the scheduler would give it a second control plane."""
    if "kube_cluster" in getattr(item, "fixturenames", ()) and not item.nodeid.startswith(KUBE_TEST_DIRS):
        where = " or ".join(KUBE_TEST_DIRS)
        pytest.fail(f"{item.nodeid} uses the Kubernetes control plane: move it under {where}", pytrace=False)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> None:
    """Remember where each component log ends when a test using the cluster starts."""
    if _active and "kube_cluster" in getattr(item, "fixturenames", ()):
        item.stash[_log_offsets] = _log_sizes(_active[0])


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach to a failing cluster test what each component logged while it ran (its tail if setup failed)."""
    report = yield
    if report.failed and _active and "kube_cluster" in getattr(item, "fixturenames", ()):
        cluster = _active[0]
        offsets = item.stash.get(_log_offsets, {})
        for component in COMPONENTS:
            text = _log_since(cluster.log_path(component), offsets.get(component), LOG_LINES)
            report.sections.append((f"kube {component} log", text))
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say loudly that the control-plane tests were skipped, and why."""
    if _skip_reason:
        terminalreporter.section("Kubernetes control plane", sep="!", yellow=True, bold=True)
        terminalreporter.line(f"e2e tests that need the control plane were SKIPPED: {_skip_reason[0]}")
