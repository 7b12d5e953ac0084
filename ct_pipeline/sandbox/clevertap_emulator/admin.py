"""The sandbox operator's API under `/__sandbox/`: read what CleverTap received, inject faults.

No authentication: it belongs to whoever runs the sandbox, and is served only where the
emulator itself is bound (127.0.0.1 by default).

- `GET /__sandbox/profiles` (`?identity=`, `?email=`, `?objectId=`, `?offset=`, `?limit=`)
- `GET /__sandbox/events` (`?identity=`, `?name=`)
- `GET /__sandbox/requests` (`?path=`, `?limit=`, `?body=0`): the raw request log, secrets
  redacted from the headers
- `GET /__sandbox/triggers`: external-trigger requests received, one entry per campaign
- `GET /__sandbox/subscriptions`: phone numbers and emails set to Unsubscribe or Resubscribe
- `GET|POST|DELETE /__sandbox/faults`: read, change or clear injected faults
- `POST /__sandbox/reset`: empty account, no faults, no log, counters at zero
- `GET /__sandbox/stats`: requests by endpoint, answers by status, records received
"""

from __future__ import annotations

import json

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ct_pipeline.sandbox.clevertap_emulator.faults import FaultRequest
from ct_pipeline.sandbox.clevertap_emulator.state import EmulatorState

ADMIN_PREFIX = "/__sandbox"


def admin_routes(state: EmulatorState) -> list[Route]:
    """The `/__sandbox/` routes bound to one emulator's state."""

    async def profiles(request: Request) -> JSONResponse:
        query = request.query_params
        try:
            offset = int(query.get("offset", 0))
            limit = int(query["limit"]) if "limit" in query else None
        except ValueError:
            return _bad_request("offset and limit must be whole numbers")
        total, page = state.store.admin_profiles(
            identity=query.get("identity"),
            email=query.get("email"),
            object_id=query.get("objectId"),
            offset=offset,
            limit=limit,
        )
        return JSONResponse({"count": total, "profiles": page})

    async def events(request: Request) -> JSONResponse:
        found = state.store.admin_events(
            identity=request.query_params.get("identity"), name=request.query_params.get("name")
        )
        return JSONResponse({"count": len(found), "events": found})

    async def requests_log(request: Request) -> JSONResponse:
        query = request.query_params
        try:
            limit = int(query["limit"]) if "limit" in query else None
        except ValueError:
            return _bad_request("limit must be a whole number")
        entries = state.traffic.entries(path=query.get("path"), limit=limit)
        with_body = query.get("body", "1") not in ("0", "false")
        views = [entry.as_json(with_body=with_body) for entry in entries]
        return JSONResponse({"count": len(views), "requests": views})

    async def triggers(request: Request) -> JSONResponse:
        found = state.store.triggers()
        return JSONResponse({"count": len(found), "triggers": found})

    async def subscriptions(request: Request) -> JSONResponse:
        found = state.store.subscriptions()
        return JSONResponse({"count": len(found), "subscriptions": found})

    async def faults(request: Request) -> JSONResponse:
        if request.method == "GET":
            return JSONResponse(state.faults.snapshot())
        if request.method == "DELETE":
            state.faults.clear()
            return JSONResponse(state.faults.snapshot())
        try:
            fault_request = FaultRequest.model_validate(json.loads(await request.body() or b"{}"))
        except ValueError as error:
            return _bad_request(_describe(error))
        return JSONResponse(state.faults.update(fault_request))

    async def reset(request: Request) -> JSONResponse:
        state.reset()
        return JSONResponse({"status": "reset"})

    async def stats(request: Request) -> JSONResponse:
        return JSONResponse(state.stats())

    return [
        Route(f"{ADMIN_PREFIX}/profiles", profiles, methods=["GET"]),
        Route(f"{ADMIN_PREFIX}/events", events, methods=["GET"]),
        Route(f"{ADMIN_PREFIX}/requests", requests_log, methods=["GET"]),
        Route(f"{ADMIN_PREFIX}/triggers", triggers, methods=["GET"]),
        Route(f"{ADMIN_PREFIX}/subscriptions", subscriptions, methods=["GET"]),
        Route(f"{ADMIN_PREFIX}/faults", faults, methods=["GET", "POST", "DELETE"]),
        Route(f"{ADMIN_PREFIX}/reset", reset, methods=["POST"]),
        Route(f"{ADMIN_PREFIX}/stats", stats, methods=["GET"]),
    ]


def _bad_request(message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=400)


def _describe(error: ValueError) -> str:
    if isinstance(error, ValidationError):
        problems = [
            f"{'.'.join(str(part) for part in problem['loc'])}: {problem['msg']}"
            for problem in error.errors()
        ]
        return "invalid faults request: " + "; ".join(problems)
    return "the faults request body must be a JSON object"
