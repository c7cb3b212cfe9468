"""The node pod the operator generates runs a working storage node.

kwok clusters run no containers, so this test plays the kubelet: it takes the node StatefulSet's pod template,
the ConfigMap and the Secrets produced by the builders, and starts the container's exact ``command`` with the
container's exact environment (resolved by the kubelet's rules) and the ConfigMap's file at its ``mountPath``.
Like a container runtime it gives the process a private mount namespace (``unshare --mount``) in which the
ConfigMap volume and an empty data volume are bind-mounted at ``/etc/callfs`` and ``/var/lib/callfs``
(overlays keep the host's ``/etc`` and ``/var`` untouched). The network is the host's, so the node reaches the
real PostgreSQL and Redis started on loopback by the fixtures, handed to the cluster as external-store Secrets.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from callfs_operator import container_env
from callfs_operator.builders import children, secrets
from callfs_operator.spec import parse_cluster
from support.ports import free_port
from support.redis_server import RedisServer
from support.waiting import wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

POD_NAME = "demo-node-0"
START_TIMEOUT = 30.0  # seconds until /ready answers 200


@dataclass
class RunningPod:
    url: str
    api_key: str
    process: subprocess.Popen[bytes]
    log: Path
    data_dir: Path

    def log_tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-40:])


def mount_script(mounts: dict[str, Path], scratch: Path) -> str:
    """Shell commands making each ``mountPath`` show its host directory, inside a private mount namespace."""
    lines = ["set -e", "mount --make-rprivate /"]
    for top in sorted({"/" + p.strip("/").split("/")[0] for p in mounts}):
        upper, work = scratch / f"upper{top.replace('/', '-')}", scratch / f"work{top.replace('/', '-')}"
        upper.mkdir(parents=True)
        work.mkdir(parents=True)
        lines.append(f"mount -t overlay overlay -o lowerdir={top},upperdir={upper},workdir={work} {top}")
    for path, host in mounts.items():
        lines.append(f"mkdir -p {shlex.quote(path)} && mount --bind {shlex.quote(str(host))} {shlex.quote(path)}")
    lines.append('exec "$@"')
    return "\n".join(lines)


def get(url: str, key: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture
def node_pod(tmp_path: Path, postgres_dsn: str, redis_url: str, redis_server: RedisServer) -> Iterator[RunningPod]:
    del redis_url  # requested for a clean Redis database
    if shutil.which("unshare") is None:
        pytest.fail("unshare (util-linux) is needed to give the node its volumes at their mount paths")
    port = free_port()
    cluster = parse_cluster("demo", "ns1", {
        "replicas": 1,
        "port": port,
        "s3Port": free_port(),  # not the default 9000: other tests may hold it
        "metadata": {"externalSecret": {"name": "db"}},
        "locks": {"externalSecret": {"name": "locks"}},
    })
    objs = children(cluster, {})
    plain = {o["metadata"]["name"]: secrets.decode(o["data"]) for o in objs if o["kind"] == "Secret"}
    plain["db"] = {"dsn": postgres_dsn}
    plain["locks"] = {"address": f"{redis_server.host}:{redis_server.port}", "password": redis_server.password}
    config_map = next(o for o in objs if o["kind"] == "ConfigMap")
    sts = next(o for o in objs if o["kind"] == "StatefulSet" and o["metadata"]["name"] == "demo-node")
    pod_spec = sts["spec"]["template"]["spec"]
    (container,) = pod_spec["containers"]

    env = container_env.resolve(container, {"metadata.name": POD_NAME}, plain)
    # What the image itself provides: a PATH to find `callfs` on, and a HOME.
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), **env}

    volumes = {v["name"]: v for v in pod_spec["volumes"]}
    host_dirs: dict[str, Path] = {}
    for mount in container["volumeMounts"]:
        host = tmp_path / "volumes" / mount["name"]
        volume = volumes.get(mount["name"])
        host.mkdir(parents=True)
        if volume is not None and "configMap" in volume:
            assert volume["configMap"]["name"] == config_map["metadata"]["name"]
            for key, text in config_map["data"].items():
                (host / key).write_text(text)
        elif volume is not None and "emptyDir" in volume:
            continue  # scratch space (/tmp) for a read-only root; the host's own is writable here
        else:  # the claim template's PVC: an empty directory
            assert mount["name"] in {c["metadata"]["name"] for c in sts["spec"]["volumeClaimTemplates"]}
        host_dirs[mount["mountPath"]] = host

    log = tmp_path / "node.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["unshare", "--mount", "sh", "-c", mount_script(host_dirs, tmp_path / "overlay"), "sh",
             *container["command"], *container.get("args", [])],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    pod = RunningPod(f"http://127.0.0.1:{port}", plain["demo-api-key"]["api-key"], process, log,
                     host_dirs["/var/lib/callfs"])
    try:

        def ready() -> bool:
            if process.poll() is not None:
                pytest.fail(f"the node exited with {process.returncode}:\n{pod.log_tail()}")
            return get(pod.url + "/ready")[0] == 200

        try:
            wait_for(ready, START_TIMEOUT, "the node's /ready", 0.1, ignoring=(OSError,))
        except AssertionError as exc:
            pytest.fail(f"{exc}:\n{pod.log_tail()}")
        yield pod
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_generated_node_pod_serves_files(node_pod: RunningPod) -> None:
    body = b"bytes written through the operator-configured node\n" * 100
    put = urllib.request.Request(node_pod.url + "/v1/files/hello/world.txt", data=body, method="PUT",
                                 headers={"Authorization": f"Bearer {node_pod.api_key}"})
    with urllib.request.urlopen(put, timeout=10) as response:
        assert response.status in (200, 201)
    status, got = get(node_pod.url + "/v1/files/hello/world.txt", node_pod.api_key)
    assert (status, got) == (200, body)
    # The bytes landed in the data volume (the PVC), not somewhere else on the host.
    assert any(p.is_file() and p.stat().st_size == len(body) for p in node_pod.data_dir.rglob("*"))


def test_generated_node_pod_rejects_requests_without_the_api_key(node_pod: RunningPod) -> None:
    assert get(node_pod.url + "/v1/files/anything.txt")[0] == 401
    assert get(node_pod.url + "/v1/files/anything.txt", "not-the-generated-key-0000")[0] == 401


def test_generated_node_pod_announces_its_pod_identity(node_pod: RunningPod) -> None:
    status, body = get(node_pod.url + "/v1/cluster/nodes", node_pod.api_key)
    assert status == 200
    view: dict[str, Any] = json.loads(body)
    assert view["instance_id"] == POD_NAME
    me = next(n for n in view["nodes"] if n["self"])
    port = node_pod.url.rsplit(":", 1)[1]
    assert me["url"] == f"http://{POD_NAME}.demo-nodes.ns1.svc.cluster.local:{port}"
