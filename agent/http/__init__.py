"""The HTTP API v1 (port 8500): `agent.http.app.make_app(agent)`."""
