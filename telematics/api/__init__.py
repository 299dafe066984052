"""The operators' REST API under ``/api/v1/``: zones, the alarm lifecycle, the fleet and
the KPIs (``routes.setup_api`` mounts it).

A thin shell: each handler checks who is asking (``auth.py``), parses the request, calls
store functions and renders their result; errors become JSON with a stable code
(``errors.py``).
"""
