"""The CLI's requests to a running daemon: search (with upload when the daemon cannot read
the file), folder adds followed to the end, and the shared error handling.

``search FILE`` first sends the path (the daemon reuses a stored vector when it has one);
when the daemon refuses that path (403 outside its roots, 404 not found or unreadable
from where it runs, e.g. a user service or another mount namespace), the CLI reads the file
itself and sends the bytes (POST /search), as the issue asks: the file is only a query.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, TypedDict

from .answers import Answer
from .client import ApiFailure, Client, DaemonNotRunning
from .exit_codes import EXIT_ERROR, EXIT_NOT_RUNNING, EXIT_OK
from .output import output_mode, print_results
from .wait import follow_job

if TYPE_CHECKING:
    from ..config import Config

log = logging.getLogger("imgsearchd")


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


def guarded_call(action: Callable[[], int]) -> int:
    """Run ``action``; a daemon that is down or an API error becomes a message and an exit code."""
    try:
        return action()
    except DaemonNotRunning as exc:
        print(f"imgsearchd: {exc}", file=sys.stderr)
        return EXIT_NOT_RUNNING
    except ApiFailure as exc:
        print(json.dumps(exc.body, indent=2), file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:  # the reader stopped (``| head``): main() ends quietly
        raise
    except OSError as exc:  # the query file cannot be read here, or the answer timed out
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"imgsearchd: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_ERROR


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
            if not refused_path(exc, parts):
                raise
            refused = exc.body.get("image")
            log.info("the daemon cannot use %s (%s); sending the file's bytes", refused, exc.status)
            try:
                answer = ask(upload=True)
            except ApiFailure as failure:  # the upload's error names no file: say which one was sent
                failure.body.setdefault("image", refused)
                raise
        print_results(answer, output_mode(args))
        return EXIT_OK

    return guarded_call(run)


def add_remote(args: argparse.Namespace, config: Config) -> int:
    """``/add``; with ``--wait`` a folder's job is followed to the end (exit 1 if it failed)."""
    client = client_for(config)

    def run() -> int:
        _status, body = client.call("GET", "/add", {"image": os.path.abspath(args.path)})
        if not (args.wait and "job" in body):
            print(json.dumps(body, indent=2))
            return EXIT_OK
        job = follow_job(client, str(body["job"]))
        print(json.dumps(job, indent=2))
        if job["state"] == "failed":
            print(f"imgsearchd: adding {job['folder']} failed: {job.get('error')}", file=sys.stderr)
            return EXIT_ERROR
        return EXIT_OK

    return guarded_call(run)
