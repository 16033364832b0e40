"""The routes of Prefect's API a scenario may name are the installed Prefect's: the table in
``harness/scenario/api_routes.py`` is its server's OpenAPI document, plus the events stream."""

from __future__ import annotations

import re

from harness.scenario.api_routes import EVENTS, OPENAPI_ROUTES, ROUTES


def test_the_route_table_is_the_installed_prefects() -> None:
    from prefect.server.api.server import create_api_app

    spec = create_api_app().openapi()
    starred = {path: re.sub(r"\{[^}]+\}", "*", path) for path in spec["paths"]}
    installed = sorted({f"{method.upper()} {starred[path]}" for path, ops in spec["paths"].items() for method in ops})
    assert sorted(OPENAPI_ROUTES) == installed, (
        "Prefect's API changed: regenerate harness/scenario/api_routes.py from its OpenAPI document\n"
        f"  gone: {sorted(set(OPENAPI_ROUTES) - set(installed))}\n  new: {sorted(set(installed) - set(OPENAPI_ROUTES))}"
    )
    assert EVENTS in ROUTES


def test_the_events_stream_is_a_websocket_route_of_the_server() -> None:
    from prefect.server.api import events

    assert any(getattr(route, "path", "") == "/events/in" for route in events.router.routes)
