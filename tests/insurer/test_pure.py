"""Pure parts: signatures, backoff, cursors, scoring, month bounds."""

from __future__ import annotations

import base64
import random
from datetime import UTC, datetime, timedelta

import pytest

from telematics.insurer import cursor, egress, signing
from telematics.insurer.backoff import retry_delay
from telematics.insurer.loss_report import month_bounds
from telematics.insurer.model import InsurerError
from telematics.insurer.scoring import AlarmCount, Exposure, load_weights, score


def test_signature_matches_the_standard_webhooks_reference_vector() -> None:
    # from the Standard Webhooks specification's test vectors
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    sig = signing.signature(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)
    assert sig == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    headers = signing.headers([secret], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)
    signing.verify(secret, headers, body, now=1614265330)
    with pytest.raises(signing.BadSignature):
        signing.verify(secret, headers, body + b" ", now=1614265330)
    with pytest.raises(signing.BadSignature):
        signing.verify(secret, headers, body, now=1614265330 + 301)
    assert len(base64.b64decode(signing.new_secret()[6:])) == 24


def test_backoff_grows_with_jitter_up_to_the_cap() -> None:
    rng = random.Random(1)
    delays = [retry_delay(n, rng=rng).total_seconds() for n in range(1, 15)]
    assert 2.5 <= delays[0] <= 5 and 20 <= delays[3] <= 40
    assert all(1800 <= d <= 3600 for d in delays[-3:])
    # retried until retry_until (3 days): more than 24 hours of attempts
    assert sum(retry_delay(n, rng=rng).total_seconds() for n in range(1, 60)) > 86400


def test_cursor_round_trip_and_garbage() -> None:
    pos = cursor.Position(123456789, 42)
    assert cursor.decode(pos.encode()) == pos
    assert cursor.decode(None) == cursor.START
    for bad in ("garbage", "YzEuLTEuMg", "YzIuMS4y"):
        with pytest.raises(cursor.BadCursor):
            cursor.decode(bad)


def test_score_is_exposure_normalised_and_refused_below_the_minimum() -> None:
    w = load_weights()
    counts = [AlarmCount("fatigue", "moderate", 2), AlarmCount("collision", "severe", 1)]
    result = score(Exposure(km=200, hours=4), counts, w)
    points = 2 * w.weight("fatigue") * 2 + 1 * w.weight("collision") * 4
    assert result["points"] == points
    assert result["per_100km"] == pytest.approx(points / 2)
    assert result["per_hour"] == pytest.approx(points / 4)
    assert result["breakdown"][0]["kind"] == "collision"  # the largest impact first
    assert sum(r["share"] for r in result["breakdown"]) == pytest.approx(1)
    thin = score(Exposure(km=20, hours=4), counts, w)
    assert thin["scored"] is False and thin["per_100km"] is None and thin["reason"]


def test_a_silent_unit_is_in_the_feed_but_not_in_the_driving_score() -> None:
    """Coverage gaps follow routes, not drivers: unit_silent alarms score no points."""
    w = load_weights()
    counts = [AlarmCount("fatigue", "moderate", 1), AlarmCount("unit_silent", "severe", 3)]
    result = score(Exposure(km=200, hours=4), counts, w)
    assert result["points"] == w.weight("fatigue") * 2


def test_month_bounds() -> None:
    assert month_bounds("2026-12") == (
        datetime(2026, 12, 1, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
    )
    assert month_bounds("2026-02")[1] - month_bounds("2026-02")[0] == timedelta(days=28)
    with pytest.raises(InsurerError):
        month_bounds("2026-13")


# -- egress: where webhooks may go ---------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2001:4860:4860::8888", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("192.168.0.10", False),
        ("169.254.169.254", False),  # cloud metadata
        ("::1", False),
        ("fd00::1", False),
        ("224.0.0.1", False),
    ],
)
def test_only_public_addresses_are_webhook_targets(address: str, public: bool) -> None:
    assert egress.is_public(address) is public
    if public:
        egress.check_literal(address)
    else:
        with pytest.raises(egress.BlockedAddress):
            egress.check_literal(address)


async def test_a_name_resolving_to_loopback_is_refused() -> None:
    resolver = egress.PublicOnlyResolver()
    try:
        with pytest.raises(egress.BlockedAddress):
            await resolver.resolve("localhost", 443)
    finally:
        await resolver.close()
