"""Dashboard benchmark (issue: dispatch-centre dashboard). Prints one JSON document.

A simulated fleet reports at 1 Hz to the real server (separate processes, embedded
PostgreSQL unless TELEMATICS_DATABASE_URL is set) while a headless Chromium shows the
dashboard. Measured in the browser:

- page load: from navigating to /dashboard (from a blank page) until the live socket is
  up and every vehicle is on the map and in the page's state (several loads);
- alarm latency: probe units raise a collision one at a time; from the moment the
  probe's frame is sent (its arrival at the server, on the same machine) until the row
  appears in the open alarm queue, seen by a MutationObserver in the page;
- responsiveness: long tasks (> 50 ms) on the page's main thread while the fleet streams.

With --screenshots DIR it also saves the live map, the alarm queue, a vehicle page and
the KPI page.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
from playwright.async_api import Page, async_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from ingest import Server, prepare, server_stats  # noqa: E402

from telematics.geo.zones import zones_from_feature_collection  # noqa: E402
from telematics.store import zones as zone_store  # noqa: E402
from telematics.store.database import EMBEDDED_DB, start_embedded  # noqa: E402
from telematics.store.operators import add_operator  # noqa: E402
from telematics.store.sessions import set_password  # noqa: E402
from tests.dashboard.chromium import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from tests.helpers import Unit, event, telemetry  # noqa: E402

USER, PASSWORD = "bench-dispatcher", "bench-password-1"

# Record when each probe vehicle's severe row first appears in the queue.
OBSERVER = """() => {
  window.__seen = {};
  new MutationObserver(() => {
    for (const row of document.querySelectorAll("tr[data-testid=alarm-row].severe")) {
      const link = row.querySelector("a[href^='#vehicle/']");
      const id = link && decodeURIComponent(link.getAttribute("href").slice(9));
      if (id && !(id in window.__seen)) window.__seen[id] = Date.now();
    }
  }).observe(document.querySelector("#alarm-table tbody"), {childList: true, subtree: true});
  window.__long = [];
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) window.__long.push(e.duration);
  }).observe({type: "longtask", buffered: false});
}"""


async def setup_db(db_url: str, total: int, tokens: Path) -> None:
    await prepare(db_url, total, tokens)
    conn = await asyncpg.connect(db_url)
    try:
        doc = json.loads((ROOT / "docs" / "zones-suzhou.geojson").read_text())
        await zone_store.import_zones(conn, zones_from_feature_collection(doc))
        await add_operator(conn, USER, "dispatcher", None)
        await set_password(conn, USER, PASSWORD)
    finally:
        await conn.close()


async def load_time(page: Page, base: str, vehicles: int) -> float:
    """A full load each time (from a blank page, not a hash change), until the socket is
    live, every vehicle is known and the list and map are drawn."""
    await page.goto("about:blank")
    started = time.perf_counter()
    await page.goto(f"{base}/dashboard#fleet")
    await page.wait_for_function(
        "n => document.querySelector('#live-status').textContent === 'live'"
        " && state.vehicles.size >= n && markers.size >= n"
        " && document.querySelectorAll('#vehicle-table tbody tr').length > 0",
        arg=vehicles,
        timeout=60_000,
    )
    return time.perf_counter() - started


async def probe_alarms(page: Page, ws_url: str, probes: list[tuple[str, str]]) -> list[float]:
    await page.goto(page.url.split("#")[0] + "#alarms")
    await page.wait_for_function("document.querySelector('#live-status').textContent === 'live'")
    await page.evaluate(OBSERVER)
    latencies = []
    for vehicle_id, token in probes:
        unit = await Unit.connect(ws_url, token)
        await unit.send(telemetry(1, lat=31.3, lon=120.6, speed_kmh=60.0))
        await unit.ack_reaching(1)
        sent = time.time() * 1000
        await unit.send(event(2, "collision", None))
        seen = await page.wait_for_function(
            "id => window.__seen[id]", arg=vehicle_id, timeout=30_000
        )
        latencies.append(float(await seen.json_value()) - sent)
        await unit.close()
        await asyncio.sleep(1.0)
    return latencies


async def screenshots(page: Page, base: str, out: Path, db_url: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    await page.goto(f"{base}/dashboard#fleet")
    await page.wait_for_timeout(3000)
    await page.screenshot(path=str(out / "live-map.png"))
    await page.goto(f"{base}/dashboard#alarms")
    await page.wait_for_timeout(2000)
    await page.locator("tr[data-testid=alarm-row] button[data-act=detail]").first.click()
    await page.wait_for_timeout(1000)
    await page.screenshot(path=str(out / "alarm-queue.png"))
    conn = await asyncpg.connect(db_url)
    try:
        vehicle = await conn.fetchval(
            """SELECT vehicle_id FROM alarms WHERE active AND tire_pos IS NOT NULL
               ORDER BY severity_rank DESC LIMIT 1"""
        ) or await conn.fetchval(
            "SELECT vehicle_id FROM alarms ORDER BY severity_rank DESC LIMIT 1"
        )
    finally:
        await conn.close()
    await page.goto(f"{base}/dashboard#vehicle/{vehicle}")
    await page.wait_for_timeout(2000)
    await page.screenshot(path=str(out / "vehicle.png"))
    await page.goto(f"{base}/dashboard#kpis")
    await page.wait_for_timeout(2000)
    await page.screenshot(path=str(out / "kpis.png"))


async def measure(args: argparse.Namespace, db_url: str, work: Path) -> dict[str, Any]:
    tokens = work / "tokens.csv"
    await setup_db(db_url, args.vehicles + args.probes, tokens)
    lines = tokens.read_text().splitlines()
    probes = [(line.split(",")[0], line.split(",")[1]) for line in lines[args.vehicles :]]
    server = Server("real", db_url, work, args.workers)
    sim = subprocess.Popen(
        [sys.executable, "-m", "telematics", "simulate", "--url", server.url,
         "--tokens", str(tokens), "--vehicles", str(args.vehicles), "--rate", "1",
         "--duration", str(args.duration), "--connect-rate", "500"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if server_stats(server.port)["connected"] >= args.vehicles // max(args.workers, 1):
                break
            await asyncio.sleep(1)
        await asyncio.sleep(args.warmup)
        base = f"http://127.0.0.1:{server.port}"
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
            )
            page = await browser.new_page(viewport={"width": 1600, "height": 1000})
            await page.goto(f"{base}/login")
            await page.fill("input[name=user]", USER)
            await page.fill("input[name=password]", PASSWORD)
            await page.click("button[type=submit]")
            await page.wait_for_url("**/dashboard")
            loads = [await load_time(page, base, args.vehicles) for _ in range(args.loads)]
            latencies = await probe_alarms(page, server.url, probes)
            long_tasks: list[float] = await page.evaluate("window.__long")
            if args.screenshots:
                await screenshots(page, base, Path(args.screenshots), db_url)
            await browser.close()
    finally:
        sim.terminate()
        sim.wait(timeout=60)
        server.stop()
    ordered = sorted(latencies)
    return {
        "vehicles": args.vehicles,
        "server_workers": args.workers,
        "page_load_s": {
            "first": round(loads[0], 3),
            "median": round(statistics.median(loads), 3),
            "max": round(max(loads), 3),
            "loads": len(loads),
        },
        "severe_alarm_to_row_ms": {
            "count": len(ordered),
            "p50": round(statistics.median(ordered), 1),
            "p95": round(ordered[max(0, int(0.95 * len(ordered)) - 1)], 1),
            "max": round(ordered[-1], 1),
        },
        "long_tasks_during_probes": {
            "count": len(long_tasks),
            "max_ms": round(max(long_tasks, default=0.0), 1),
            "total_ms": round(sum(long_tasks), 1),
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vehicles", type=int, default=2000)
    parser.add_argument("--probes", type=int, default=20, help="severe alarms to time")
    parser.add_argument("--loads", type=int, default=5, help="page loads to time")
    parser.add_argument("--warmup", type=float, default=15.0)
    parser.add_argument("--duration", type=float, default=600.0, help="simulator run limit")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--screenshots", help="save screenshots into this directory")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="telematics-dash-") as tmp:
        work = Path(tmp)
        db_url = os.environ.get("TELEMATICS_DATABASE_URL")
        embedded = None
        if not db_url:
            embedded = start_embedded(work, cleanup_mode="delete")
            db_url = embedded.get_uri(EMBEDDED_DB)
        try:
            print(json.dumps(asyncio.run(measure(args, db_url, work)), indent=2))
        finally:
            if embedded is not None:
                embedded.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
