"""The dashboard in a real browser against a real server and PostgreSQL: sign in, see a
vehicle move, get a severe alarm live, acknowledge it, see the audit entry; a dispatcher
of fleet A never sees fleet B, on the page or through the JSON endpoints."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from playwright.async_api import Browser, Page, WebSocketRoute, expect

from telematics.store import registry
from telematics.store.operators import add_operator
from telematics.store.sessions import set_password
from tests.helpers import (
    Clock,
    RunningServer,
    Unit,
    add_vehicle,
    event,
    start_server,
    telemetry,
)
from tests.models import server_grading_by, small_model

PASSWORD = "dispatch-centre-1"


async def add_user(db: asyncpg.Connection, user: str, role: str, fleets: list[str] | None) -> None:
    await add_operator(db, user, role, fleets)
    await set_password(db, user, PASSWORD)


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1400, "height": 900})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    await context.close()
    assert errors == [], errors  # no JavaScript error on any page


async def sign_in(page: Page, server: RunningServer, user: str) -> None:
    await page.goto(f"{server.http_url}/dashboard")
    assert page.url.endswith("/login")  # no session: the sign-in form
    await page.fill("input[name=user]", user)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url("**/dashboard")
    await expect(page.get_by_test_id("live-status")).to_have_text("live")


async def test_wrong_password_is_refused(
    server: RunningServer, db: asyncpg.Connection, page: Page
) -> None:
    await add_user(db, "wang", "dispatcher", None)
    await page.goto(f"{server.http_url}/login")
    await page.fill("input[name=user]", "wang")
    await page.fill("input[name=password]", "not-the-password")
    await page.click("button[type=submit]")
    await expect(page.get_by_role("alert")).to_have_text("Wrong user or password.")
    assert "tm_session" not in {c["name"] for c in await page.context.cookies()}


async def test_dispatcher_sees_the_fleet_live_and_works_a_severe_alarm(
    server: RunningServer, db: asyncpg.Connection, page: Page
) -> None:
    await add_vehicle(server.db_url, "A-1", fleet="FA")
    token_b = await add_vehicle(server.db_url, "B-1", fleet="FB")
    token_a = await add_vehicle(server.db_url, "A-2", fleet="FA")
    await add_user(db, "disp-a", "dispatcher", ["FA"])
    await sign_in(page, server, "disp-a")

    # The session cookie is HttpOnly, SameSite=Strict; state changes need the CSRF token.
    cookie = next(c for c in await page.context.cookies() if c["name"] == "tm_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert "tm_session" not in await page.evaluate("document.cookie")
    status = await page.evaluate(
        "fetch('/api/v1/alarms/x/acknowledge', {method: 'POST'}).then(r => r.status)"
    )
    assert status == 403

    unit_a, unit_b = (
        await Unit.connect(server.ws_url, token_a),
        await Unit.connect(server.ws_url, token_b),
    )
    now = datetime.now(UTC)
    await unit_a.send(
        telemetry(1, ts=now - timedelta(seconds=2), lat=31.30, lon=120.60, speed_kmh=40.0)
    )
    await unit_b.send(
        telemetry(1, ts=now - timedelta(seconds=2), lat=31.35, lon=120.65, speed_kmh=50.0)
    )
    row = page.locator("#vehicle-table tbody tr[data-vehicle='A-2']")
    await expect(row.get_by_test_id("speed")).to_have_text("40", timeout=10_000)
    first = await page.evaluate("markers.get('A-2').getLatLng()")
    await unit_a.send(telemetry(2, ts=now, lat=31.31, lon=120.61, speed_kmh=72.0))
    await expect(row.get_by_test_id("speed")).to_have_text("72", timeout=10_000)
    moved = await page.evaluate("markers.get('A-2').getLatLng()")
    assert (moved["lat"], moved["lng"]) != (first["lat"], first["lng"])  # it moved on the map
    assert abs(moved["lat"] - 31.31) < 1e-9

    # A severe alarm arrives while the queue is open, without a reload.
    await page.click("a[data-tab=alarms]")
    await unit_a.send(event(3, "collision", None))
    await unit_b.send(event(2, "collision", None))
    severe = page.locator("tr[data-testid=alarm-row].severe")
    await expect(severe).to_have_count(1, timeout=10_000)
    await expect(severe.locator("a[href='#vehicle/A-2']")).to_have_count(1)
    await expect(severe).to_contain_text("collision")
    await unit_a.committed_intervention()
    await expect(severe.locator(".badge")).to_have_count(1, timeout=10_000)  # in the cab

    await severe.locator("button[data-act=acknowledge]").click()
    await expect(severe).to_contain_text("ACTIVE_ACK")
    audit = page.get_by_test_id("audit")
    await expect(audit.get_by_test_id("audit-action")).to_contain_text(["opened", "acknowledged"])
    await expect(audit).to_contain_text("disp-a")
    assert await db.fetchval("SELECT acked_by FROM alarms WHERE vehicle_id = 'A-2'") == "disp-a"

    # Fleet B never shows: not on the map, the list, the queue, nor through the API.
    assert await page.evaluate("markers.has('B-1')") is False
    assert await page.locator("tr[data-vehicle='B-1']").count() == 0
    await expect(page.locator("tr[data-testid=alarm-row]")).to_have_count(1)
    b_alarm = await db.fetchval("SELECT id FROM alarms WHERE vehicle_id = 'B-1'")
    assert b_alarm is not None
    for path in ("/api/v1/vehicles/B-1", f"/api/v1/alarms/{b_alarm}"):
        assert await page.evaluate(f"fetch('{path}').then(r => r.status)") == 404
    listed = await page.evaluate("fetch('/api/v1/vehicles').then(r => r.json())")
    assert [v["id"] for v in listed["vehicles"]] == ["A-1", "A-2"]
    alarms = await page.evaluate("fetch('/api/v1/alarms?fleet=FB').then(r => r.json())")
    assert alarms["alarms"] == []
    await unit_a.close()
    await unit_b.close()


async def test_a_silent_unit_is_queued_live_under_a_readable_kind(
    db_url: str, db: asyncpg.Connection, page: Page
) -> None:
    clock = Clock()
    server = await start_server(db_url, clock=clock)
    try:
        token = await add_vehicle(db_url, "S-1", "hazmat", fleet="FA")
        await add_vehicle(db_url, "S-2", fleet="FA")
        await add_user(db, "disp", "dispatcher", None)
        await sign_in(page, server, "disp")
        await page.click("a[data-tab=alarms]")
        unit = await Unit.connect(server.ws_url, token)
        await unit.send(telemetry(1, ts=clock(), speed_kmh=87.0))
        await unit.send(event(2, "smoking", 1))  # a second kind, for the filter
        await unit.ack_reaching(2)
        await unit.close()
        clock.advance(301)
        await server.hub.alarm_tick()
        rows = page.locator("tr[data-testid=alarm-row]")
        await expect(rows).to_have_count(2, timeout=10_000)
        silent = page.locator("tr[data-testid=alarm-row].severe")
        await expect(silent).to_contain_text("unit silent (no data)")
        await expect(silent).to_contain_text("unit silent 5 min, last seen at 87 km/h")
        await page.select_option("#f-kind", label="unit silent (no data)")
        await expect(rows).to_have_count(1)
        await expect(rows).to_have_class(re.compile("severe"))
    finally:
        await server.stop()


async def test_views_hidden_while_the_fleet_moves_are_current_when_shown(
    server: RunningServer, db: asyncpg.Connection, page: Page
) -> None:
    """The page draws only the view on screen; the other catches up when shown."""
    # markup in the plate is shown as text
    ((_, token),) = await registry.add_vehicles(
        db, [registry.NewVehicle('V-<b>&"1', "FA", "coach", '<i>苏E&"1')]
    )
    await add_user(db, "disp", "dispatcher", None)
    await sign_in(page, server, "disp")
    unit = await Unit.connect(server.ws_url, token)
    now = datetime.now(UTC)
    await unit.send(
        telemetry(1, ts=now - timedelta(seconds=2), lat=31.30, lon=120.60, speed_kmh=40)
    )
    row = page.locator("#vehicle-table tbody tr").first
    await expect(row.get_by_test_id("speed")).to_have_text("40", timeout=10_000)

    # On the queue: a new fix and an alarm arrive; the queue shows the alarm at once.
    await page.click("a[data-tab=alarms]")
    await unit.send(telemetry(2, ts=now, lat=31.31, lon=120.61, speed_kmh=72.0))
    await unit.send(event(3, "collision", None))
    severe = page.locator("tr[data-testid=alarm-row].severe")
    await expect(severe).to_have_count(1, timeout=10_000)
    await expect(severe.locator("a")).to_have_text('<i>苏E&"1')
    await expect(page.locator("#alarm-table i, #alarm-table b")).to_have_count(0)
    await page.wait_for_function("state.vehicles.get('V-<b>&\"1').speed_kmh === 72", timeout=10_000)

    # Back on the fleet: the list and the map show the fix that came while hidden.
    await page.click("a[data-tab=fleet]")
    await expect(row.get_by_test_id("speed")).to_have_text("72", timeout=5_000)
    moved = await page.evaluate("markers.get('V-<b>&\"1').getLatLng()")
    assert abs(moved["lat"] - 31.31) < 1e-9 and abs(moved["lng"] - 120.61) < 1e-9

    # An alarm raised while the queue is hidden counts in the tab at once, rows when shown.
    await unit.send(event(4, "smoking", 1))
    await expect(page.locator("#queue-count")).to_have_text("2", timeout=10_000)
    await page.click("a[data-tab=alarms]")
    await expect(page.locator("tr[data-testid=alarm-row]")).to_have_count(2)
    await unit.close()


async def test_vehicle_page_and_kpis(
    server: RunningServer, db: asyncpg.Connection, page: Page
) -> None:
    token = await add_vehicle(server.db_url, "C-1", fleet="FC")
    await add_user(db, "boss", "safety_manager", None)
    unit = await Unit.connect(server.ws_url, token)
    now = datetime.now(UTC)
    layout = await db.fetchval("SELECT tire_layout FROM vehicles WHERE id = 'C-1'")
    tires = [{"pos": p, "kpa": 850, "temp_c": 40.0} for p in layout]
    tires[0]["temp_c"] = 88.0  # hot: a moderate tire alarm
    await unit.send(
        telemetry(1, ts=now - timedelta(seconds=60), lat=31.30, lon=120.60, tires=tires)
    )
    await unit.send(telemetry(2, ts=now, lat=31.301, lon=120.601, speed_kmh=55.0))
    await unit.send(event(3, "fatigue", 2))
    await unit.ack_reaching(3)
    await sign_in(page, server, "boss")

    await page.goto(f"{server.http_url}/dashboard#vehicle/C-1")
    tire = page.get_by_test_id("tire")
    await expect(tire).to_have_count(len(layout))
    hot = page.locator(f".tire[data-pos='{layout[0]}']")
    await expect(hot).to_have_class("tire moderate")
    await expect(hot).to_contain_text("88 °C")
    await expect(hot).to_contain_text("tire_temp_high")
    await expect(page.locator("#vehicle-alarms")).to_contain_text("fatigue L2")
    await expect(page.locator("#vehicle-interventions")).to_contain_text("voice_alert")
    assert await page.evaluate("trackLayer.getLatLngs().length") == 2  # the last hour's track

    await page.click("a[data-tab=kpis]")
    await expect(page.get_by_test_id("delivery")).to_contain_text("issued")
    assert await page.evaluate("Object.keys(charts).length") == 6
    split = await page.evaluate("charts['chart-split'].data.datasets[1].data")
    assert split == [85.35, 14.56, 0.09]
    await unit.close()


async def test_the_page_sees_vehicles_served_by_another_worker(
    server: RunningServer, db_url: str, db: asyncpg.Connection, page: Page
) -> None:
    """Two server processes' worth of apps on one database: the browser on one, the unit
    on the other; positions and a severe alarm still reach the page."""
    other = await start_server(db_url)
    try:
        token = await add_vehicle(server.db_url, "W-1", fleet="FW")
        await add_user(db, "wang", "dispatcher", ["FW"])
        await sign_in(page, server, "wang")
        unit = await Unit.connect(other.ws_url, token)
        await unit.send(telemetry(1, lat=31.30, lon=120.60, speed_kmh=33.0))
        row = page.locator("#vehicle-table tbody tr[data-vehicle='W-1']")
        await expect(row.get_by_test_id("speed")).to_have_text("33", timeout=10_000)
        await page.click("a[data-tab=alarms]")
        await unit.send(event(2, "rollover", None))
        await expect(page.locator("tr[data-testid=alarm-row].severe")).to_have_count(
            1, timeout=10_000
        )
        await unit.close()
    finally:
        await other.stop()


async def test_a_model_graded_alarm_shows_its_probability_and_factors(
    db_url: str, db: asyncpg.Connection, page: Page, tmp_path: Path
) -> None:
    async with server_grading_by(db_url, tmp_path / "models", small_model()) as (
        server,
        version,
    ):
        token = await add_vehicle(server.db_url, "A-9", "hazmat", fleet="FA")
        await add_user(db, "safety", "safety_manager", None)
        await sign_in(page, server, "safety")
        await page.click("a[data-tab=alarms]")
        unit = await Unit.connect(server.ws_url, token)
        await unit.send(event(1, "collision", None, speed_kmh=80.0))
        await unit.committed_intervention()
        row = page.locator("tr[data-testid=alarm-row].severe")
        grade = row.get_by_test_id("model-grade")
        await expect(grade).to_contain_text("P(collision, 30 min)", timeout=10_000)
        assert await grade.get_attribute("title") == f"severity model {version}"
        stored = await db.fetchrow("SELECT probability, factors FROM alarms")
        assert f"{100 * stored['probability']:.1f}"[:3] in (await grade.inner_text())
        for factor in stored["factors"] or []:
            await expect(grade).to_contain_text(factor)
        await row.locator("button[data-act=detail]").click()
        await expect(page.locator("#alarm-detail")).to_contain_text(f"graded by model {version}")
        await page.goto(f"{server.http_url}/dashboard#vehicle/A-9")
        await expect(page.locator("#vehicle-alarms").get_by_test_id("model-grade")).to_have_count(1)
        await unit.close()


async def test_a_live_link_that_goes_silent_is_replaced_not_trusted(
    db_url: str, db: asyncpg.Connection, page: Page
) -> None:
    """A proxy or NAT can drop the live socket without closing it: no error, no close,
    nothing arrives. The page must notice (its pings go unanswered), say so, and connect
    again, instead of showing a frozen fleet as live."""
    server = await start_server(db_url, live_ping_s=0.5)
    try:
        token = await add_vehicle(server.db_url, "A-1", fleet="FA")
        await add_user(db, "disp", "dispatcher", None)
        links: list[tuple[WebSocketRoute, WebSocketRoute]] = []

        def route(page_side: WebSocketRoute) -> None:
            # forwards both ways until handlers replace the forwarding
            links.append((page_side, page_side.connect_to_server()))

        await page.route_web_socket("**/api/v1/live", route)
        await sign_in(page, server, "disp")
        assert len(links) == 1

        # The link goes silent both ways, still open.
        for side in links[0]:
            side.on_message(lambda _message: None)
        unit = await Unit.connect(server.ws_url, token)
        await unit.send(telemetry(1, lat=31.30, lon=120.60, speed_kmh=40.0))
        await unit.ack_reaching(1)

        # Within about two ping intervals a new link brings the fix.
        row = page.locator("#vehicle-table tbody tr[data-vehicle='A-1']")
        await expect(row.get_by_test_id("speed")).to_have_text("40", timeout=10_000)
        assert len(links) == 2
        await expect(page.get_by_test_id("live-status")).to_have_text("live")
        await unit.close()
    finally:
        await server.stop()
