"""The page's routes (``page.add_routes`` adds them) as the route table describes them: its
files need no token; ``/login`` trades the token for a cookie."""

from __future__ import annotations

from .models import answers
from .routing import Answer, Body, Route

PAGE_TYPES = ("text/javascript", "text/css", "text/html")
PAGE_HEADERS = {"ETag": "the quoted hash of the file's content"}
IF_NONE_MATCH = {"If-None-Match": "an ETag from an earlier answer"}
NOT_MODIFIED = Answer(304, "not modified: the ETag matched", headers=PAGE_HEADERS)

ROUTES = (
    Route(
        "GET",
        "/",
        "The web page (search, duplicates, status)",
        None,
        (Answer(200, "the page", media=("text/html",), schema={"type": "string"}, headers=PAGE_HEADERS), NOT_MODIFIED),
        headers=IF_NONE_MATCH,
        guard="open",
    ),
    Route(
        "GET",
        "/ui/{name}",
        "A file of the page: index.html, app.js (and the modules it imports) or app.css",
        None,
        (
            Answer(200, "a file of the page", media=PAGE_TYPES, schema={"type": "string"}, headers=PAGE_HEADERS),
            NOT_MODIFIED,
        ),
        (404,),
        path_params=("name",),
        headers=IF_NONE_MATCH,
        guard="open",
    ),
    Route(
        "GET",
        "/login",
        "Whether the page must ask for the token (never 401)",
        None,
        (Answer(200, "the login state", answers.LoginState),),
        guard="open",
    ),
    Route(
        "POST",
        "/login",
        "Trade server.token for an HttpOnly SameSite=Strict cookie that stands in for the Bearer header "
        "(refused cross-site)",
        None,
        (Answer(200, "signed in (Set-Cookie)", answers.LoggedIn),),
        (401, 429),  # open, but it checks the token itself (wrong ones are counted: page.Throttle)
        body=Body(json=answers.TokenBody, urlencoded=answers.TokenBody),
        guard="open",
    ),
    Route(
        "POST",
        "/logout",
        "End the page's session (in the daemon too) and clear its cookie",
        None,
        (Answer(200, "signed out", answers.LoggedOut),),
        guard="open",
    ),
)
