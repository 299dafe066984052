"""What the cab says: the message of an intervention for each kind and severity.

Which grades get a cab alert, a dispatcher task or an escalation is the interventions
policy's business (``escalation.py`` and ``escalation.json``).
"""

from __future__ import annotations

from dataclasses import dataclass

from telematics.classify.alarms import SEVERITY_RANK
from telematics.errors import UsageError


@dataclass(frozen=True)
class InterventionSpec:
    action: str  # "voice_alert" or "display" (protocol v1 actions)
    message: str  # what the cab says or shows


# kind → (what was detected, advice when general, when moderate, when severe).
# "{tire}" becomes "tire 2LO" when the position is known. Short: it is read out by TTS.
_MESSAGES: dict[str, tuple[str, str, str, str]] = {
    "fatigue": (
        "fatigue",
        "Plan a break soon.",
        "Take a break at the next rest area.",
        "Pull over at the next safe place.",
    ),
    "yawning": (
        "frequent yawning",
        "Plan a break soon.",
        "Take a break at the next rest area.",
        "Pull over at the next safe place.",
    ),
    "phone_call": (
        "phone use",
        "Put the phone away.",
        "Put the phone away now.",
        "Put the phone away now and pull over if you must call.",
    ),
    "smoking": (
        "smoking",
        "Please do not smoke while driving.",
        "Stop smoking now.",
        "Stop smoking now.",
    ),
    "distraction": (
        "distraction",
        "Keep your eyes on the road.",
        "Eyes on the road now.",
        "Eyes on the road now.",
    ),
    "driver_absent": (
        "no driver at the wheel",
        "Check the driver camera.",
        "Return to the driving position.",
        "Return to the driving position now.",
    ),
    "camera_blocked": (
        "driver camera blocked",
        "Clear the driver camera.",
        "Clear the driver camera.",
        "Clear the driver camera.",
    ),
    "seatbelt_off": (
        "seat belt unfastened",
        "Fasten your seat belt.",
        "Fasten your seat belt now.",
        "Fasten your seat belt now.",
    ),
    "forward_collision": (
        "forward collision risk",
        "Keep a safe distance.",
        "Brake and increase your distance.",
        "Brake now.",
    ),
    "pedestrian_collision": (
        "pedestrian ahead",
        "Watch for pedestrians.",
        "Slow down, pedestrian ahead.",
        "Brake now.",
    ),
    "lane_departure": (
        "lane departure",
        "Keep to your lane.",
        "Keep to your lane and take a break if tired.",
        "Keep to your lane and pull over at the next safe place.",
    ),
    "headway_too_close": (
        "following too closely",
        "Keep a safe distance.",
        "Increase your distance now.",
        "Increase your distance now.",
    ),
    "frequent_lane_change": (
        "frequent lane changes",
        "Stay in lane.",
        "Stay in lane and drive steadily.",
        "Stay in lane and drive steadily.",
    ),
    "road_sign_overspeed": (
        "speeding over the posted limit",
        "Keep to the speed limit.",
        "Slow down to the speed limit.",
        "Slow down now.",
    ),
    "obstacle": (
        "obstacle ahead",
        "Watch the road ahead.",
        "Slow down, obstacle ahead.",
        "Brake now.",
    ),
    "blind_spot_left": (
        "vehicle in left blind spot",
        "Check left before turning.",
        "Check left before turning.",
        "Do not move left.",
    ),
    "blind_spot_right": (
        "vehicle in right blind spot",
        "Check right before turning.",
        "Check right before turning.",
        "Do not move right.",
    ),
    "blind_spot_rear": (
        "object behind the vehicle",
        "Check behind before reversing.",
        "Check behind before reversing.",
        "Stop reversing.",
    ),
    "harsh_brake": (
        "harsh braking",
        "Brake smoothly and keep your distance.",
        "Brake smoothly and keep your distance.",
        "Slow down and drive smoothly.",
    ),
    "harsh_accel": (
        "harsh acceleration",
        "Accelerate smoothly.",
        "Accelerate smoothly.",
        "Drive smoothly.",
    ),
    "harsh_turn": (
        "harsh cornering",
        "Slow down before bends.",
        "Slow down before bends.",
        "Slow down now.",
    ),
    "overspeed": (
        "overspeed",
        "Keep to the speed limit.",
        "Slow down now.",
        "Slow down now.",
    ),
    "collision": (
        "collision",
        "Check the vehicle at the next stop.",
        "Stop safely and check the vehicle.",
        "Stop safely, switch on hazard lights and check on everyone.",
    ),
    "rollover": (
        "rollover",
        "Stop safely and check the vehicle.",
        "Stop safely and check the vehicle.",
        "Switch off the engine and check on everyone.",
    ),
    "panic_button": (
        "panic alarm",
        "Dispatch has been notified.",
        "Dispatch has been notified.",
        "Help has been alerted. Dispatch is calling you.",
    ),
    "tire_pressure_high": (
        "high pressure on {tire}",
        "Check tire pressure at the next stop.",
        "Check tire pressure at the next stop.",
        "Slow down and stop to check the tire.",
    ),
    "tire_pressure_low": (
        "low pressure on {tire}",
        "Check tire pressure at the next stop.",
        "Slow down and check the tire soon.",
        "Slow down and stop to check the tire.",
    ),
    "tire_temp_high": (
        "high temperature on {tire}",
        "Check brakes and bearings at the next stop.",
        "Slow down and check the tire soon.",
        "Pull over at the next safe place and check the wheel.",
    ),
    "tire_fast_leak": (
        "fast air loss on {tire}",
        "Check the tire at the next stop.",
        "Slow down and stop to check the tire.",
        "Slow down gently and pull over at the next safe place.",
    ),
    "tire_slow_leak": (
        "slow air loss on {tire}",
        "Have the tire checked at the next stop.",
        "Have the tire checked soon.",
        "Slow down and stop to check the tire.",
    ),
    "tire_sensor_fault": (
        "tire sensor fault on {tire}",
        "Have the sensor checked.",
        "Have the sensor checked.",
        "Have the sensor checked.",
    ),
    "tire_imbalance": (
        "uneven pressure on {tire}",
        "Check tire pressures at the next stop.",
        "Slow down and check the tires soon.",
        "Slow down and stop to check the tires.",
    ),
    "driving_time": (
        "long driving without a break",
        "Plan a 20-minute break.",
        "Take a 20-minute break at the next rest area.",
        "Stop for a 20-minute break at the next safe place.",
    ),
    "hazmat_restricted_zone": (
        "entry into a dangerous-goods restricted zone",
        "Leave the zone by the approved route.",
        "Leave the zone now by the approved route.",
        "Leave the zone now and call dispatch.",
    ),
}

# Headline wording when severe: "Severe fatigue", but "Danger: pedestrian ahead"; an
# incident (a crash, a panic press) needs no adjective at all.
_SEVERE_ADJECTIVE = frozenset(
    (
        "fatigue",
        "distraction",
        "lane_departure",
        "harsh_brake",
        "harsh_accel",
        "harsh_turn",
        "overspeed",
    )
)
_INCIDENTS = frozenset(("collision", "rollover", "panic_button"))

#: Kinds never spoken in the cab whatever their grade: a silent unit cannot hear us, and
#: if it can again, its alarm has already cleared.
NO_CAB_KINDS = frozenset(("unit_silent",))

#: Protocol v1 action per severity: general stays quiet on the screen, the rest are spoken.
ACTIONS: dict[str, str] = {"general": "display", "moderate": "voice_alert", "severe": "voice_alert"}


def intervention_for(kind: str, severity: str, tire_pos: str | None = None) -> InterventionSpec:
    """What the cab does for a new or risen alarm of ``kind`` at ``severity``."""
    action = ACTIONS.get(severity)
    if action is None:
        raise UsageError(f"unknown severity {severity!r}")
    what, *advice = _MESSAGES.get(
        kind,
        (kind.replace("_", " "), "Drive carefully.", "Drive carefully.", "Pull over safely."),
    )
    what = what.format(tire=f"tire {tire_pos}" if tire_pos else "a tire")
    headline = what[:1].upper() + what[1:]
    if severity == "severe" and kind not in _INCIDENTS:
        headline = f"Severe {what}" if kind in _SEVERE_ADJECTIVE else f"Danger: {what}"
    return InterventionSpec(action, f"{headline} detected. {advice[SEVERITY_RANK[severity]]}")
