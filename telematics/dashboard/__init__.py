"""The dispatch-centre dashboard: sign-in and the page (``views.py``), the live
WebSocket (``live.py``), passwords (``passwords.py``) and the static front end."""
