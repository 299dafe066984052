"""Mounting the insurers' API and its delivery worker on the application."""

from __future__ import annotations

from aiohttp import web

from telematics.insurer.api import claims, feed, openapi, reports, scores, vehicles, webhooks
from telematics.insurer.api.gate import PREFIX, insurer_gate
from telematics.insurer.api.keys import WEIGHTS
from telematics.insurer.scoring import load_weights


def setup_insurer_api(app: web.Application) -> None:
    """Call before ``setup_api``: the gate must be the outermost middleware."""
    app.middlewares.insert(0, insurer_gate)
    app[WEIGHTS] = load_weights()  # once per worker; errors name the file
    r, p = app.router, PREFIX
    r.add_get(f"{p}/openapi.json", openapi.openapi_json)
    r.add_get(f"{p}/vehicles", vehicles.list_vehicles)
    r.add_get(f"{p}/feed", feed.read_feed)
    r.add_get(f"{p}/scores/vehicles", scores.vehicle_scores)
    r.add_get(f"{p}/scores/vehicles/{{vehicle_id}}", scores.vehicle_score)
    r.add_get(f"{p}/scores/drivers", scores.driver_scores)
    r.add_get(f"{p}/scores/drivers/{{driver_id}}", scores.driver_score)
    r.add_get(f"{p}/reports/loss-control", reports.loss_control)
    r.add_post(f"{p}/claims", claims.create_claim)
    r.add_get(f"{p}/claims", claims.list_claims)
    r.add_get(f"{p}/claims/{{claim_id}}", claims.get_claim)
    r.add_get(f"{p}/claims/{{claim_id}}/evidence", claims.get_evidence)
    r.add_get(f"{p}/claims/{{claim_id}}/evidence.zip", claims.get_archive)
    r.add_post(f"{p}/claims/{{claim_id}}/outcome", claims.post_outcome)
    r.add_post(f"{p}/webhooks", webhooks.create_endpoint)
    r.add_get(f"{p}/webhooks", webhooks.list_endpoints)
    r.add_get(f"{p}/webhooks/{{endpoint_id}}", webhooks.get_endpoint)
    r.add_delete(f"{p}/webhooks/{{endpoint_id}}", webhooks.disable_endpoint)
    r.add_post(f"{p}/webhooks/{{endpoint_id}}/enable", webhooks.enable_endpoint)
    r.add_post(f"{p}/webhooks/{{endpoint_id}}/rotate-secret", webhooks.rotate_secret)
    r.add_get(f"{p}/webhooks/{{endpoint_id}}/deliveries", webhooks.list_deliveries)
    r.add_post(
        f"{p}/webhooks/{{endpoint_id}}/deliveries/{{delivery_id}}/redeliver", webhooks.redeliver
    )
