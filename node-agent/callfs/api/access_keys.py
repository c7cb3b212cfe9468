"""``/v1/keys``: API keys registered at run time, each confined to a path (:mod:`callfs.access_keys`)."""

from __future__ import annotations

from aiohttp import web

from callfs.access_keys import parse_registration
from callfs.api import render
from callfs.api.keys import NODE, caller
from callfs.api.requests import json_object

ROUTE = "/v1/keys"


def add_routes(app: web.Application) -> None:
    app.router.add_route("POST", ROUTE, register_key)
    app.router.add_route("DELETE", ROUTE + "/{user}", revoke_keys)


async def register_key(request: web.Request) -> web.StreamResponse:
    """Body ``{"user", "key", "scope"}`` (root only): 201 registered, 200 already registered alike; the body is
    ``{"user", "scope", "created"}`` (the key is never echoed). 409 when the key is in use otherwise."""
    registration = parse_registration(await json_object(request))
    record, created = await request.app[NODE].access_keys.register(caller(request), registration)
    body = {"user": record.user, "scope": record.scope, "created": record.created.isoformat()}
    return render.json_response(body, status=201 if created else 200)


async def revoke_keys(request: web.Request) -> web.StreamResponse:
    """Revoke every run-time key of ``{user}`` (root only): 200 ``{"user", "revoked": <count>}`` (0: none)."""
    user = request.match_info["user"]
    revoked = await request.app[NODE].access_keys.revoke(caller(request), user)
    return render.json_response({"user": user, "revoked": revoked})
