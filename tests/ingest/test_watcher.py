"""The folder watcher, with real observers on temporary folders and the real daemon.

Each test runs the real ``Service`` (efficientnet, offline) and, where the HTTP side
matters, the real server from ``server_helpers``. Images are small (64-128 px) so
that embedding stays fast on two cores. Waits poll a condition with a deadline.
"""

from __future__ import annotations

import collections
import ctypes
import errno
import logging
import os
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from imgsearchd.config import load_config
from imgsearchd.ingest.outcomes import Outcome
from imgsearchd.ingest.watched import FolderStatus
from imgsearchd.media import files
from imgsearchd.media.failures import ImageError
from imgsearchd.service import Service

from helpers import Live, live_server, server_config, wait_for
from image_factory import jpeg_bytes

# Quick enough for tests; debounce and settle keep their production defaults
# where the test is about them (bursts, partial writes).
FAST = {"check_seconds": 0.2, "poll_seconds": 0.3, "settle_seconds": 1.0}


# -- helpers --------------------------------------------------------------------------


def quiet(service: Service, timeout: float = 60.0) -> None:
    """Wait until nothing is settling, scanning, queued or being indexed."""
    assert service.watcher is not None
    wait_for(lambda: service.watcher.idle() and service.queue.join(0), timeout, "the watcher and indexer to be idle")


def picture(photos: dict[str, Image.Image], i: int, side: int = 64) -> bytes:
    """A distinct small JPEG for every ``i`` (photo, size and rotation vary)."""
    names = sorted(photos)
    photo = photos[names[i % len(names)]].convert("RGB")
    return jpeg_bytes(photo.resize((side + i % 7, side + i % 5)).rotate(i * 3), quality=85)


def embedded(service: Service) -> int:
    assert service.loaded is not None
    return sum(e.images_embedded for e in service.loaded.extractors.values())


def indexed(service: Service, root: Path) -> dict[str, tuple[int, int]]:
    """path -> (size, mtime_ns) of the indexed files below ``root``."""
    assert service.catalog is not None
    return {
        p: (size, mtime)
        for p, (size, mtime, state) in service.catalog.files_under(str(root)).items()
        if state == "indexed"
    }


def on_disk(root: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for path in root.rglob("*.jpg"):
        st = path.stat()
        out[str(path)] = (st.st_size, st.st_mtime_ns)
    return out


def state_of(service: Service, root: Path) -> FolderStatus:
    assert service.watcher is not None
    return next(w for w in service.watcher.status() if w["folder"] == str(root))


@contextmanager
def watching(tmp_path: Path, folders: list[Path], **options: Any) -> Iterator[Service]:
    """The real service watching ``folders``, loaded and idle."""
    service = Service(load_config(server_config(tmp_path, watch={"directories": [str(f) for f in folders]})))
    service.watch_overrides = {**FAST, **options}
    service.load()
    try:
        quiet(service)
        yield service
    finally:
        service.close()


@contextmanager
def watched_server(tmp_path: Path, folders: list[Path], **options: Any) -> Iterator[Live]:
    """The real daemon (service + HTTP server) watching ``folders``, loaded and idle."""
    config = server_config(tmp_path, watch={"directories": [str(f) for f in folders]})
    with live_server(config, watch_overrides={**FAST, **options}) as live:
        quiet(live.service)
        yield live


def found(live: Live, probe: Path) -> set[str]:
    """Every image path /search returns for a query by ``probe``'s stored vector."""
    status, body = live.get("/search", image=str(probe), limit=100)
    assert status == 200, body
    return {r["image"] for r in body["results"]}


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> collections.Counter[str]:
    """Counts ``files.read_file`` calls (the only way the pipeline opens an image) by path."""
    counter: collections.Counter[str] = collections.Counter()
    original = files.read_file

    def counting(path: str, *args: Any, **kwargs: Any) -> Any:
        counter[path] += 1
        return original(path, *args, **kwargs)

    monkeypatch.setattr(files, "read_file", counting)
    return counter


# -- adds, partial writes, bursts -------------------------------------------------------


def test_500_copied_in_and_a_slow_writer_are_each_indexed_once_never_truncated(tmp_path, photos, reads):
    library, staging = tmp_path / "library", tmp_path / "staging"
    library.mkdir()
    staging.mkdir()
    for i in range(500):
        (staging / f"p{i:03d}.jpg").write_bytes(picture(photos, i))
    slow_versions = [picture(photos, 1000, side=128), picture(photos, 1001, side=128)]
    outcomes: list[tuple[str, Outcome, ImageError | None]] = []
    with watching(tmp_path, [library]) as service:
        assert service.pipeline is not None
        listener = service.pipeline.listener

        def recording(path: str, outcome: Outcome, error: ImageError | None) -> None:
            outcomes.append((path, outcome, error))
            if listener is not None:
                listener(path, outcome, error)

        service.pipeline.listener = recording

        def slow_writer(name: str, data: bytes) -> None:
            chunk = -(-len(data) // 10)
            # The writer's pace: 10 chunks over a second, the last one after a pause longer
            # than the debounce, so only waiting for the close keeps the half file unread.
            pauses = [0.06] * 8 + [0.5, 0.0]
            with open(library / name, "wb") as f:
                for start, pause in zip(range(0, len(data), chunk), pauses):
                    f.write(data[start : start + chunk])
                    f.flush()
                    time.sleep(pause)

        # one slow writer while the 500 are copied in, one more once the indexer is idle
        writer = threading.Thread(target=slow_writer, args=("slow1.jpg", slow_versions[0]))
        writer.start()
        for source in sorted(staging.iterdir()):
            shutil.copyfile(source, library / source.name)
        writer.join()
        wait_for(lambda: len(indexed(service, library)) == 501, 240, "501 indexed files")
        quiet(service)
        slow_writer("slow2.jpg", slow_versions[1])
        wait_for(lambda: len(indexed(service, library)) == 502, 30, "the second slow file")
        quiet(service)
        assert embedded(service) == 502
        assert service.catalog is not None
        assert service.catalog.counts()["by_state"] == {"indexed": 502}
        assert not [o for o in outcomes if o[1] == "failed"], "a file was read before it was complete"
    assert len(reads) == 502 and set(reads.values()) == {1}, "a file was read more than once"


def test_a_burst_of_50_writes_is_embedded_once(tmp_path, photos):
    library = tmp_path / "library"
    library.mkdir()
    versions = [picture(photos, i) for i in range(50)]
    with watching(tmp_path, [library], debounce_seconds=0.25) as service:
        before = embedded(service)
        target = library / "burst.jpg"
        for data in versions:  # 50 complete rewrites within about a second
            target.write_bytes(data)
            time.sleep(0.02)
        final = files.content_hash(versions[-1])
        assert service.catalog is not None
        wait_for(
            lambda: (r := service.catalog.get(str(target))) is not None and r.content_hash == final,
            what="the last version indexed",
        )
        quiet(service)
        assert embedded(service) - before == 1


def test_temporary_names_are_ignored_until_renamed(tmp_path, photos, reads):
    library = tmp_path / "library"
    library.mkdir()
    with watching(tmp_path, [library]) as service:
        assert service.catalog is not None
        temporary = [
            library / "download.jpg.part",
            library / "photo.jpg.crdownload",
            library / ".hidden.jpg",
            library / "edit.jpg~",
            library / "copy.jpg.tmp",
        ]
        for i, path in enumerate(temporary):
            path.write_bytes(picture(photos, i))
        # A real file written after them: once it is indexed, their events were seen too.
        (library / "real.jpg").write_bytes(picture(photos, 10))
        wait_for(lambda: service.catalog.get(str(library / "real.jpg")), what="the real file")
        quiet(service)
        assert set(indexed(service, library)) == {str(library / "real.jpg")}
        assert not any(str(p) in reads for p in temporary), "a temporary file was opened"
        before = embedded(service)
        (library / "download.jpg.part").rename(library / "download.jpg")
        wait_for(lambda: service.catalog.get(str(library / "download.jpg")), what="the renamed download")
        quiet(service)
        assert embedded(service) - before == 1


# -- deletions and moves, through the HTTP API ------------------------------------------


def test_deleted_file_leaves_search_within_2s_and_renames_keep_their_vectors(tmp_path, photos):
    library = tmp_path / "library"
    (library / "album").mkdir(parents=True)
    names = ["a.jpg", "b.jpg", "c.jpg", "album/d.jpg", "album/e.jpg"]
    for i, name in enumerate(names):
        (library / name).write_bytes(picture(photos, i, side=96))
    with watched_server(tmp_path, [library]) as live:
        service = live.service
        assert service.catalog is not None
        wait_for(lambda: len(indexed(service, library)) == 5, what="5 indexed files")
        probe = library / "c.jpg"
        assert found(live, probe) == {str(library / n) for n in names}
        passes = embedded(service)

        started = time.monotonic()
        (library / "a.jpg").unlink()
        wait_for(lambda: str(library / "a.jpg") not in found(live, probe), 2.0, "the deleted file to leave search")
        assert time.monotonic() - started <= 2.0

        ids = {n: service.catalog.get(str(library / n)).id for n in ("b.jpg", "album/d.jpg", "album/e.jpg")}
        (library / "b.jpg").rename(library / "renamed.jpg")
        (library / "album").rename(library / "trip")
        expected = {str(library / n) for n in ("c.jpg", "renamed.jpg", "trip/d.jpg", "trip/e.jpg")}
        wait_for(lambda: found(live, probe) == expected, 10, "the new paths in search and the old ones gone")
        quiet(service)
        assert embedded(service) == passes, "a renamed file was embedded again"
        assert service.catalog.get(str(library / "renamed.jpg")).id == ids["b.jpg"]
        assert service.catalog.get(str(library / "trip/d.jpg")).id == ids["album/d.jpg"]
        assert set(indexed(service, library)) == expected

        # moving out of the watched folder is a removal, moving in an add (the vector is reused)
        (library / "renamed.jpg").rename(tmp_path / "outside.jpg")
        wait_for(lambda: str(library / "renamed.jpg") not in found(live, probe), 10, "the moved-out file to go")
        (tmp_path / "outside.jpg").rename(library / "back.jpg")
        wait_for(lambda: str(library / "back.jpg") in found(live, probe), 10, "the moved-in file")
        quiet(service)
        assert embedded(service) == passes


def test_watched_root_renamed_away_is_offline_and_comes_back_without_reembedding(tmp_path, photos):
    library, probes = tmp_path / "library", tmp_path / "probes"
    (library / "sub").mkdir(parents=True)
    probes.mkdir()
    names = ["a.jpg", "b.jpg", "sub/c.jpg"]
    for i, name in enumerate(names):
        (library / name).write_bytes(picture(photos, i, side=96))
    probe = probes / "probe.jpg"
    probe.write_bytes(picture(photos, 7, side=96))
    everything = {str(library / n) for n in names} | {str(probe)}
    with watched_server(tmp_path, [library, probes]) as live:
        service = live.service
        assert service.catalog is not None
        wait_for(lambda: found(live, probe) == everything, what="all files searchable")
        passes = embedded(service)
        ids = {n: service.catalog.get(str(library / n)).id for n in names}

        library.rename(tmp_path / "library.unmounted")
        wait_for(lambda: found(live, probe) == {str(probe)}, 10, "the offline files to leave search")
        status, stats = live.get("/stats")
        assert status == 200
        entry = next(w for w in stats["watch"] if w["folder"] == str(library))
        assert entry["state"] == "offline" and entry["reason"] == "missing"
        rows = service.catalog.files_under(str(library))
        assert {Path(p).relative_to(library).as_posix() for p in rows} == set(names)
        assert {state for _, _, state in rows.values()} == {"offline"}

        (tmp_path / "library.unmounted").rename(library)
        wait_for(lambda: found(live, probe) == everything, 10, "the files back in search")
        assert state_of(service, library)["state"] == "watching"
        quiet(service)
        assert embedded(service) == passes, "a file that came back was embedded again"
        assert {n: service.catalog.get(str(library / n)).id for n in names} == ids


def test_root_replaced_by_an_empty_folder_is_offline_like_an_unmounted_disk(tmp_path, photos):
    library = tmp_path / "mnt"
    library.mkdir()
    for i in range(3):
        (library / f"p{i}.jpg").write_bytes(picture(photos, i))
    with watching(tmp_path, [library]) as service:
        wait_for(lambda: len(indexed(service, library)) == 3, what="3 indexed files")
        passes = embedded(service)
        library.rename(tmp_path / "disk")
        library.mkdir()  # what an unmounted mount point looks like
        wait_for(
            lambda: (
                state_of(service, library)["state"] == "offline"
                and "unmounted" in (state_of(service, library)["reason"] or "")
            ),
            10,
            "the folder offline",
        )
        quiet(service)
        assert service.catalog is not None
        assert service.catalog.count_under(str(library), ["offline"]) == 3
        library.rmdir()
        (tmp_path / "disk").rename(library)  # mounted again
        wait_for(lambda: len(indexed(service, library)) == 3, 10, "the files back")
        quiet(service)
        assert embedded(service) == passes


# -- restarts ------------------------------------------------------------------------------


def test_changes_made_while_stopped_are_reconciled_at_start_without_opening_unchanged_files(tmp_path, photos, reads):
    library = tmp_path / "library"
    library.mkdir()
    for i in range(6):
        (library / f"p{i}.jpg").write_bytes(picture(photos, i))
    with watching(tmp_path, [library]) as service:
        wait_for(lambda: indexed(service, library) == on_disk(library), what="the first index")

    # the daemon is down: two added, one changed, one deleted
    (library / "new1.jpg").write_bytes(picture(photos, 20))
    (library / "sub").mkdir()
    (library / "sub" / "new2.jpg").write_bytes(picture(photos, 21))
    (library / "p1.jpg").write_bytes(picture(photos, 22))
    (library / "p2.jpg").unlink()
    past = time.time() - 60  # written a while ago, so nothing waits to settle
    for path in (library / "new1.jpg", library / "sub" / "new2.jpg", library / "p1.jpg"):
        os.utime(path, (past, past))

    reads.clear()
    with watching(tmp_path, [library]) as service:
        wait_for(lambda: indexed(service, library) == on_disk(library), what="the catalogue to match the disk")
        quiet(service)
        assert embedded(service) == 3
        assert set(reads) == {str(library / "new1.jpg"), str(library / "sub" / "new2.jpg"), str(library / "p1.jpg")}
        scan = state_of(service, library)["last_scan"]
        assert scan is not None and (scan["queued"], scan["removed"], scan["unchanged"]) == (3, 1, 4)


# -- fallbacks -----------------------------------------------------------------------------


def test_forced_polling_still_catches_an_add_and_a_delete(tmp_path, photos):
    library = tmp_path / "library"
    library.mkdir()
    with watching(tmp_path, [library], force_polling=True, settle_seconds=0.5) as service:
        entry = state_of(service, library)
        assert entry["state"] == "polling" and entry["observer"] == "polling"
        (library / "added.jpg").write_bytes(picture(photos, 1))
        wait_for(lambda: str(library / "added.jpg") in indexed(service, library), 10, "the polled add")
        (library / "added.jpg").unlink()
        wait_for(lambda: not indexed(service, library), 10, "the polled delete")


@pytest.mark.parametrize("where", ["root", "subfolder"])
def test_out_of_inotify_watches_falls_back_to_polling_and_says_so(tmp_path, photos, monkeypatch, caplog, where):
    from watchdog.observers import inotify_c

    library = tmp_path / "library"
    (library / "deep").mkdir(parents=True)
    (library / "deep" / "old.jpg").write_bytes(picture(photos, 0))
    refused = os.fsencode(library if where == "root" else library / "deep")
    real_add_watch = inotify_c.inotify_add_watch

    def add_watch(fd: int, path: bytes, mask: int) -> int:
        if path == refused:  # what the kernel answers when fs.inotify.max_user_watches is reached
            ctypes.set_errno(errno.ENOSPC)
            return -1
        return real_add_watch(fd, path, mask)

    monkeypatch.setattr(inotify_c, "inotify_add_watch", add_watch)
    caplog.set_level(logging.WARNING, logger="imgsearchd.ingest.watcher")
    with watching(tmp_path, [library], settle_seconds=0.5) as service:
        wait_for(lambda: state_of(service, library)["state"] == "polling", 10, "the fallback to polling")
        assert "inotify watches" in state_of(service, library)["reason"]
        assert any("inotify watches" in r.getMessage() and "polling" in r.getMessage() for r in caplog.records)
        wait_for(lambda: str(library / "deep" / "old.jpg") in indexed(service, library), 10, "the rescan")
        (library / "deep" / "new.jpg").write_bytes(picture(photos, 1))
        wait_for(lambda: str(library / "deep" / "new.jpg") in indexed(service, library), 10, "the polled add")
        (library / "deep" / "old.jpg").unlink()
        wait_for(lambda: set(indexed(service, library)) == {str(library / "deep" / "new.jpg")}, 10, "the polled delete")


def test_inotify_queue_overflow_falls_back_to_polling_and_rescans(tmp_path, photos, monkeypatch, caplog):
    from watchdog.observers.inotify_c import InotifyConstants, InotifyEvent, WatchDescriptor

    library = tmp_path / "library"
    library.mkdir()
    caplog.set_level(logging.WARNING, logger="imgsearchd.ingest.watcher")
    with watching(tmp_path, [library], settle_seconds=0.5) as service:
        watcher = service.watcher
        assert watcher is not None and state_of(service, library)["observer"] == "inotify"
        # Lose the events of one file, as an overflowing kernel queue would.
        lost: list[str] = []
        monkeypatch.setattr(watcher, "_on_event", lambda root, gen, event, src, dest: lost.append(src))
        (library / "lost.jpg").write_bytes(picture(photos, 3))
        wait_for(lambda: str(library / "lost.jpg") in lost, what="the lost events")
        monkeypatch.undo()
        observer = watcher._folders[str(library)].observer
        observer._fd.handle_event(InotifyEvent(WatchDescriptor(-1), InotifyConstants.IN_Q_OVERFLOW, 0, b""))

        wait_for(lambda: str(library / "lost.jpg") in indexed(service, library), 10, "the rescan to find the lost file")
        entry = state_of(service, library)
        assert entry["state"] == "polling" and "overflowed" in entry["reason"]
        assert any("overflowed" in r.getMessage() for r in caplog.records)
        (library / "later.jpg").write_bytes(picture(photos, 4))
        wait_for(lambda: str(library / "later.jpg") in indexed(service, library), 10, "the polled add")


# -- run-time folder changes -------------------------------------------------------------------


def test_reload_adds_and_removes_folders(tmp_path, photos):
    first, second = tmp_path / "first", tmp_path / "second"
    for folder, start in ((first, 0), (second, 10)):
        folder.mkdir()
        for i in range(2):
            (folder / f"p{i}.jpg").write_bytes(picture(photos, start + i))
    with watching(tmp_path, [first]) as service:
        wait_for(lambda: len(indexed(service, first)) == 2, what="the first folder")
        assert service.watcher is not None
        both = load_config(server_config(tmp_path, watch={"directories": [str(first), str(second)]}))
        service.apply_config(both)
        wait_for(lambda: len(indexed(service, second)) == 2, 10, "the added folder")
        assert [(w["folder"], w["state"]) for w in service.stats()["watch"]] == [
            (str(first), "watching"),
            (str(second), "watching"),
        ]

        service.apply_config(load_config(server_config(tmp_path, watch={"directories": [str(second)]})))
        wait_for(lambda: [w["folder"] for w in service.watcher.status()] == [str(second)], what="the folder dropped")
        quiet(service)
        assert len(indexed(service, first)) == 2  # no longer watched, still in the catalogue
        (second / "p2.jpg").write_bytes(picture(photos, 12))
        wait_for(lambda: len(indexed(service, second)) == 3, 10, "an add in the folder still watched")


def test_a_watched_folder_given_as_a_symbolic_link_is_watched_under_its_own_name(tmp_path, photos):
    real = tmp_path / "disk" / "pictures"
    real.mkdir(parents=True)
    library = tmp_path / "pictures"
    library.symlink_to(real, target_is_directory=True)
    with watching(tmp_path, [library]) as service:
        assert state_of(service, library)["observer"] == "inotify"
        (real / "a.jpg").write_bytes(picture(photos, 1))
        wait_for(lambda: set(indexed(service, library)) == {str(library / "a.jpg")}, 10, "the file, by the link's path")
        (real / "a.jpg").unlink()
        wait_for(lambda: not indexed(service, library), 10, "the deletion")
