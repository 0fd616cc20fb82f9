"""The page's routes (``page.add_routes`` adds them) as the route table describes them: its
files need no token; ``/login`` trades the token for a cookie."""

from __future__ import annotations

from .models import answers
from .routing import Answer, Body, Route

PAGE_TYPES = ("text/javascript", "text/css", "text/html")

ROUTES = (
    Route(
        "GET",
        "/",
        "The web page (search, duplicates, status)",
        None,
        (Answer(200, "the page", media=("text/html",), schema={"type": "string"}),),
        guard="open",
    ),
    Route(
        "GET",
        "/ui/{name}",
        "A file of the page: index.html, app.js (and the modules it imports) or app.css",
        None,
        (Answer(200, "a file of the page", media=PAGE_TYPES, schema={"type": "string"}),),
        (404,),
        path_params=("name",),
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
        (400, 401),
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
