"""The daemon's answers as a person reads them on a terminal: ``stats`` in a screen, an add, a
job, a removal, a rebuild. Piped, or with ``--json``, the same answers print as JSON
(``output.emit``); these views read the keys they show and pass over the rest.
"""

from __future__ import annotations

import shutil
import textwrap

from .answers import Added, Fallback, Job, ModelChange, Rebuilding, Removed, Stats, WatchedFolder
from .output import counted, human_size, local_time, shown

WIDTH = 11  # the label column
MAX_FOLDERS = 8  # stats stays a screen; ``imgsearchd folders`` lists them all


def _line(label: str, text: str) -> str:
    return f"{label:<{WIDTH}} {text}"


def _seconds(value: object) -> str:
    if not isinstance(value, int | float):
        return "-"
    if value < 120:
        return f"{value:.0f} s" if value >= 10 else f"{value:.1f} s"
    minutes, _ = divmod(int(value), 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


def stats_view(stats: Stats) -> str:
    """``/stats`` in about a screen: state, counts, models, folders, jobs; ``--json`` has the rest."""
    state = "ready" if stats.get("ready") else f"starting ({stats.get('phase', 'loading')})"
    lines = [f"imgsearchd {stats.get('version', '?')}: {state}, up {_seconds(stats.get('uptime_s'))}"]
    failed = (stats.get("failed") or {}).get("total", 0)
    images = stats.get("images")
    counts = f"{'?' if images is None else images} indexed, {stats.get('pending', 0)} queued, {failed} failed"
    lines.append(_line("pictures", counts))
    lines += _extractor_lines(stats)
    lines += _fallback_lines(stats.get("fallback"))
    storage = stats.get("storage") or {}
    if storage and storage.get("state") != "ok":
        lines.append(_line("storage", f"{storage.get('state')}: {storage.get('reason', '')}".rstrip(": ")))
    folders = stats.get("watch") or []
    lines += [_line("folder", _folder(folder)) for folder in folders[:MAX_FOLDERS]]
    if len(folders) > MAX_FOLDERS:
        lines.append(_line("", f"and {len(folders) - MAX_FOLDERS} more (imgsearchd folders)"))
    if not folders:
        lines.append(_line("folder", "none watched (imgsearchd watch PATH)"))
    for job in (stats.get("jobs") or [])[-5:]:
        lines.append(_line("job", job_line(job)))
    thumbs = stats.get("thumbnails")
    if thumbs:
        used = f"{human_size(thumbs.get('bytes'))} of {human_size(thumbs.get('max_bytes'))}"
        lines.append(_line("thumbnails", f"{thumbs.get('count')}, {used}"))
    backfill = stats.get("backfill")
    if backfill:
        done = f"{backfill.get('done', 0)}/{backfill.get('planned', '?')}"
        lines.append(
            _line(
                "backfill",
                f"{backfill.get('state')}, {done} {'file' if backfill.get('planned') == 1 else 'files'}, {local_time(backfill.get('updated'))}",
            )
        )
    lines.append("(all of it: imgsearchd stats --json)")
    return "\n".join(lines)


def _extractor_lines(stats: Stats) -> list[str]:
    lines = []
    active = stats.get("active_extractor")
    for name, ex in (stats.get("extractors") or {}).items():
        recall = ex.get("recall_at_10")
        parts = [
            counted(ex.get("vectors"), "vector"),
            f"{ex.get('mode', '?')} search" + (f", recall@10 {recall:.2f}" if isinstance(recall, float) else ""),
            " ".join(
                str(part)
                for part in (ex.get("device", "?"), *((ex.get("precision") or {}).get(k) for k in ("engine", "used")))
                if part
            ),
            "text and pictures" if ex.get("text") else "pictures only",
        ]
        if ex.get("building"):
            parts.append("rebuilding")
        lines.append(_line("model", f"{name}{' (searches)' if name == active else ''}: {', '.join(parts)}"))
        change = ex.get("change")
        if change:
            lines.append(_line("change", change_line(name, change)))
    return lines


def change_line(name: str, change: ModelChange) -> str:
    """A model change in a line: from -> to, how far (done/total, rate, time left), or why it failed."""
    head = f"{name}: {change.get('from')} -> {change.get('to') or 'the configured model'}"
    if change.get("state") == "failed":
        return f"{head} failed: {change.get('error')}; {change.get('from')} goes on serving"
    done, total = change.get("done", 0), change.get("total", 0)
    # contents, not files: copies share a vector, so "different pictures"
    facts = [f"{done}/{total} different pictures" + (f" ({100 * done / total:.0f}%)" if total else "")]
    rate = change.get("rate")
    if isinstance(rate, int | float):
        facts.append(f"{rate:.1f}/s")
    eta = change.get("eta_seconds")
    if isinstance(eta, int | float):
        facts.append(f"{_seconds(eta)} left")
    if change.get("state") == "switching":
        facts.append("switching now")
    line = f"{head}, {', '.join(facts)}"
    return line + (f"; {change['error']}" if change.get("error") else "")


def _fallback_lines(fallback: Fallback | None) -> list[str]:
    """Which configured model is not running, why, what to fetch and where to put it: the daemon's
    own advice, line by line (``fallback.advice``), or its reason where an older daemon gives no advice."""
    if not fallback:
        return []
    head = f"{fallback.get('configured')} is not running; {fallback.get('running')} runs instead"
    advice = fallback.get("advice")
    said = [str(a) for a in advice] if isinstance(advice, list) and advice else [str(fallback.get("reason", ""))]
    width = max(40, shutil.get_terminal_size().columns - WIDTH - 1)
    wrapped = [
        part
        for line in said
        if line
        for part in textwrap.wrap(line, width, break_on_hyphens=False, break_long_words=False)
    ]
    return [_line("fallback", head), *(_line("", part) for part in wrapped)]


def _folder(folder: WatchedFolder) -> str:
    state = str(folder.get("state"))
    if folder.get("observer"):
        state += f" ({folder['observer']})"
    if folder.get("reason"):
        state += f": {folder['reason']}"
    scan = folder.get("last_scan")
    if scan:
        state += f", last scan {local_time(scan.get('at'))}: {counted(scan.get('found'), 'file')}"
    return f"{shown(str(folder.get('folder')))}  {state}"


def job_line(job: Job) -> str:
    """One folder job: state, count, folder, times (local ISO 8601)."""
    text = f"{job.get('state')} {job.get('done', 0)}/{counted(job.get('found', 0), 'file')}  {shown(str(job.get('folder')))}"
    text += f"  started {local_time(job.get('started'))}"
    if job.get("finished"):
        text += f", took {_seconds(job.get('seconds'))}"
    if job.get("error"):
        text += f"  error: {job['error']}"
    return text


def job_view(job: Job) -> str:
    """A finished (or followed) folder job, with what became of its files."""
    outcomes = ", ".join(f"{n} {what}" for what, n in (job.get("outcomes") or {}).items()) or "nothing to do"
    return f"{job_line(job)}\n{_line('outcomes', outcomes)}"


def add_view(answer: Added) -> str:
    """``/add``: a file indexed (or unchanged), or a folder's job started."""
    if "job" in answer:
        found = counted(answer.get("files_found"), "file")
        more = "" if answer.get("scan_complete") else " so far"
        return (
            f"adding {shown(str(answer.get('folder')))}: job {answer['job']}, {found} found{more}\n"
            f"follow it: imgsearchd add {shown(str(answer.get('folder')))} --wait"
        )
    status = answer.get("status")
    said = "already indexed and unchanged" if status == "unchanged" else str(status)
    return f"{shown(str(answer.get('image')))}: {said}"


def removed_view(answer: Removed) -> str:
    return f"{shown(str(answer.get('image')))}: {counted(answer.get('removed'), 'file')} left the index"


def rebuild_view(answer: Rebuilding) -> str:
    names = answer.get("rebuilding") or []
    return f"rebuilding the index of {', '.join(names)}" if names else "nothing to rebuild"
