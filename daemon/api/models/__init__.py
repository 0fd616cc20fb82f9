"""The HTTP API's typed requests and answers (msgspec structs): what the routes parse and
answer, and what ``spec`` turns into /openapi.json.

``requests``: each route's query parameters and bodies, with their bounds and the words of
the error a bad one gets. ``answers``: what the routes answer. ``stats``: the /stats answer.
"""
