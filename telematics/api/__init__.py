"""The operators' REST API under ``/api/v1/``: zones and the alarm lifecycle.

A thin shell: each handler checks who is asking (``auth.py``), parses the request, calls
one store function and renders its result; errors become JSON with a stable code
(``errors.py``).
"""

from telematics.api.routes import setup_api

__all__ = ["setup_api"]
