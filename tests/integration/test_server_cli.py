"""``callfs server`` and ``callfs config validate`` as a user runs them: TLS, refusals, env overrides."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
from pathlib import Path

import aiohttp

from support.node import make_certificate, write_node_config
from support.waiting import wait_for_async


def run_callfs(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CALLFS_")}
    return subprocess.run(
        [sys.executable, "-m", "callfs", *args], cwd=cwd, env={**clean, **(env or {})}, capture_output=True,
        text=True, timeout=timeout, check=False,
    )


async def test_tls_listener_serves_https_with_hsts(tmp_path: Path) -> None:
    cert, key = make_certificate(tmp_path)
    node = write_node_config(tmp_path / "tls", server={"cert_file": str(cert), "key_file": str(key)})
    node.url = node.url.replace("http://", "https://")
    context = ssl.create_default_context(cafile=str(cert))
    process = subprocess.Popen([sys.executable, "-m", "callfs", "server", "-c", str(node.config_path)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path)
    try:
        async with aiohttp.ClientSession() as http:

            async def health() -> tuple[int, str | None]:
                async with http.get(node.url + "/health", ssl=context) as response:
                    return response.status, response.headers.get("Strict-Transport-Security")

            status, hsts = await wait_for_async(health, 15, "the TLS node to answer /health", 0.05,
                                                ignoring=(aiohttp.ClientConnectorError,))
            assert status == 200
            assert hsts is not None and hsts.startswith("max-age="), hsts
            headers = {"Authorization": f"Bearer {node.api_key}"}
            async with http.put(node.url + "/v1/files/tls.txt", data=b"secure", headers=headers, ssl=context) as r:
                assert r.status == 201
            async with http.get(node.url + "/v1/files/tls.txt", headers=headers, ssl=context) as response:
                assert await response.read() == b"secure"
    finally:
        process.terminate()
        process.wait(30)


def test_plain_http_beyond_loopback_is_refused(tmp_path: Path) -> None:
    result = run_callfs("server", cwd=tmp_path, env={"CALLFS_SERVER__LISTEN_ADDR": "0.0.0.0:18443"})
    assert result.returncode != 0
    assert "refusing to serve plain HTTP on non-loopback address" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "callfs-data").exists()


def test_config_validate_prints_masked_settings(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "auth:\n  api_keys: ['first-key-0123456789']\n  internal_proxy_secret: internal-0123456789\n"
        "metadata_store:\n  type: postgres\n  dsn: postgresql://u:pw@127.0.0.1/db\n"
    )
    result = run_callfs("config", "validate", "-c", str(config), cwd=tmp_path,
                        env={"CALLFS_DLM__WAIT_TIMEOUT": "7", "CALLFS_LOG__FORMAT": "json"})
    assert result.returncode == 0, result.stderr
    settings = json.loads(result.stdout)
    assert settings["dlm"]["wait_timeout"] == 7
    assert settings["log"]["format"] == "json"
    assert settings["auth"]["api_keys"] == ["***"]
    assert settings["metadata_store"]["dsn"] == "***"
    for secret in ("first-key-0123456789", "internal-0123456789", "pw@"):
        assert secret not in result.stdout


def test_config_validate_names_the_bad_field(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"dlm": {"type": "zookeeper"}}))
    result = run_callfs("config", "validate", "-c", str(config), cwd=tmp_path)
    assert result.returncode == 1
    assert "dlm.type" in result.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text("server: [unclosed")
    result = run_callfs("config", "validate", "-c", str(broken), cwd=tmp_path)
    assert result.returncode == 1 and "not valid YAML" in result.stderr


def test_unreachable_postgres_fails_start_with_one_clear_line(tmp_path: Path) -> None:
    result = run_callfs(
        "server", cwd=tmp_path,
        env={"CALLFS_METADATA_STORE__TYPE": "postgres", "CALLFS_METADATA_STORE__DSN": "postgresql://x@127.0.0.1:9/x"},
        timeout=60,
    )
    assert result.returncode == 1
    assert "cannot start" in result.stderr
    assert "Traceback" not in result.stderr


def test_workers_on_sqlite_are_refused_by_config_validate(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("server:\n  workers: 2\n")
    result = run_callfs("config", "validate", "-c", str(config), cwd=tmp_path)
    assert result.returncode == 1
    assert "server.workers 2 needs metadata_store.type postgres and dlm.type redis" in result.stderr


def test_a_worker_that_cannot_start_fails_the_node_with_one_clear_line(tmp_path: Path) -> None:
    result = run_callfs(
        "server", cwd=tmp_path,
        env={"CALLFS_METADATA_STORE__TYPE": "postgres", "CALLFS_METADATA_STORE__DSN": "postgresql://x@127.0.0.1:9/x",
             "CALLFS_DLM__TYPE": "redis", "CALLFS_SERVER__WORKERS": "2"},
        timeout=60,
    )
    assert result.returncode == 1
    assert "cannot start: WorkerFailed: worker 0" in result.stderr
    assert "MetadataUnavailable" in result.stderr
    assert "Traceback" not in result.stderr
