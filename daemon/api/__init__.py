"""The HTTP API: routes by resource, the listener and its channel, auth and origin checks, the page and
its static files, metrics and the OpenAPI spec. Calls the service; nothing below imports it."""
