"""The operator process: settings, kopf's wiring and tuning, the assembly of the controller and the webhook, its HTTP endpoints and background tasks."""
