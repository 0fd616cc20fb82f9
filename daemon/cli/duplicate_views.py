"""The duplicates' answers as a person reads them on a terminal: a page of groups by tier with each
keeper and why, a resolve's plan (its dry run), what a resolve did, what an undo put back.
Piped, or with ``--json``, the answers print as JSON (``output.emit``).
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping

from .answers import DuplicatesPage, Resolved, ResolvedFile, Undone
from .output import counted, member_line, shown

TIERS = ("identical", "copies", "similar")
LISTED = 20  # keepers listed in the plan a resolve shows before its question (--dry-run lists all)
NAMED = 3  # paths named per reason a file was skipped


def duplicates_view(body: DuplicatesPage) -> str:
    """A page of groups for a person: each group's tier, size and keeper (marked ``*``, and why),
    a member per line; then the groups per tier and where the page stands."""
    lines = []
    for group in body["groups"]:
        head = f"{group['kind']} ({counted(group['files'], 'file')}, similarity {group['similarity']:.3f})"
        reason = group.get("keep_reason")
        lines.append(f"{head}: keep * ({reason})" if reason else head)
        members = group["members"]
        if group["kind"] == "identical":  # the same bytes: a framing score and a count of byte copies say nothing
            members = [{**member, "framing": None, "same_bytes": 0} for member in members]
        lines += [member_line(member) for member in members]
    if "tiers" in body:
        lines.append(_tiers_line(body))
    shown_ = len(body["groups"])
    lines.append(
        f"{counted(body['total'], 'group')} at threshold {body['threshold']} ({body['extractor']}); "
        f"showing {body['offset'] + (1 if shown_ else 0)}-{body['offset'] + shown_}"
        + (f"; next: --offset {body['next_offset']}" if body["next_offset"] is not None else "")
        + ("; stale: the catalogue changed, recomputing" if body["stale"] else "")
    )
    return "\n".join(lines)


def _tiers_line(body: DuplicatesPage) -> str:
    """The groups per tier, with the cuts that made them: ``tiers: 1 identical, 2 copies (cosine 0.80,
    framing 0.95), 0 similar (cosine 0.90)``."""
    tiers, cuts = body.get("tiers") or {}, body.get("thresholds") or {}
    said = {
        "copies": f" (cosine {cuts['copies']:.2f}, framing {cuts['framing']:.2f})"
        if {"copies", "framing"} <= cuts.keys()
        else "",
        "similar": f" (cosine {cuts['similar']:.2f})" if "similar" in cuts else "",
    }
    return "tiers: " + ", ".join(f"{tiers.get(tier, 0)} {tier}{said.get(tier, '')}" for tier in TIERS)


def _files(answers: Iterable[Resolved], state: str) -> list[ResolvedFile]:
    return [f for answer in answers for f in answer["files"] if f["state"] == state]


def _trashes(files: list[ResolvedFile]) -> str:
    """The Trash folders the files go to, in brackets: `` (/home/me/.local/share/Trash)`` (from each
    file's ``files/NAME`` there: the home Trash, or a volume's ``.Trash-UID``)."""
    trashes = sorted({os.path.dirname(os.path.dirname(f["to"])) for f in files if f["to"]})
    return f" ({', '.join(shown(t) for t in trashes)})" if trashes else ""


def _where(answers: list[Resolved], files: list[ResolvedFile]) -> str:
    """Where the files go, in words: the Trash folders, the move's folder, or the keepers."""
    action = answers[0]["action"]
    if action == "link":
        return "become hard links to their keepers"
    if action == "move":
        return f"go to {shown(str(answers[0]['to']))}"
    return "go to the Trash" + _trashes(files)


def _kept(files: list[ResolvedFile]) -> int:
    return len({f["keep"] for f in files})


def _skipped_lines(answers: list[Resolved]) -> list[str]:
    """The skipped files grouped by reason: the count and the first few paths."""
    by_reason: dict[str, list[str]] = defaultdict(list)
    for f in _files(answers, "skipped"):
        by_reason[f["reason"] or "no reason given"].append(f["image"])
    if not by_reason:
        return []
    lines = [f"skipped {counted(sum(len(p) for p in by_reason.values()), 'file')}:"]
    for reason, paths in by_reason.items():
        named = ", ".join(shown(p) for p in paths[:NAMED]) + (
            f" and {len(paths) - NAMED} more" if len(paths) > NAMED else ""
        )
        lines.append(f"  {reason}: {named}")
    return lines


def _by_keeper(files: list[ResolvedFile]) -> dict[str, list[ResolvedFile]]:
    groups: dict[str, list[ResolvedFile]] = defaultdict(list)
    for f in files:
        groups[f["keep"]].append(f)
    return groups


def plan_view(
    answers: list[Resolved], reasons: Mapping[str, str], everything: bool, similar: Collection[str] = ()
) -> str:
    """A resolve's dry run: each keeper (and why) with the files that would go, then the count
    ("5 files go to the Trash (PATH), 3 kept"), how many of them are similar shots (``similar``:
    the paths of the similar groups' members), and the files that would be skipped."""
    files = _files(answers, "planned")
    verb = answers[0]["action"]
    lines = []
    keepers = list(_by_keeper(files).items())
    for keep, gone in keepers if everything else keepers[:LISTED]:
        reason = reasons.get(keep)
        lines.append(f"keep {shown(keep)}" + (f" ({reason})" if reason else ""))
        lines += [f"  {verb} {shown(f['image'])}" for f in gone]
    if len(keepers) > LISTED and not everything:
        lines.append(f"and {counted(len(keepers) - LISTED, 'more group')} (--dry-run lists them all)")
    lines.append(f"{counted(len(files), 'file')} {_where(answers, files)}, {_kept(files)} kept")
    shots = sum(1 for f in files if f["image"] in similar)
    if shots:
        lines.append(_shots_line(shots))
    lines += _skipped_lines(answers)
    if everything:
        lines.append("nothing done (a dry run)")
    return "\n".join(lines)


def _shots_line(shots: int) -> str:
    """The warning a plan with similar shots carries: they are not the keeper's picture."""
    if shots == 1:
        return "1 of these is a similar shot: a different picture, not a copy"
    return f"{shots} of these are similar shots: different pictures, not copies"


DONE = {"trash": "moved to the Trash", "move": "moved", "link": "replaced by hard links to their keepers"}


def resolved_view(answers: list[Resolved]) -> str:
    """What a resolve did, the files it skipped and why, and the command that undoes it (one a request)."""
    files = _files(answers, "done")
    action = answers[0]["action"]
    done = DONE.get(action, action)
    if action == "move":
        done += f" to {shown(str(answers[0]['to']))}"
    if action == "trash":
        done += _trashes(files)
    lines = [f"{counted(len(files), 'file')} {done}, {_kept(files)} kept"]
    lines += _skipped_lines(answers)
    lines += [f"undo: imgsearchd duplicates undo {answer['undo']}" for answer in answers if answer["undo"] is not None]
    return "\n".join(lines)


def undone_view(answer: Undone) -> str:
    """What an undo put back, and what it could not (a file is there again)."""
    lines = [f"undo {answer['undo']}: {counted(answer['restored'], 'file')} put back"]
    skipped: dict[str, list[str]] = defaultdict(list)
    for f in answer["files"]:
        if f["state"] != "restored":
            skipped[f["reason"] or "no reason given"].append(f["image"])
    if skipped:
        lines.append(f"skipped {counted(answer['skipped'], 'file')}:")
        lines += [f"  {reason}: {', '.join(shown(p) for p in paths)}" for reason, paths in skipped.items()]
    return "\n".join(lines)
