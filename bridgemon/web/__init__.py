"""HTTP: /metrics, /healthz, the JSON API and the reload endpoint (aiohttp)."""
