"""Every HTTP route of the real app against malformed input: no answer is a 500 and no
handler crashes; under ``/api/`` every refusal is the JSON error shape with a stable code.

The routes come from the running app's router, so a new route is covered without editing
this file (its body cases start from ``{}`` until ``valid_bodies`` gives it a valid body,
which lets the field mutations reach the handler's own validation). Each request carries
the credential its route needs: an admin operator's token under ``/api/v1/``, an insurer
key with every scope under ``/api/v1/insurer/``, a dashboard session cookie elsewhere.
Routes outside ``/api/`` (sign-in forms, pages, static files, health) answer HTML, text
or redirects by design: for them only "no 500" is checked. All cases run against one
server and every failure is reported at once.
"""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import orjson
from aiohttp import web
from yarl import URL

from telematics.dashboard.views import STATIC
from telematics.store.operators import add_operator, new_operator_token
from telematics.store.sessions import set_password, sign_in
from tests.helpers import RunningServer, Unit, add_vehicle, event, iso
from tests.insurer.helpers import insurer_with_policy

# The device endpoint speaks its own frame protocol over a WebSocket; malformed frames
# are the ingest tests' subject (tests/ingest), and its refusals are frames, not HTTP.
SKIPPED = frozenset({"/v1/device"})

SQUARE = {
    "type": "Polygon",
    "coordinates": [
        [[120.60, 31.30], [120.61, 31.30], [120.61, 31.31], [120.60, 31.31], [120.60, 31.30]]
    ],
}

# -- malformed pieces: raw, percent-encoded or JSON text, exactly as they go on the wire --

DEEP_ARRAY = b"[" * 1000 + b"]" * 1000
DEEP_OBJECT = b'{"a":' * 1000 + b"1" + b"}" * 1000
LONG_STRING = b'"' + b"x" * 100_000 + b'"'

#: Whole bodies that are not a JSON object (or not JSON at all).
RAW_BODIES: list[tuple[str, bytes]] = [
    ("not JSON", b"not json"),
    ("truncated JSON", b'{"text": "a'),
    ("unclosed array", b"[1, 2"),
    ("array", b"[]"),
    ("array of objects", b'[{"text": "a"}]'),
    ("string", b'"text"'),
    ("number", b"42"),
    ("null", b"null"),
    ("true", b"true"),
    ("1e309", b"1e309"),
    ("bare NaN", b"NaN"),
    ("NaN field", b'{"text": NaN, "reason": NaN}'),
    ("invalid UTF-8", b"\xff\xfe\x00{"),
    ("invalid UTF-8 in a string", b'{"text": "\xff\xfe", "reason": "\xc3\x28"}'),
    ("unpaired surrogate", b'{"text": "\\ud800", "reason": "\\udc00"}'),
    ("UTF-8 BOM", b'\xef\xbb\xbf{"text": "a"}'),
    ("array 1000 deep", DEEP_ARRAY),
    ("object 1000 deep", DEEP_OBJECT),
    ("array 2000 deep", b"[" * 2000 + b"]" * 2000),
    ("duplicate keys", b'{"text": "a", "text": 1}'),
    ("larger than 1 MiB", b'{"text": "' + b"x" * (2 << 20) + b'"}'),
]

#: JSON values put in place of one field of a valid body.
BAD_VALUES: list[tuple[str, bytes]] = [
    ("string", b'"abc"'),
    ("empty string", b'""'),
    ("blank string", b'"   "'),
    ("1e309", b"1e309"),
    ("2**64", str(2**64).encode()),
    ("2**70", str(2**70).encode()),
    ("-2**70", str(-(2**70)).encode()),
    ("-1", b"-1"),
    ("-1e300", b"-1e300"),
    ("1.5", b"1.5"),
    ("bare NaN", b"NaN"),
    ("bare Infinity", b"Infinity"),
    ("true", b"true"),
    ("null", b"null"),
    ("array", b'[1, "a", null]'),
    ("object", b'{"a": 1}'),
    ("100 KB string", LONG_STRING),
    ("array 1000 deep", DEEP_ARRAY),
    ("object 1000 deep", DEEP_OBJECT),
    ("unpaired surrogate", b'"\\ud800"'),
    ("NUL", b'"a\\u0000b"'),
    ("unicode", '"苏E·🚌"'.encode()),
    ("bad date", b'"2026-13-45T99:99:99Z"'),
    ("date overflowing UTC", b'"9999-12-31T23:59:59-14:00"'),
    ("date underflowing UTC", b'"0001-01-01T00:00:00+14:00"'),
]

#: Form bodies (and broken multipart) for every non-GET route; the dashboard's forms read them.
FORM = "application/x-www-form-urlencoded"
FORM_BODIES: list[tuple[str, str, bytes]] = [
    ("form NUL user", FORM, b"user=%00&password=x"),
    ("form NUL password", FORM, b"user=root&password=a%00b"),
    ("form invalid UTF-8", FORM, b"user=%FF%FE&password=%C3%28"),
    ("form raw invalid UTF-8", FORM, b"\xff\xfe=\xff&user=\xc3\x28"),
    ("form surrogate", FORM, b"user=%ED%A0%80&password=x"),
    ("form 100 KB user", FORM, b"user=" + b"x" * 100_000 + b"&password=x"),
    ("form 100 KB password", FORM, b"user=root&password=" + b"x" * 100_000),
    ("form repeated", FORM, b"user=a&user=b&password=x&password=y"),
    ("form garbage", FORM, b"%%%&&==="),
    ("multipart garbage", "multipart/form-data; boundary=zz", b"--zz\r\ngarbage"),
    ("multipart without boundary", "multipart/form-data", b"--zz\r\n"),
]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


LONG_ID = "x" * 4000  # aiohttp's request line ends at 8190 bytes; past it no app is asked

#: Path parameter values, percent-encoded.
PATH_VALUES: list[str] = [
    "no-such-id",
    "%00",
    "a%00b",
    LONG_ID,
    "%E8%8B%8FE%C2%B7%F0%9F%9A%8C",  # 苏E·🚌
    "%FF%FE",  # not UTF-8
    "%ED%A0%80",  # a UTF-16 surrogate encoded as UTF-8
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "%20",
    "%0A",
    "%25",
    "'%3B--",
    "-1",
    "0",
    "9" * 30,
    "1e309",
    "NaN",
]

#: Query strings, percent-encoded; every GET route gets all of them.
QUERIES: list[str] = [
    "limit=-1",
    "limit=0",
    "limit=abc",
    f"limit={10**30}",
    "limit=1e309",
    "limit=NaN",
    "limit=1.5",
    "limit=",
    "limit=%00",
    "limit=%FF",
    "limit=10&limit=abc",
    "limit=abc&limit=10",
    "days=-1",
    "days=abc",
    f"days={10**30}",
    "window_days=-7",
    "window_days=abc",
    "window_days=7&window_days=x",
    "since=garbage",
    "since=",
    "since=9999-12-31T23:59:59Z",
    "since=9999-12-31T23:59:59-14:00",
    "since=0001-01-01T00:00:00%2B14:00",
    "since=2026-13-45T99:99:99Z",
    "since=2026-01-01T00:00:00",
    "since=%2B275760-09-13T00:00:00Z",
    "since=a&since=b",
    "until=garbage",
    "until=9999-12-31T23:59:59-14:00",
    "until=0001-01-01T00:00:00%2B14:00",
    "since=2030-01-01T00:00:00Z&until=2020-01-01T00:00:00Z",
    "cursor=garbage",
    "cursor=%00",
    f"cursor={_b64(b'c1.-1.-1')}",
    f"cursor={_b64(b'c1.' + b'9' * 30 + b'.1')}",
    f"cursor={_b64(b'c2.1.1')}",
    "cursor=" + _b64(b"\xff\xfe"),
    "cursor=%F0%9F%9A%8C",
    "severity=catastrophic",
    "severity=",
    "severity=,,",
    "severity=minor,bogus",
    "severity=minor&severity=bogus",
    "min_severity=bogus",
    "kind=bogus",
    "kind=%00",
    "ack=bogus",
    "include_cleared_unacked=maybe",
    "status=bogus",
    "status=%00",
    "format=xml",
    "format=csv",
    "fleet=F1&month=2026-01&format=csv",
    "fleet=F1&month=%D9%A2%D9%A0%D9%A2%D9%A6-01&format=csv",  # Arabic-Indic digits match \d
    "month=9999-12",
    "month=0000-01",
    "month=2026-00",
    "month=abc",
    "fleet=F1&month=9999-12",
    "fleet=F1&month=0000-01",
    "fleet=F1&month=2026-13",
    "fleet=%00&month=2026-01",
    f"fleet={LONG_ID}&month=2026-01",
    "fleet=%E8%8B%8F",
    "fleet=%00",
    "vehicle=%00",
    f"vehicle={LONG_ID}",
    "vehicle=%FF",
    "error=%00",
    "%00=%00",
    "%FF",
]

#: Credentials gone wrong, on every route.
AUTH_CASES: list[tuple[str, dict[str, str]]] = [
    ("empty bearer", {"Authorization": "Bearer "}),
    ("long bearer", {"Authorization": "Bearer " + LONG_ID}),
    ("basic auth", {"Authorization": "Basic Zm9vOmJhcg=="}),
    ("bearer with spaces", {"Authorization": "Bearer a b c"}),
    ("NUL session cookie", {"Cookie": 'tm_session="\\000"'}),
    ("long session cookie", {"Cookie": "tm_session=" + LONG_ID}),
]


#: Real ids by path parameter name, so that requests get past the lookup to the handler's
#: own checks; a parameter of a new route not named here gets this:
OTHER_ID = "x"


def valid_bodies(vehicle_id: str) -> dict[tuple[str, str], dict[str, Any]]:
    occurred = iso(datetime.now(UTC) - timedelta(seconds=5))
    zone = {
        "type": "Feature",
        "properties": {"kind": "school", "name": "School", "speed_limit_kmh": 30, "dwell_s": 60},
        "geometry": SQUARE,
    }
    return {
        ("PUT", "/api/v1/zones/{zone_id}"): zone,
        ("POST", "/api/v1/alarms/{alarm_id}/assign"): {"assignee": "li"},
        ("POST", "/api/v1/alarms/{alarm_id}/comment"): {"text": "called the driver"},
        ("POST", "/api/v1/alarms/{alarm_id}/clear"): {"reason": "done"},
        ("POST", "/api/v1/insurer/claims"): {
            "vehicle_id": vehicle_id,
            "occurred_at": occurred,
            "lat": 31.3,
            "lon": 120.6,
            "place": "G2",
            "description": "rear-ended",
            "reference": "R-1",
        },
        ("POST", "/api/v1/insurer/claims/{claim_id}/outcome"): {
            "outcome": "paid",
            "at_fault": False,
            "loss_amount": 1200.5,
            "currency": "CNY",
            "injuries": False,
        },
        ("POST", "/api/v1/insurer/webhooks"): {
            # no collisions happen here, so nothing is ever delivered to this address
            "url": "https://hooks.example.com/telematics",
            "event_types": ["collision.detected"],
            "description": "claims desk",
        },
        ("POST", "/api/v1/insurer/webhooks/{endpoint_id}/rotate-secret"): {"keep_previous_s": 60},
    }


#: Inputs that once got a 500, and the refusal naming the field each gets now:
#: method, path, body, then "status code" and the start of the message.
CLAIM_IN_9999 = (
    b'{"vehicle_id": "SU-A1", "description": "x", "occurred_at": "9999-12-31T23:59-14:00"}'
)
NAMED: list[tuple[str, str, bytes | None, str]] = [
    ("GET", "/api/v1/alarms?vehicle=%00", None, "422 invalid_field path or query:"),
    ("GET", "/api/v1/zones/a%00b", None, "422 invalid_field path or query:"),
    (
        "POST",
        "/api/v1/alarms/{alarm_id}/comment",
        b'{"text": "a\\u0000"}',
        "422 invalid_field text:",
    ),
    (
        "PUT",
        "/api/v1/zones/{zone_id}",
        b'{"properties": {"name": "\\u0000"}}',
        "422 invalid_field properties.name:",
    ),
    (
        "PUT",
        "/api/v1/zones/{zone_id}",
        b'{"properties": {"kind": ' + DEEP_ARRAY + b"}}",
        "400 bad_json body: nested deeper",
    ),
    ("POST", "/api/v1/insurer/claims", DEEP_OBJECT, "400 bad_json body: nested deeper"),
    ("POST", "/api/v1/insurer/claims", CLAIM_IN_9999, "422 invalid_field occurred_at:"),
    (
        "GET",
        "/api/v1/insurer/feed?since=9999-12-31T23:59:59-14:00",
        None,
        "422 invalid_field since:",
    ),
    (
        "GET",
        "/api/v1/insurer/feed?until=0001-01-01T00:00:00%2B14:00",
        None,
        "422 invalid_field until:",
    ),
    (
        "GET",
        "/api/v1/insurer/reports/loss-control?fleet=F1&month=9999-12",
        None,
        "422 invalid_field month:",
    ),
    (
        "GET",
        "/api/v1/insurer/reports/loss-control?fleet=F1&month=0000-01",
        None,
        "422 invalid_field month:",
    ),
]


# -- cases ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    method: str
    template: str  # "/api/v1/alarms/{alarm_id}"
    params: tuple[str, ...]

    @property
    def api(self) -> bool:
        return self.template.startswith("/api/")

    def path(self, ids: dict[str, str], **given: str) -> str:
        path = self.template
        for name in self.params:
            path = path.replace("{" + name + "}", given.get(name, ids.get(name, OTHER_ID)))
        return path


@dataclass(frozen=True)
class Case:
    route: Route
    what: str
    path: str  # percent-encoded, with the query
    body: bytes | None = None
    headers: tuple[tuple[str, str], ...] = ()


def app_routes(app: web.Application) -> list[Route]:
    routes: list[Route] = []
    for route in app.router.routes():
        if route.method == "HEAD":
            continue  # aiohttp adds one per GET: the same handler, and no body to check
        info = route.resource.get_info() if route.resource else {}
        if "prefix" in info:  # aiohttp's static file server
            template = str(info["prefix"]).rstrip("/") + "/{filename}"
        else:
            template = str(info.get("formatter", info.get("path", "")))
        if template in SKIPPED:
            continue
        params = tuple(p.split("}")[0] for p in template.split("{")[1:])
        routes.append(Route(route.method, template, params))
    return routes


def _json_at(body: dict[str, Any], where: tuple[str | int, ...], raw: bytes) -> bytes:
    """``body`` as JSON text with the value at ``where`` replaced by the raw JSON ``raw``."""
    marker = "@@malformed@@"
    copy = orjson.loads(orjson.dumps(body))
    target = copy
    for step in where[:-1]:
        target = target[step]
    target[where[-1]] = marker
    return orjson.dumps(copy).replace(orjson.dumps(marker), raw)


def _positions(value: Any, where: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    """Every key of every object, and the first item of every array, in ``value``."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*where, key)
            yield from _positions(item, (*where, key))
    elif isinstance(value, list) and value:
        yield (*where, 0)
        yield from _positions(value[0], (*where, 0))


def cases_for(
    route: Route, ids: dict[str, str], bodies: dict[tuple[str, str], dict[str, Any]]
) -> list[Case]:
    path = route.path(ids)
    cases: list[Case] = []
    base = bodies.get((route.method, route.template), {})
    base_raw = orjson.dumps(base) if route.method != "GET" else None
    for name in route.params:
        for value in PATH_VALUES:
            cases.append(
                Case(route, f"{{{name}}}={value[:40]}", route.path(ids, **{name: value}), base_raw)
            )
    for label, headers in AUTH_CASES:
        cases.append(Case(route, label, path, base_raw, tuple(headers.items())))
    if route.method == "GET":
        cases.extend(Case(route, f"?{q[:60]}", f"{path}?{q}") for q in QUERIES)
        return cases
    cases.extend(Case(route, f"body: {label}", path, raw) for label, raw in RAW_BODIES)
    for label, content_type, raw in FORM_BODIES:
        cases.append(Case(route, label, path, raw, (("Content-Type", content_type),)))
    for where in _positions(base):
        dotted = ".".join(map(str, where))
        for label, raw in BAD_VALUES:
            cases.append(Case(route, f"{dotted}: {label}", path, _json_at(base, where, raw)))
    return cases


# -- set-up and checks ---------------------------------------------------------------------


@dataclass
class Setup:
    ids: dict[str, str]
    bodies: dict[tuple[str, str], dict[str, Any]]
    credentials: dict[str, str]  # "operator", "insurer": Authorization; "cookie": Cookie


async def set_up(server: RunningServer, db: asyncpg.Connection) -> Setup:
    """An admin operator (token and dashboard session), an insurer key with every scope,
    and an alarm, a zone, a claim and a webhook endpoint to aim at."""
    await add_operator(db, "root", "admin", None)
    token = await new_operator_token(db, "root")
    await set_password(db, "root", "correct horse")
    session = await sign_in(db, "root", "correct horse", datetime.now(UTC))
    key = await insurer_with_policy(db, "ins-a", fleet="F1")
    unit = await Unit.connect(server.ws_url, await add_vehicle(server.db_url, "SU-A1", fleet="F1"))
    await unit.send(event(1, "fatigue", 2))
    await unit.committed_intervention()
    await unit.close()
    setup = Setup(
        {
            "alarm_id": await db.fetchval("SELECT id FROM alarms WHERE vehicle_id = 'SU-A1'"),
            "vehicle_id": "SU-A1",
            "driver_id": "D-0117",
            "zone_id": "school-1",
            "delivery_id": "1",  # none exists; redelivering reads no body to check
            "filename": "app.js",
        },
        valid_bodies("SU-A1"),
        {
            "operator": f"Bearer {token}",
            "insurer": f"Bearer {key}",
            "cookie": f"tm_session={session.id}",
        },
    )
    assert (STATIC / setup.ids["filename"]).is_file()

    async def create(template: str, credential: str) -> dict[str, Any]:
        method = "PUT" if "{" in template else "POST"
        url = server.http_url + template.format(**setup.ids)
        body = setup.bodies[(method, template)]
        headers = {"Authorization": setup.credentials[credential], "Idempotency-Key": "setup"}
        async with http.request(method, url, json=body, headers=headers) as resp:
            made: dict[str, Any] = await resp.json()
            assert resp.status == 201, made
            return made

    async with aiohttp.ClientSession() as http:
        await create("/api/v1/zones/{zone_id}", "operator")
        claim = await create("/api/v1/insurer/claims", "insurer")
        endpoint = await create("/api/v1/insurer/webhooks", "insurer")
    setup.ids["claim_id"] = claim["claim"]["id"]
    setup.ids["endpoint_id"] = endpoint["endpoint"]["id"]
    return setup


def headers_for(case: Case, credentials: dict[str, str], n: int) -> dict[str, str]:
    """The route's credential, unless the case brings its own."""
    headers: dict[str, str] = {"Content-Type": "application/json"}
    template = case.route.template
    if template.startswith("/api/v1/insurer"):
        headers["Authorization"] = credentials["insurer"]
        headers["Idempotency-Key"] = f"case-{n}"  # each case its own claim request
    elif template.startswith("/api/"):
        headers["Authorization"] = credentials["operator"]
    else:
        headers["Cookie"] = credentials["cookie"]
    overrides = dict(case.headers)
    if "Cookie" in overrides:
        headers.pop("Authorization", None)  # so the cookie is what authenticates
    headers.update(overrides)
    return headers


async def problem(resp: aiohttp.ClientResponse, case: Case) -> str | None:
    """What is wrong with the answer to ``case``, if anything."""
    data = await resp.read()
    if resp.status >= 500:
        return f"{resp.status}: {data[:200]!r}"
    if not case.route.api or resp.status < 400:
        return None  # HTML pages, redirects and successes: only "no 500" applies
    try:
        error = orjson.loads(data)["error"]
        code, message = error["code"], error["message"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return f"{resp.status} without the JSON error shape: {data[:200]!r}"
    if not (isinstance(code, str) and code and isinstance(message, str) and message):
        return f"{resp.status} with an empty code or message: {data[:200]!r}"
    return None


async def send(
    http: aiohttp.ClientSession, base: str, case: Case, headers: dict[str, str]
) -> str | None:
    """Send ``case``; what is wrong with the answer, if anything."""
    try:
        async with http.request(
            case.route.method,
            URL(base + case.path, encoded=True),  # sent as written: %00, %FF …
            # a file-like body: aiohttp warns about sending large raw bytes
            data=None if case.body is None else io.BytesIO(case.body),
            headers=headers,
            allow_redirects=False,
        ) as resp:
            return await problem(resp, case)
    except aiohttp.ClientError as exc:  # the server dropped the connection
        return f"no answer: {exc!r}"


async def test_no_route_answers_500_to_malformed_input(
    server: RunningServer, db: asyncpg.Connection
) -> None:
    setup = await set_up(server, db)
    routes = app_routes(server.runner.app)
    # Deleting last keeps the zone and the endpoint alive for the other routes' cases.
    routes.sort(key=lambda r: r.method == "DELETE")
    cases = list(enumerate(c for r in routes for c in cases_for(r, setup.ids, setup.bodies)))
    gets = [(n, c) for n, c in cases if c.route.method == "GET"]
    changes = [(n, c) for n, c in cases if c.route.method != "GET"]
    limit = asyncio.Semaphore(8)

    async def check(n: int, case: Case) -> tuple[int, Case, str | None]:
        async with limit:
            headers = headers_for(case, setup.credentials, n)
            return n, case, await send(http, server.http_url, case, headers)

    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        # Reads change nothing, so they go eight at a time; changes one by one, in order.
        results = await asyncio.gather(*(check(n, c) for n, c in gets))
        results += [await check(n, c) for n, c in changes]
        failures = [
            f"{c.route.method} {c.route.template} [{c.what}]: {found}"
            for _, c, found in sorted(results, key=lambda r: r[0])
            if found
        ]
        for method, path, body, expected in NAMED:
            url = URL(server.http_url + path.format(**setup.ids), encoded=True)
            auth = setup.credentials["insurer" if "/insurer/" in path else "operator"]
            headers = {"Authorization": auth, "Idempotency-Key": "named"}
            async with http.request(method, url, data=body, headers=headers) as resp:
                error = (await resp.json())["error"]
            answer = f"{resp.status} {error['code']} {error['message']}"
            if not answer.startswith(expected):
                failures.append(f"{method} {path}: {answer[:200]!r}, not {expected!r}")
        async with http.get(server.http_url + "/healthz") as resp:
            assert resp.status == 200, "the server no longer answers"
    assert len(routes) >= 40, routes  # the router was really enumerated
    assert not failures, f"{len(failures)} of {len(cases)} cases failed:\n" + "\n".join(failures)
