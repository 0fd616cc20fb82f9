"""The CLI's requests to a running daemon: search (with upload when the daemon cannot read
the file), folder adds followed to the end, the other thin commands, and the shared error
handling (a 400 is a usage error: exit 2, its message in one line).

``search FILE`` first sends the path (the daemon reuses a stored vector when it has one);
when the daemon refuses that path (403 outside its roots, 404 not found or unreadable
from where it runs, e.g. a user service or another mount namespace), the CLI reads the file
itself and sends the bytes (POST /search), as the issue asks: the file is only a query.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypedDict

from .answers import Answer
from .client import ApiFailure, Client, DaemonNotRunning
from .exit_codes import EXIT_ERROR, EXIT_NOT_RUNNING, EXIT_OK, EXIT_USAGE
from .output import emit, note, output_mode, print_results, shown
from .views import add_view, job_view
from .wait import follow_job

if TYPE_CHECKING:
    from ..config import Config


class QueryPart(TypedDict, total=False):
    """One part of a combined query as the API takes it: an image path or a text, and a weight."""

    image: str
    text: str
    weight: float


# A combined query's parts; only read here (``main.terms_to_parts`` builds them).
Parts = Sequence[QueryPart]


def client_for(config: Config) -> Client:
    server = config.server
    return Client(server.host, server.port, server.token)


def guarded_call(action: Callable[[], int], args: argparse.Namespace | None = None) -> int:
    """Run ``action``; a daemon that is down or an API error becomes a message and an exit code."""
    try:
        return action()
    except DaemonNotRunning as exc:
        print(f"imgsearchd: {exc}", file=sys.stderr)
        return EXIT_NOT_RUNNING
    except ApiFailure as exc:
        return report_failure(exc, args)
    except BrokenPipeError:  # the reader stopped (``| head``): main() ends quietly
        raise
    except OSError as exc:  # the query file cannot be read here, or the answer timed out
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"imgsearchd: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_ERROR


def report_failure(exc: ApiFailure, args: argparse.Namespace | None) -> int:
    """A 400 (a value the daemon refused) is a usage error: one line, exit 2. Any other error is
    one line for a person, or the JSON body on stderr where the output is JSON (as scripts read it)."""
    message = for_a_person(str(exc.body.get("error") or f"HTTP {exc.status}"))
    if exc.status == 400:
        print(f"imgsearchd: {message}", file=sys.stderr)
        for line in exc.advice:
            print(f"  {line}", file=sys.stderr)
        return EXIT_USAGE
    if args is not None and output_mode(args) != "json":
        print(f"imgsearchd: {message} (HTTP {exc.status})", file=sys.stderr)
    else:
        print(json.dumps(exc.body, indent=2), file=sys.stderr)
    return EXIT_ERROR


# The API's pointers in its error messages, as the CLI's commands that show the same thing.
API_TO_CLI = {"GET /folders": "imgsearchd folders", "GET /stats": "imgsearchd stats"}


def for_a_person(message: str) -> str:
    """An API error message as the CLI says it: on one line, its pointers to routes
    ("see GET /folders") turned into the commands that show the same ("imgsearchd folders")."""
    message = " ".join(message.split())
    for route, command in API_TO_CLI.items():
        message = message.replace(route, command)
    return message


def fallback_advice(client: Client) -> list[str]:
    """The daemon's advice about a configured model that runs on its fallback (``/stats``), or []."""
    try:
        fallback = client.call("GET", "/stats")[1].get("fallback")
    except (ApiFailure, DaemonNotRunning, OSError, ValueError):
        return []
    if not isinstance(fallback, dict):
        return []
    advice = fallback.get("advice")
    if isinstance(advice, list) and advice:
        return [str(line) for line in advice]
    reason = fallback.get("reason")
    return (
        [f"{fallback.get('configured')} is not running ({reason}); {fallback.get('running')} runs instead"]
        if reason
        else []
    )


def refused_path(exc: ApiFailure, parts: Parts) -> bool:
    """The daemon refused (403/404) one of the query's image paths, not something else."""
    paths = {p["image"] for p in parts if "image" in p}
    return exc.status in (403, 404) and exc.body.get("image") in paths


def uploaded(parts: Parts) -> list[Mapping[str, object]]:
    """The parts with every image path replaced by the file's bytes (base64)."""
    out: list[Mapping[str, object]] = []
    for part in parts:
        if "image" in part:
            with open(part["image"], "rb") as f:
                data = base64.b64encode(f.read()).decode("ascii")
            out.append({**{k: v for k, v in part.items() if k != "image"}, "image_base64": data})
        else:
            out.append(part)
    return out


def search_remote(args: argparse.Namespace, config: Config, parts: Parts, folder: str | None) -> int:
    """Ask the daemon; print the answer as ``--json``/``--paths``/a table/JSON-when-piped says."""
    client = client_for(config)
    params = {
        "limit": args.limit,
        "max_distance": args.max_distance,
        "min_match": args.min_match,
        "extractor": args.extractor,
        "folder": folder,
        "taken_after": args.taken_after,
        "taken_before": args.taken_before,
    }
    single = len(parts) == 1 and "weight" not in parts[0]

    def ask(upload: bool) -> Answer:
        if single and upload:
            with open(str(parts[0]["image"]), "rb") as f:
                data = f.read()
            return client.call("POST", "/search", params, data, "application/octet-stream")[1]
        if single:
            return client.call("GET", "/search", {**params, **parts[0]})[1]
        body = json.dumps({"query": uploaded(parts) if upload else parts}).encode()
        return client.call("POST", "/search", params, body, "application/json")[1]

    def run() -> int:
        try:
            answer = ask(upload=False)
        except ApiFailure as exc:
            if exc.status == 400 and "text encoder" in str(exc.body.get("error")):
                exc.advice = fallback_advice(client)  # the daemon's advice on the model that reads text
            if not refused_path(exc, parts):
                raise
            refused = exc.body.get("image")
            note(f"the daemon cannot read {shown(str(refused))} (HTTP {exc.status}); sending the file itself")
            try:
                answer = ask(upload=True)
            except ApiFailure as failure:  # the upload's error names no file: say which one was sent
                failure.body.setdefault("image", refused)
                raise
        print_results(answer, output_mode(args))
        return EXIT_OK

    return guarded_call(run, args)


def add_remote(args: argparse.Namespace, config: Config) -> int:
    """``/add``; with ``--wait`` a folder's job is followed to the end (exit 1 if it failed)."""
    client = client_for(config)

    def run() -> int:
        _status, body = client.call("GET", "/add", {"image": os.path.abspath(args.path)})
        if not (args.wait and "job" in body):
            emit(body, args, add_view)
            return EXIT_OK
        job = follow_job(client, str(body["job"]))
        emit(job, args, job_view)
        if job["state"] == "failed":
            print(f"imgsearchd: adding {job['folder']} failed: {job.get('error')}", file=sys.stderr)
            return EXIT_ERROR
        return EXIT_OK

    return guarded_call(run, args)


def call_and_show(
    args: argparse.Namespace,
    config: Config,
    request: tuple[str, str, Mapping[str, object] | None],
    human: Callable[[Any], str],
) -> int:
    """One request to the running daemon (method, path, params), its answer printed as the rule says."""
    client = client_for(config)

    def run() -> int:
        emit(client.call(*request)[1], args, human)
        return EXIT_OK

    return guarded_call(run, args)
