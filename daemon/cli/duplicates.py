"""``imgsearchd duplicates``: the running daemon's duplicate groups by tier, each with its suggested
keeper and why; ``duplicates resolve`` acts on the files the keepers leave (trash, move, link) and
``duplicates undo [ID]`` puts them back.

``resolve`` fetches every page of ``GET /duplicates`` (waiting while the daemon computes, the
progress on stderr), sends each group's suggested keeper and its other members to
``POST /duplicates/resolve``, at most ``MAX_FILES`` files a request (several requests, each with
its own undo ID, beyond), and prints what was done (``duplicate_views``). It acts on files, so
it asks first: on a terminal it shows the daemon's dry run and waits for "y"; elsewhere (a pipe,
``--json``) it needs ``--yes`` (exit 2 without it), and ``--dry-run`` only shows the plan.
``--kind all`` is the identical files and the edited copies: similar shots are different pictures,
acted on only when named (``--kind similar``), and the plan says so.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypedDict, cast

from ..api.bounds import (
    DEFAULT_GROUPS,
    DUPLICATE_KINDS,
    DUPLICATE_SORTS,
    MAX_LIMIT,
    MAX_OFFSET,
)
from ..config import KNOWN_EXTRACTORS
from .answers import Answer, DuplicateGroup, DuplicatesPage, Resolution, Resolved, Undone
from .arguments import float_in, int_in
from .client import ApiFailure, Client
from .duplicate_views import duplicates_view, plan_view, resolved_view, undone_view
from .exit_codes import EXIT_ERROR, EXIT_OK, EXIT_USAGE
from .output import add_json_flag, emit, note, output_mode
from .remote import client_for, guarded_call

if TYPE_CHECKING:
    from ..config import Config

Common = Callable[[argparse.ArgumentParser], None]  # main's --config, --log-level, ...

ACTIONS = ("trash", "move", "link")
MAX_FILES = 10_000  # paths a POST /duplicates/resolve takes, keepers included (service.tidying.MAX_FILES; 400 beyond)
POLL_SECONDS = 2.0  # between two asks while the daemon computes the groups
THRESHOLD_HELP = "the cosine from which pictures are similar shots (above 0, at most 1; default: the model's)"
KIND_HELP = (
    "which tier: identical (the same bytes), copies (one picture, edited) or all (both); "
    "similar shots are different pictures, resolved only when named (--kind similar)"
)
# --kind all: the tiers whose other members are the keeper's picture (nothing of it is lost)
ALL_KINDS = frozenset({"identical", "copies"})


class _OptionalAction(argparse.HelpFormatter):
    """Shows ``duplicates``'s action as optional in its usage: ``[ACTION ...]`` (without one it
    lists the groups); argparse writes a subcommand as if required."""

    def _format_args(self, action: argparse.Action, default_metavar: str) -> str:
        if action.nargs == argparse.PARSER and not action.required:
            [metavar] = self._metavar_formatter(action, default_metavar)(1)
            return f"[{metavar} ...]"
        return super()._format_args(action, default_metavar)


class Planned(TypedDict):
    """One group as ``POST /duplicates/resolve`` takes it: the file kept and the others."""

    keep: str
    others: list[str]


def add_duplicates_parsers(sub: Any, common: Common) -> None:
    """The ``duplicates`` command and its ``resolve`` and ``undo`` actions."""
    dups = sub.add_parser(
        "duplicates",
        help="identical files, edited copies and similar shots, each group with a suggested keeper; resolve, undo",
        formatter_class=_OptionalAction,
    )
    dups.add_argument("--threshold", type=float_in(0, 1, above=True), metavar="T", help=THRESHOLD_HELP)
    dups.add_argument("--kind", choices=DUPLICATE_KINDS, default="all", help="which tier (default all)")
    dups.add_argument("--folder", metavar="DIR", help="only groups with a file in DIR")
    dups.add_argument(
        "--sort", choices=DUPLICATE_SORTS, default="similarity", help="taken: oldest photo first in and across groups"
    )
    dups.add_argument(
        "--limit",
        type=int_in(1, MAX_LIMIT),
        default=DEFAULT_GROUPS,
        metavar="N",
        help=f"groups (default {DEFAULT_GROUPS})",
    )
    dups.add_argument("--offset", type=int_in(0, MAX_OFFSET), default=0, metavar="N", help="groups to skip")
    dups.add_argument("--keep-in", metavar="FOLDER", help="suggest keeping the files in FOLDER")
    add_json_flag(dups)
    common(dups)
    actions = dups.add_subparsers(dest="duplicates_command", metavar="ACTION")
    _add_resolve_parser(actions)
    undo = actions.add_parser("undo", help="put back the files of a resolve (default: the newest not undone)")
    undo.add_argument("undo", nargs="?", type=int_in(1), metavar="ID", help="the undo ID a resolve printed")
    add_json_flag(undo)
    _client_options(undo, extractor=False)


def _client_options(parser: argparse.ArgumentParser, extractor: bool) -> None:
    """What a client of the daemon reads of main's common options: the settings file (where the
    daemon listens, its token) and, for ``resolve``, the extractor whose groups are read.
    ``--data-dir`` and ``--log-level`` are the daemon's own: not offered where they would do nothing."""
    parser.add_argument("--config", metavar="PATH", help="settings file (default: see README)")
    if extractor:
        parser.add_argument("--extractor", choices=KNOWN_EXTRACTORS, help="the groups of this extractor")


def _add_resolve_parser(actions: Any) -> None:
    resolve = actions.add_parser(
        "resolve", help="trash, move or link the files each group does not keep (the suggested keepers)"
    )
    resolve.add_argument("--kind", choices=DUPLICATE_KINDS, required=True, help=KIND_HELP)
    resolve.add_argument(
        "--action",
        choices=ACTIONS,
        default="trash",
        help="trash (the desktop's Trash, default), move (into --to DIR), link (a hard link to the keeper)",
    )
    resolve.add_argument("--to", metavar="DIR", help="where --action move puts the files (outside watched folders)")
    resolve.add_argument("--keep-in", metavar="FOLDER", help="keep the files in FOLDER where a group has one")
    resolve.add_argument("--folder", metavar="DIR", help="only groups with a file in DIR")
    resolve.add_argument("--threshold", type=float_in(0, 1, above=True), metavar="T", help=THRESHOLD_HELP)
    resolve.add_argument("--dry-run", action="store_true", help="show what would be done; do nothing")
    resolve.add_argument("--yes", action="store_true", help="go ahead without asking (needed when not on a terminal)")
    add_json_flag(resolve)
    _client_options(resolve, extractor=True)


def cmd_duplicates(args: argparse.Namespace, config: Config) -> int:
    """``duplicates``, ``duplicates resolve`` or ``duplicates undo``."""
    command = getattr(args, "duplicates_command", None)
    if command == "resolve":
        return resolve_remote(args, config)
    if command == "undo":
        return undo_remote(args, config)
    return duplicates_remote(args, config)


def _absolute(path: str | None) -> str | None:
    return os.path.abspath(path) if path else None


def query_of(args: argparse.Namespace) -> dict[str, object]:
    """The ``GET /duplicates`` parameters the options give (``None``: not sent)."""
    return {
        "extractor": args.extractor,
        "threshold": args.threshold,
        "kind": args.kind,
        "folder": _absolute(args.folder),
        "keep_in": _absolute(getattr(args, "keep_in", None)),
        "sort": getattr(args, "sort", None),
    }


def ready_page(client: Client, params: Mapping[str, object]) -> DuplicatesPage:
    """A page of ``/duplicates``, asked again while the daemon computes (its progress noted on stderr)."""
    while True:
        status, body = client.call("GET", "/duplicates", params)
        if status != 202:
            return cast(DuplicatesPage, body)
        progress = body.get("computing") or {}
        note(f"computing duplicates ({progress.get('phase')}, {progress.get('done', 0)}/{progress.get('total', 0)})")
        time.sleep(POLL_SECONDS)


def duplicates_remote(args: argparse.Namespace, config: Config) -> int:
    """One page of duplicate groups: for a person each group's tier, keeper (and why) and members."""
    params = {**query_of(args), "limit": args.limit, "offset": args.offset}
    client = client_for(config)

    def run() -> int:
        emit(ready_page(client, params), args, lambda page: duplicates_view(cast(DuplicatesPage, page)))
        return EXIT_OK

    return guarded_call(run, args)


def all_groups(client: Client, params: Mapping[str, object], tries: int = 3) -> list[DuplicateGroup]:
    """Every group, page by page. The groups the pages come from may be recomputed meanwhile (a file
    added): then their ``seq`` changes and the pages are fetched again from the first."""
    for _ in range(tries):
        page = ready_page(client, {**params, "limit": MAX_LIMIT, "offset": 0})
        groups, seq = list(page["groups"]), page.get("seq")
        while page["next_offset"] is not None:
            page = ready_page(client, {**params, "limit": MAX_LIMIT, "offset": page["next_offset"]})
            if page.get("seq") != seq:
                break
            groups += page["groups"]
        else:
            return groups
    # still changing (files arriving): the pages read last; the daemon checks every file before acting
    print(f"imgsearchd: the groups changed {tries} times while read: some may be left; run again", file=sys.stderr)
    return groups


def planned(groups: list[DuplicateGroup]) -> list[Planned]:
    """Each group's suggested keeper and its other members."""
    out: list[Planned] = []
    for group in groups:
        keep = group.get("keep") or group["members"][0]["image"]
        others = [m["image"] for m in group["members"] if m["image"] != keep]
        if others:
            out.append({"keep": keep, "others": others})
    return out


def batches(groups: list[Planned], most: int) -> list[list[Planned]]:
    """The groups in requests of at most ``most`` files (keepers counted); a group larger than that is split."""
    out: list[list[Planned]] = []
    batch: list[Planned] = []
    files = 0
    for group in groups:
        others = group["others"]
        while others:
            room = most - files - 1
            if room <= 0:
                out.append(batch)
                batch, files = [], 0
                continue
            batch.append({"keep": group["keep"], "others": others[:room]})
            files += 1 + len(others[:room])
            others = others[room:]
    return [*out, batch] if batch else out


def _refused(args: argparse.Namespace) -> str | None:
    """Why the options cannot go together, or None."""
    if args.action == "move" and not args.to:
        return "--action move needs --to DIR (where the files go)"
    if args.to and args.action != "move":
        return f"--to is for --action move, not {args.action}"
    return None


def resolve_remote(args: argparse.Namespace, config: Config) -> int:
    """``duplicates resolve``: a plan (the daemon's dry run), a question on a terminal, then the action."""
    refused = _refused(args)
    person = output_mode(args) == "table" and sys.stdin.isatty()
    if refused is None and not (args.yes or args.dry_run or person):
        refused = "resolve acts on files: add --yes to go ahead without a question (or --dry-run to see the plan)"
    if refused:
        print(f"imgsearchd: {refused}", file=sys.stderr)
        return EXIT_USAGE
    client = client_for(config)
    return guarded_call(lambda: _resolve(args, client), args)


def _resolve(args: argparse.Namespace, client: Client) -> int:
    groups = all_groups(client, query_of(args))
    if args.kind == "all":
        groups = [g for g in groups if g["kind"] in ALL_KINDS]
    similar = {m["image"] for g in groups if g["kind"] == "similar" for m in g["members"]}
    reasons = {g["keep"]: g["keep_reason"] for g in groups if "keep" in g and "keep_reason" in g}
    requests = batches(planned(groups), MAX_FILES)
    table = output_mode(args) == "table"
    if not requests:
        which = "identical or copies" if args.kind == "all" else args.kind
        emit(_nothing(args), args, lambda _: f"no {which} groups: nothing to do")
        return EXIT_OK
    if args.dry_run or not args.yes:
        plans = [_post(client, args, batch, dry_run=True) for batch in requests]
        if args.dry_run:
            _show(plans, args, lambda p: plan_view(p, reasons, everything=True, similar=similar))
            return EXIT_OK
        print(plan_view(plans, reasons, everything=False, similar=similar))
        if not any(f["state"] == "planned" for plan in plans for f in plan["files"]):
            return EXIT_OK  # every file would be skipped (the plan says why): nothing to ask
        if not _confirmed():
            print("nothing done")
            return EXIT_ERROR
    answers: list[Resolved] = []
    try:
        for batch in requests:
            answers.append(_post(client, args, batch, dry_run=False))
    except ApiFailure:
        if answers:  # what was done before the refusal stays done: say how to undo it
            print(resolved_view(answers), file=sys.stdout if table else sys.stderr)
        raise
    _show(answers, args, resolved_view)
    return EXIT_OK


def _nothing(args: argparse.Namespace) -> Resolved:
    """The daemon's answer to no groups, without asking it."""
    to = _absolute(args.to)
    return {
        "undo": None,
        "action": args.action,
        "dry_run": args.dry_run,
        "to": to,
        "done": 0,
        "skipped": 0,
        "files": [],
    }


def _post(client: Client, args: argparse.Namespace, groups: list[Planned], dry_run: bool) -> Resolved:
    body: dict[str, object] = {"groups": groups, "action": args.action, "dry_run": dry_run}
    if args.to:
        body["to"] = os.path.abspath(args.to)
    _status, answer = client.call("POST", "/duplicates/resolve", None, json.dumps(body).encode(), "application/json")
    return cast(Resolved, answer)


def _show(answers: list[Resolved], args: argparse.Namespace, human: Callable[[list[Resolved]], str]) -> None:
    """For a person one view of every request's answer; JSON: each answer as the daemon gave it (one
    document a request: ``jq`` reads them in turn)."""
    if output_mode(args) == "json":
        for answer in answers:
            print(json.dumps(answer, indent=2))
    else:
        print(human(answers))


def _confirmed() -> bool:
    """The person's answer: "y" or "yes" goes ahead; anything else, or the end of the input, does not.
    The question goes to stdout with the plan (``input()`` would write it to stderr)."""
    print("go ahead? [y/N] ", end="", flush=True)
    answer = sys.stdin.readline()
    if not answer.endswith("\n"):
        print()
    return answer.strip().lower() in ("y", "yes")


def undo_remote(args: argparse.Namespace, config: Config) -> int:
    """``duplicates undo [ID]``: without ID the newest resolution not undone."""
    client = client_for(config)

    def run() -> int:
        undo = args.undo
        if undo is None:
            rows = cast(list[Resolution], client.call("GET", "/duplicates/resolutions")[1].get("resolutions") or [])
            pending = [row for row in rows if row.get("state") != "undone"]
            if not pending:
                print(
                    "imgsearchd: nothing to undo (imgsearchd duplicates resolve ... prints an undo ID)", file=sys.stderr
                )
                return EXIT_ERROR
            undo = pending[0]["undo"]
        body = json.dumps({"undo": undo}).encode()
        answer: Answer = client.call("POST", "/duplicates/undo", None, body, "application/json")[1]
        emit(answer, args, lambda done: undone_view(cast(Undone, done)))
        return EXIT_OK

    return guarded_call(run, args)
