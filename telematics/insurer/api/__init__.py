"""The insurers' REST API under ``/api/v1/insurer/`` (docs/insurer-api.md)."""
