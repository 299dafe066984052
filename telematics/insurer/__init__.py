"""Insurers: scoped REST API, alarm feed, risk scores, loss-control reports, claims with
evidence packets and signed webhooks (docs/insurer-api.md).

Pure modules here (coverage, cursor, scoring, packet, signing, backoff); SQL in
``store/``; HTTP handlers in ``api/``; the delivery worker in ``worker.py``.
"""
