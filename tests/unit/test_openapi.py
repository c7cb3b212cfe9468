"""The OpenAPI document stays true to the node: the routes the real application registers, the error codes of
callfs.errors, a valid OpenAPI 3.1 document, the served copy, the copy in docs/, and bodies the node sends."""

from __future__ import annotations

import ast
import inspect
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from jsonschema import Draft202012Validator
from openapi_spec_validator import OpenAPIV31SpecValidator, validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from callfs import errors
from callfs.api import openapi
from callfs.api.app import build_app
from callfs.config import AuthConfig, Config
from callfs.node import Node

DOCS_COPY = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
REGENERATE = "regenerate it with: python -m callfs.api.openapi > docs/openapi.json"
KEY = "root-key-for-the-openapi-tests"
METHODS = {"get", "head", "post", "put", "patch", "delete", "options", "trace"}


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[web.Application]:
    """The application ``callfs server`` serves, for a started node on SQLite in ``tmp_path``."""
    node = Node.from_config(Config(data_dir=tmp_path / "data", auth=AuthConfig(api_key_users={"root": KEY})))
    await node.start()
    try:
        yield build_app(node)
    finally:
        await node.close()


@pytest.fixture
async def client(app: web.Application) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


def _template(path: str) -> str:
    """A path with its parameters unnamed: ``/v1/files/{tail}`` and ``/v1/files/{path}`` are the same route."""
    return re.sub(r"\{[^}]*\}", "{}", path)


def _documented() -> set[tuple[str, str]]:
    document = openapi.build_document()
    return {
        (method.upper(), _template(path))
        for path, item in document["paths"].items()
        for method in item
        if method in METHODS
    }


async def test_every_registered_route_is_documented_and_nothing_else(app: web.Application) -> None:
    registered = {(route.method, _template(route.resource.canonical))
                  for route in app.router.routes() if route.resource is not None}
    documented = _documented()
    assert registered - documented == set(), "routes the node serves but the document lacks"
    assert documented - registered == set(), "operations the document has but the node does not serve"


def test_internal_routes_are_marked_internal() -> None:
    for path, item in openapi.build_document()["paths"].items():
        for method, operation in item.items():
            internal = path.startswith("/internal/")
            assert operation.get("x-internal", False) is internal, f"{method} {path}"
            assert (openapi.INTERNAL_TAG in operation["tags"]) is internal, f"{method} {path}"


def _codes_in_errors_module() -> set[str]:
    """Every ``code = "..."`` in a class of callfs/errors.py, read from the source."""
    tree = ast.parse(inspect.getsource(errors))
    return {
        statement.value.value
        for node in ast.walk(tree) if isinstance(node, ast.ClassDef)
        for statement in node.body
        if isinstance(statement, ast.AnnAssign | ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "code"
                for t in (statement.targets if isinstance(statement, ast.Assign) else [statement.target]))
        and isinstance(statement.value, ast.Constant)
    }


def test_error_code_enum_is_every_code_of_the_errors_module() -> None:
    schemas = openapi.build_document()["components"]["schemas"]
    enum = schemas["ErrorCode"]["enum"]
    assert len(enum) == len(set(enum))
    assert set(enum) == _codes_in_errors_module()


def test_every_error_status_has_its_response() -> None:
    responses = openapi.build_document()["components"]["responses"]
    for code, status in openapi.error_codes().items():
        assert f"`{code}`" in responses[f"Error{status}"]["description"]


def test_the_document_is_valid_openapi_3_1() -> None:
    document = openapi.build_document()
    assert document["openapi"].startswith("3.1.")
    validate(document, cls=OpenAPIV31SpecValidator)


async def test_served_without_a_key_and_equal_to_the_docs_copy(
    client: TestClient[web.Request, web.Application],
) -> None:
    response = await client.get(openapi.PATH)
    assert response.status == 200
    assert response.content_type == "application/json"
    body = await response.read()
    assert json.loads(body) == openapi.build_document()
    assert DOCS_COPY.read_bytes() == body, f"docs/openapi.json differs from what the node serves; {REGENERATE}"
    head = await client.head(openapi.PATH)
    assert head.status == 200
    assert (await client.get("/v1/files/")).status == 401, "the API itself still needs a key"


def _body_validator(schema_name: str) -> Draft202012Validator:
    """A JSON Schema validator for one of the document's component schemas (``$ref``s resolved)."""
    document = openapi.build_document()
    registry: Registry[Any] = Registry().with_resource(
        "urn:callfs-openapi", Resource.from_contents(document, default_specification=DRAFT202012),
    )
    return Draft202012Validator({"$ref": f"urn:callfs-openapi#/components/schemas/{schema_name}"},
                                registry=registry)


async def test_bodies_the_node_sends_match_their_schemas(
    client: TestClient[web.Request, web.Application],
) -> None:
    auth = {"Authorization": f"Bearer {KEY}"}
    checks = [
        ("/health", {}, 200, "Health"),
        ("/ready", {}, 200, "Ready"),
        ("/v1/cluster/nodes", auth, 200, "ClusterNodes"),
        ("/v1/directories/?recursive=true", auth, 200, "DirectoryListing"),
        ("/v1/files/missing", auth, 404, "Error"),
        ("/v1/files/", {}, 401, "Error"),
    ]
    for path, headers, status, schema in checks:
        response = await client.get(path, headers=headers)
        assert response.status == status, path
        _body_validator(schema).validate(await response.json())
    created = await client.put("/v1/files/a.txt", data=b"hello", headers=auth)
    assert created.status == 201
    assert all(name in created.headers for name in ("Location", "ETag", "Last-Modified"))
    _body_validator("Item").validate(await created.json())
    link = await client.post("/v1/links/generate", json={"path": "/a.txt", "expiry_seconds": 60}, headers=auth)
    assert link.status == 201
    _body_validator("Link").validate(await link.json())
    quota = await client.put("/v1/quotas/", json={"bytes_limit": 1 << 20}, headers=auth)
    assert quota.status in (200, 201)
    _body_validator("Quota").validate(await quota.json())


async def test_patch_answers_match_exactly_one_of_their_schemas(
    client: TestClient[web.Request, web.Application],
) -> None:
    """A move answers ``Moved``, a chmod an ``Item``: each must match exactly one branch of the ``oneOf``."""
    auth = {"Authorization": f"Bearer {KEY}"}
    document = openapi.build_document()
    registry: Registry[Any] = Registry().with_resource(
        "urn:callfs-openapi", Resource.from_contents(document, default_specification=DRAFT202012),
    )
    pointer = "/paths/~1v1~1files~1%7Bpath%7D/patch/responses/200/content/application~1json/schema"
    validator = Draft202012Validator({"$ref": f"urn:callfs-openapi#{pointer}"}, registry=registry)
    assert (await client.put("/v1/files/p.txt", data=b"x", headers=auth)).status == 201
    chmod = await client.patch("/v1/files/p.txt", json={"mode": "0600"}, headers=auth)
    assert chmod.status == 200
    validator.validate(await chmod.json())
    moved = await client.patch("/v1/files/p.txt", json={"name": "q.txt"}, headers=auth)
    assert moved.status == 200
    validator.validate(await moved.json())
