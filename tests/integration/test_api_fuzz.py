"""Property-based fuzzing of the REST API from its own OpenAPI document, against a real node on both stores.

Schemathesis reads the document the node serves at ``GET /openapi.json`` and, for every operation in it, draws
requests that conform to it (positive) and requests that break it (negative: wrong types, missing or extra
fields, out-of-range numbers, odd headers). Each request goes to a node on SQLite or on PostgreSQL+Redis and
the answer must be:

- never a 5xx;
- for a 4xx to anything but HEAD: a JSON body whose ``code`` is in the document's ``ErrorCode`` enum and whose
  status is the one that code carries;
- as documented: a status the operation lists, a declared content type, and a body matching its schema.

Every operation of the document is fuzzed; none is excluded. Requests are sent as ``alice`` (an ordinary
user), as ``root``, or with the key schemathesis generated (unknown: 401); negative cases may also drop the
key. Paths are drawn from the generated strings and from a few seeded files and directories (or a generated
name inside one), so that reads, writes, moves, chmods, links and quotas also reach existing entries; they are
seeded again before each operation, as the fuzzing deletes and moves them. Well-formed PATCH bodies are mixed
in, as the schema cannot say which fields exclude each other. Single-use links are minted first so that
``/download/{token}`` sees live tokens too. The internal peer routes (``/internal/v1/...``) get a user's API key
in place of the internal secret, which they must refuse with 401 or 403 whatever else the request holds, and
the real secret (acting for the generated ``X-CallFS-User``), where they must answer like every other route.

Bounded for CI: ``CALLFS_FUZZ_EXAMPLES`` examples per operation and generation mode (default 20, so 40 requests
per operation and 1,000 per store), derandomized: Hypothesis draws from a fixed seed on every run. Fuzz longer
and elsewhere locally with e.g. ``CALLFS_FUZZ_EXAMPLES=500 CALLFS_FUZZ_SEED=1``. The test prints how many
requests it sent and how many answered 5xx.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from callfs.api.openapi import error_codes
from callfs.peers import USER_HEADER
from support.app_node import AppNode

EXAMPLES = int(os.environ.get("CALLFS_FUZZ_EXAMPLES", "20"))
"""Examples per operation and generation mode."""
SEED = os.environ.get("CALLFS_FUZZ_SEED")
"""Unset: derandomized (a fixed seed); an integer: Hypothesis draws from that seed instead."""

SEED_FILES = {"a.txt": b"hello fuzz", "dir/b.txt": b"b" * 100, "dir/sub/c.bin": bytes(range(256)),
              "q/d.txt": b"quota"}
SEED_DIRS = ["dir/", "dir/sub/", "empty/", "q/", "private/"]
SEED_PATHS = ["", *SEED_FILES, *SEED_DIRS, "dir", "missing.txt", "dir/missing/x"]
USERS = ["alice", "alice", "alice", "root", "root", None]
"""Who sends a request; ``None`` keeps the Authorization header schemathesis generated (an unknown key)."""



@pytest.fixture(autouse=True)
def _node_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """``CALLFS_*`` variables are config overrides to a node, which refuses unknown ones: the node started for
    this test (after this fixture) must not see the fuzzer's own."""
    for name in ("CALLFS_FUZZ_EXAMPLES", "CALLFS_FUZZ_SEED"):
        monkeypatch.delenv(name, raising=False)


NAMES = st.text(min_size=1, max_size=12)


def _patch_bodies() -> st.SearchStrategy[dict[str, Any]]:
    """Well-formed PATCH bodies (renames, moves onto seeded paths, chmods, chowns, chgrps), which the schema alone
    rarely draws: the document cannot say that a move and a chmod exclude each other."""
    destination = st.one_of(st.sampled_from(SEED_PATHS).map(lambda p: "/" + p),
                            st.tuples(st.sampled_from(SEED_DIRS), NAMES).map(lambda t: "/" + t[0] + t[1]))
    flags = {"overwrite": st.booleans(), "create_parents": st.booleans()}
    return st.one_of(
        st.fixed_dictionaries({"name": NAMES}, optional=flags),
        st.fixed_dictionaries({"destination": destination},
                              optional={**flags, "backend": st.sampled_from(["localfs", "s3", "nope"])}),
        st.fixed_dictionaries({"mode": st.integers(0, 0o7777).map(lambda m: f"{m:04o}")},
                              optional={"owner": st.sampled_from(["alice", "bob", "root", "nobody"]),
                                        "group": st.sampled_from(["alice", "bob", "root", "nobody"])}),
    )


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@dataclass
class Tally:
    sent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    problems: dict[tuple[str, str], str] = field(default_factory=dict)
    """One report per (operation, kind of problem), the first example that showed it."""

    def problem(self, operation: str, kind: str, detail: str) -> None:
        self.problems.setdefault((operation, kind), detail)


def _auth(node: AppNode, user: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {node.key_for(user)}"} if user else {}


def _seed(node: AppNode, http: requests.Session) -> None:
    """Create the seeded entries (as alice; their owner, mode and the quota as root), whatever the fuzzing left."""
    alice, root = _auth(node, "alice"), _auth(node, "root")

    def restore(path: str) -> None:
        """Give a seeded entry back to alice with its first mode: the fuzzing may have chmodded or chowned it."""
        mode = "0700" if path == "private/" else "0755" if path.endswith("/") else "0644"
        http.patch(f"{node.url}/v1/files/{path}", json={"owner": "alice", "group": "alice", "mode": mode},
                   headers=root)

    for directory in SEED_DIRS:
        response = http.post(f"{node.url}/v1/files/{directory}", headers=alice)
        assert response.status_code in (200, 201, 409), response.text
        restore(directory)
    for path, body in SEED_FILES.items():
        restore(path)
        response = http.put(f"{node.url}/v1/files/{path}", data=body, headers=alice)
        if response.status_code == 400 and response.json()["code"] == "IS_A_DIRECTORY":
            continue
        assert response.status_code in (200, 201, 403, 507), response.text
        restore(path)
    response = http.put(f"{node.url}/v1/quotas/q", json={"bytes_limit": 1 << 20}, headers=root)
    assert response.status_code in (200, 201), response.text


def _tokens(node: AppNode, http: requests.Session, count: int) -> list[str]:
    out = []
    for _ in range(count):
        response = http.post(f"{node.url}/v1/links/generate", json={"path": "/a.txt", "expiry_seconds": 3600},
                             headers=_auth(node, "alice"))
        assert response.status_code == 201, response.text
        out.append(response.json()["token"])
    return out


def _check_error_body(tally: Tally, label: str, response: schemathesis.Response, codes: dict[str, int]) -> None:
    """A 4xx to anything but HEAD is a JSON ``{"code", "message"}`` with a documented code of that status."""
    where = f"{response.request.method} {response.request.url} -> {response.status_code}"
    if response.request.method == "HEAD":
        if response.content:
            tally.problem(label, "HEAD with a body", where)
        return
    content_type = response.headers.get("content-type", [""])[0]
    text = response.content.decode(errors="replace")[:300]
    try:
        body = json.loads(response.content)
    except ValueError:
        tally.problem(label, f"non-JSON {response.status_code}", f"{where}: {content_type}: {text!r}")
        return
    if not content_type.startswith("application/json"):
        tally.problem(label, f"{response.status_code} not application/json", f"{where}: {content_type}")
    code = body.get("code") if isinstance(body, dict) else None
    if code not in codes:
        tally.problem(label, f"{response.status_code} unknown code", f"{where}: {text!r}")
    elif codes[code] != response.status_code:
        tally.problem(label, f"{code} with status {response.status_code}", f"{where}: {text!r}")


def _headers(node: AppNode, who: str | None, internal: bool, case: Any) -> dict[str, str]:
    """The Authorization header for ``who`` (``"peer"``: the internal secret, acting for the generated user or,
    when none was generated, alice)."""
    if who == "peer":
        user = (case.headers or {}).get(USER_HEADER) or "alice"
        return {"Authorization": f"Bearer {node.internal_secret}", USER_HEADER: user}
    return _auth(node, who)


def _fuzz_operation(node: AppNode, http: requests.Session, operation: Any, tally: Tally, tokens: list[str]) -> None:
    label = operation.label
    internal = operation.path.startswith("/internal/")
    codes = error_codes()
    has_path = any(p.name == "path" for p in operation.path_parameters)
    is_download = operation.path == "/download/{token}"
    crafted = st.none() | _patch_bodies() if label == "PATCH /v1/files/{path}" else st.none()
    strategy = st.one_of(operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE))

    @settings(max_examples=2 * EXAMPLES, deadline=None, derandomize=SEED is None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=strategy, who=st.sampled_from(["alice", "root", "peer"] if internal else USERS),
           seeded=st.none() | st.sampled_from(SEED_PATHS), under=st.booleans(),
           target=st.none() | st.sampled_from(SEED_PATHS), token=st.none() | st.sampled_from(tokens or [""]),
           body=crafted)
    def run(case: Any, who: str | None, seeded: str | None, under: bool, target: str | None, token: str | None,
            body: dict[str, Any] | None) -> None:
        if has_path and seeded is not None:
            # A seeded path, or (under a seeded directory) a generated name inside it.
            generated = (case.path_parameters or {}).get("path", "")
            path = seeded + generated if under and seeded.endswith("/") and isinstance(generated, str) else seeded
            case.path_parameters = {**(case.path_parameters or {}), "path": path}
        if is_download and token:
            case.path_parameters = {**(case.path_parameters or {}), "token": token}
        if body is not None:
            case.body = body
        elif isinstance(case.body, dict) and target is not None:
            for key in ("path", "destination"):
                if key in case.body:
                    case.body = {**case.body, key: "/" + target}
        response = case.call(base_url=node.url, session=http, headers=_headers(node, who, internal, case), timeout=30)
        tally.sent += 1
        tally.statuses[response.status_code] += 1
        where = f"{response.request.method} {response.request.url} as {who} -> {response.status_code}"
        if response.status_code >= 500:
            tally.problem(label, f"{response.status_code}", f"{where}: {response.content[:300]!r}")
        if internal and who != "peer" and response.status_code not in (401, 403):
            tally.problem(label, f"internal route answered {response.status_code} to a user's key", where)
        if 400 <= response.status_code < 500:
            _check_error_body(tally, label, response, codes)
        try:
            case.validate_response(response, checks=CHECKS)
        except FailureGroup as group:
            for failure in group.exceptions:
                tally.problem(label, type(failure).__name__, f"{failure.title}: {failure.message}\n"
                              f"{case.as_curl_command(headers=dict(response.request.headers))}")

    if SEED is not None:
        run = seed(int(SEED))(run)
    run()


@pytest.mark.timeout(max(300, 12 * EXAMPLES))
def test_fuzz_the_api_from_its_openapi_document(
    api_node: AppNode, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]
) -> None:
    tally = Tally()
    started = time.monotonic()
    with requests.Session() as http:
        document = http.get(f"{api_node.url}/openapi.json").json()
        schema = schemathesis.openapi.from_dict(document)
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) == sum(len(methods) for methods in document["paths"].values())
        for operation in operations:
            _seed(api_node, http)
            tokens = _tokens(api_node, http, 5) if operation.path == "/download/{token}" else []
            _fuzz_operation(api_node, http, operation, tally, tokens)
    fives = sum(n for status, n in tally.statuses.items() if status >= 500)
    with capsys.disabled():
        print(f"\nAPI fuzzing ({request.node.callspec.id}): {tally.sent} requests to {len(operations)} operations "
              f"in {time.monotonic() - started:.0f}s, {fives} answered 5xx; statuses "
              f"{dict(sorted(tally.statuses.items()))}")
    report = "\n\n".join(f"{operation}: {kind}\n{detail}" for (operation, kind), detail in tally.problems.items())
    assert not tally.problems, f"{len(tally.problems)} problems:\n\n{report}"
