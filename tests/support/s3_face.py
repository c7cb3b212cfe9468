"""Storage nodes with their S3 listener on, and boto3 clients for them.

Fixtures:
- ``s3_node``: an in-process node (:mod:`support.app_node`) serving S3 on a free port, parametrised over
  ``sqlite`` (SQLite + in-process locks) and ``postgres`` (PostgreSQL + Redis).
- ``s3_node_sqlite``: the same on SQLite only (for tests whose subject is not the metadata store).
- ``s3_cluster``: three in-process nodes sharing one PostgreSQL database, one Redis and one ``auth`` section,
  each serving S3 (file bytes on each node's own disk, so most reads and deletes cross nodes).

:func:`client` builds a boto3 S3 client for a user of the node (access keys ``S3ALICE``, ``S3BOB``,
``S3ROOT`` from :func:`support.node.new_auth_section`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.config import Config as BotoConfig

from support.app_node import AppNode
from support.node import new_auth_section, postgres_redis_sections
from support.ports import free_port

REGION = "us-east-1"


def s3_url(node: AppNode) -> str:
    """The S3 endpoint of ``node`` (``http://127.0.0.1:<port>``)."""
    config = json.loads(node.config_path.read_text())
    return "http://" + config["s3"]["listen_addr"]


def credentials(node: AppNode, user: str) -> tuple[str, str]:
    """``(access key id, secret)`` of ``user`` on ``node``."""
    config = json.loads(node.config_path.read_text())
    for key, value in config["auth"]["s3_credentials"].items():
        if value["user"] == user:
            return key, value["secret"]
    raise KeyError(user)


def client(node: AppNode, user: str = "alice", **config: Any) -> Any:
    """A boto3 S3 client of ``user`` for ``node`` (path-style addressing, no retries: a failure shows)."""
    access_key, secret = credentials(node, user)
    return boto3.client(
        "s3", endpoint_url=s3_url(node), aws_access_key_id=access_key, aws_secret_access_key=secret,
        region_name=REGION,
        config=BotoConfig(s3={"addressing_style": "path"}, retries={"max_attempts": 1}, signature_version="s3v4",
                          **config),
    )


def _start(factory: Callable[..., AppNode], **sections: Any) -> AppNode:
    return factory(s3={"listen_addr": f"127.0.0.1:{free_port()}"}, **sections)


@pytest.fixture(params=["sqlite", "postgres"])
def s3_node(request: pytest.FixtureRequest, app_node_factory: Callable[..., AppNode]) -> AppNode:
    if request.param == "sqlite":
        return _start(app_node_factory)
    return _start(app_node_factory, **postgres_redis_sections(request))


@pytest.fixture
def s3_node_sqlite(app_node_factory: Callable[..., AppNode]) -> AppNode:
    return _start(app_node_factory)


@pytest.fixture
def s3_cluster(request: pytest.FixtureRequest, app_node_factory: Callable[..., AppNode]) -> list[AppNode]:
    """Three in-process nodes sharing PostgreSQL and Redis. Parametrized indirectly, the parameter is merged
    into their ``backend`` section (e.g. ``{"whole_files_in_blocks": False}``)."""
    shared = {"auth": new_auth_section(), **postgres_redis_sections(request),
              "backend": dict(getattr(request, "param", {}))}
    nodes = []
    for i in range(3):
        discovery = {"heartbeat_interval": 0.3, "node_timeout": 2, "forward_connect_timeout": 2,
                     "instance_id": f"s3node-{i}"}
        own = {k: dict(v) for k, v in shared.items()}
        nodes.append(_start(app_node_factory, instance_discovery=discovery, **own))
    return nodes
