"""Typed application keys (aiohttp ``AppKey``) shared by the web modules."""

from __future__ import annotations

from aiohttp import web

from telematics.ingest.hub import Hub

HUB = web.AppKey("hub", Hub)
