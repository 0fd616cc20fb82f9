"""Backfill on a real Ray cluster: the whole pipeline, a killed worker, a killed driver.

One module-scoped cluster (``ray start --head`` on loopback, this machine's 2 CPUs) serves
the test that needs it; the other tests drive the worker and the driver's writes directly
(``FileEmbedder`` is a plain callable), so they run without Ray.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageOps

from imgsearchd.bulk import status
from imgsearchd.bulk.backfill import (
    Backfill,
    BackfillError,
    ClusterOptions,
    actor_shape,
    check_reachable,
    mapped,
    only_backfill,
    plan,
    plan_table,
)
from imgsearchd.bulk.status import BackfillProgress, BackfillStatus, State
from imgsearchd.bulk.worker import FileEmbedder, for_workers, model_column
from imgsearchd.extractors.precision import INT8_ID
from imgsearchd.extractors.registry import extractor_settings
from imgsearchd.ingest.pipeline import Pipeline
from imgsearchd.media.limits import ImageLimits
from imgsearchd.store.catalog import Catalog

from helpers import EFFICIENTNET_FP32, REPO, cli_command, free_port, live_server, skimage_photos, wait_for, write_config

# Found, not imported: Ray with pandas and pyarrow in pytest's own process made every later test
# about 10% slower (a far larger heap for the garbage collector to walk); only the drivers import it.
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None, reason="make test installs Ray (the [ray] extra)"
)

WORKER_TITLE = b"ray::MapWorker(MapBatches(FileEmbedder))"


def ray_env(folder: Path) -> dict[str, str]:
    """The environment for Ray's processes and drivers: no usage report, and token authentication
    with a token of the test's own in ``folder``. Ray's default token is ~/.ray/auth_token, which
    a fresh machine (and CI, whose HOME is empty) does not have: there ``ray start`` exits at once."""
    folder.mkdir(parents=True, exist_ok=True)
    token = folder / "ray-auth-token"
    if not token.exists():
        token.write_text(secrets.token_hex(32), encoding="ascii")
        token.chmod(0o600)
    return {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}


@dataclass(frozen=True)
class RayCluster:
    address: str
    env: dict[str, str]  # what a driver needs to join it (its token)


@functools.cache
def _photos() -> list[Image.Image]:
    return [photo.convert("RGB") for photo in skimage_photos().values()]


def make_archive(folder: Path, count: int) -> list[Path]:
    """``count`` real photos (crops, flips and tints of scikit-image's), one with a name that is
    not UTF-8, in two folders; and one truncated JPEG that must be recorded as failed."""
    photos = _photos()
    (folder / "sub").mkdir(parents=True)
    paths = []
    for i in range(count):
        photo = photos[i % len(photos)]
        w, h = photo.size
        k = i // len(photos)
        c = k % 20  # 20 crops (up to a quarter of each side), mirrored or not, tinted or not: 80 per photo
        picture = photo.crop((c * w // 80, c * h // 90, w - c * w // 70, h - c * h // 100)).resize((256, 192))
        if (k // 20) % 2:
            picture = ImageOps.mirror(picture)
        if (k // 40) % 2:
            picture = Image.blend(picture, Image.new("RGB", picture.size, (40 * (k % 6), 90, 160)), 0.15)
        name = f"photo-{i:04d}.jpg" if i % 3 else f"sub/photo-{i:04d}.jpg"
        paths.append(folder / name)
        picture.save(paths[-1], quality=88)
    odd = os.fsdecode(os.fsencode(str(folder)) + b"/caf\xe9-latin1.jpg")
    os.rename(paths[0], odd)
    paths[0] = Path(odd)
    broken = folder / "sub" / "truncated.jpg"
    broken.write_bytes(paths[1].read_bytes()[:700])
    paths.append(broken)
    return paths


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayCluster]:
    """A real Ray cluster on loopback, stopped (with every process it started) at the end."""
    env = ray_env(tmp_path_factory.mktemp("ray-auth"))
    port = free_port()
    temp = Path(f"/tmp/ray-isd-{os.getpid()}")  # short: Ray's unix socket paths must fit 107 bytes
    log = tmp_path_factory.mktemp("ray") / "ray-start.log"
    command = [
        str(Path(sys.executable).with_name("ray")),
        "start",
        "--head",
        "--block",
        f"--port={port}",
        "--node-ip-address=127.0.0.1",
        "--num-cpus=2",
        "--include-dashboard=false",
        "--object-store-memory=300000000",
        f"--temp-dir={temp}",
    ]
    with open(log, "w") as out:
        # Its own session: the cluster's processes (GCS, raylet, agents, workers) share its group.
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        wait_for(lambda: proc.poll() is None and b"block forever" in log.read_bytes(), 90, "ray start")
        yield RayCluster(f"127.0.0.1:{port}", env)
    finally:
        proc.send_signal(signal.SIGTERM)  # --block: stops the cluster's processes and exits
        try:
            proc.wait(3)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # whatever did not stop in time
        proc.wait()
        shutil.rmtree(temp, ignore_errors=True)


def backfill_config(tmp_path: Path, data: Path) -> Path:
    return write_config(
        tmp_path / f"{data.name}.toml",
        {
            "index": {"data_dir": str(data), "extractors": ["efficientnet"], "fallback_extractor": ""},
            "extractors.efficientnet": dict(EFFICIENTNET_FP32),
        },
    )


def catalogued(data: Path) -> dict[bytes, tuple[int, str]]:
    """path -> (file id, state) as committed now (read with plain sqlite3, as another reader would)."""
    db = data / "catalog.sqlite3"
    if not db.exists():
        return {}
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
            return {bytes(p): (i, s) for p, i, s in conn.execute("SELECT CAST(path AS BLOB), id, state FROM files")}
    except sqlite3.OperationalError:  # created, not yet given its tables
        return {}


def status_of(catalog: Catalog, now: float | None = None) -> BackfillStatus:
    """The backfill's record as /stats shows it; there must be one."""
    found = status.status(catalog, now)
    assert found is not None, "no backfill record in the catalogue"
    return found


def worker_pids() -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if f.read().startswith(WORKER_TITLE):
                        found.append(int(entry))
            except OSError:
                continue
    return found


@contextmanager
def backfilling(archive: Path, config: Path, cluster: RayCluster) -> Iterator[subprocess.Popen[str]]:
    """``imgsearchd backfill`` running; killed if still running when the block ends."""
    command = cli_command(
        "backfill", str(archive), "--ray", cluster.address, "--config", str(config), "--files-per-task", "16"
    )
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cluster.env)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


@pytest.mark.cluster
def test_a_backfill_on_a_ray_cluster_loses_nothing_doubles_nothing_and_equals_local_indexing(
    ray_cluster: RayCluster, tmp_path: Path, efficientnet: Any
) -> None:
    import json

    archive = tmp_path / "archive"
    # 400: on a quiet 2-core Zen 4 the restarted actor embeds 200 files in about 1.5 s, all of them
    # delivered before a stop sent once 48 more were committed: the stop did not fall mid-run.
    files = make_archive(archive, 400)
    expected = {os.fsencode(str(p)) for p in files}
    data = tmp_path / "data"
    config = backfill_config(tmp_path, data)

    # 1. A worker is killed mid-run (Ray restarts it and retries its task), then the driver is
    #    stopped (SIGTERM, as systemd or kill does) as soon as the new worker is up and a batch is
    #    committed after the kill. (A driver killed outright loses only the results not yet
    #    committed: every write is one transaction.)
    with backfilling(archive, config, ray_cluster) as first:
        wait_for(lambda: first.poll() is None and len(catalogued(data)) >= 16 and worker_pids(), 180, "a worker")
        killed = worker_pids()[0]
        os.kill(killed, signal.SIGKILL)
        after_kill = len(catalogued(data))
        wait_for(
            lambda: first.poll() is None and set(worker_pids()) - {killed} and len(catalogued(data)) > after_kill,
            180,
            "the restarted worker",
        )
        first.send_signal(signal.SIGTERM)
        _out, err = first.communicate(timeout=90)
        assert first.returncode == 130 and "backfill stopped" in err, err[-3000:]
    kept = catalogued(data)
    assert len(kept) < len(expected), "the stop must fall mid-run for this test to mean anything"
    assert killed not in worker_pids()
    with Catalog(data / "catalog.sqlite3") as catalog:
        stopped = status_of(catalog)
        assert stopped["state"] == State.STOPPED and stopped["done"] == len(kept), stopped

    # 2. The rerun, with a daemon serving the same catalogue meanwhile.
    with live_server(backfill_config(tmp_path, data)) as live, backfilling(archive, config, ray_cluster) as second:
        wait_for(lambda: second.poll() is None and len(catalogued(data)) > len(kept), 180, "the rerun's first batch")
        status, stats = live.get("/stats")
        assert status == 200 and stats["backfill"]["state"] == State.RUNNING, stats.get("backfill")
        assert stats["backfill"]["cluster"] == ray_cluster.address
        out, err = second.communicate(timeout=240)
        assert second.returncode == 0, err[-3000:]
        summary = json.loads(out)
        # The daemon's index pulled the backfilled vectors by itself: a photo finds itself.
        probe = str(files[-2])
        status, found = live.get("/search", image=probe, limit=3)
        assert status == 200 and found["results"][0]["image"] == probe and found["results"][0]["distance"] < 1e-3
        status, stats = live.get("/stats")
        assert stats["backfill"]["state"] == State.FINISHED and stats["backfill"]["left"] == 0

    # Nothing lost, nothing twice: every file once; the rows the crash left are the same rows.
    rows = catalogued(data)
    assert set(rows) == expected
    assert all(rows[path] == kept[path] for path in kept), "rows committed before the crash were written again"
    assert summary["planned"] == len(expected) - len(kept)
    assert summary["embedded"] + summary["failed"] == summary["planned"] and summary["failed"] <= 1
    assert rows[os.fsencode(str(files[-1]))][1] == "failed"  # the truncated JPEG, recorded with its reason

    # 3. Planned again, nothing is left to do.
    with Catalog(data / "catalog.sqlite3") as catalog:
        again = plan(catalog, [str(archive)], ["jpg"], True, {"efficientnet": efficientnet.model_id}, None)
        assert again.paths == [] and again.unchanged == len(expected)

    # 4. The vectors equal what `imgsearchd index` makes of the same files here.
    with Catalog(data / "catalog.sqlite3") as remote, Catalog(tmp_path / "local.sqlite3") as local:
        with Pipeline(local, {"efficientnet": efficientnet}, loader_threads=2) as pipeline:
            pipeline.process([str(p) for p in files[:-1:3]])
        record = remote.get(str(files[5]))
        assert record is not None and record.content_hash is not None
        assert remote.models_present(record.content_hash) == {"efficientnet": efficientnet.model_id}
        for path in files[:-1:3]:  # every third file: the comparison is the point, not the count
            ours = remote.vector_for_path(str(path), "efficientnet", efficientnet.model_id)
            theirs = local.vector_for_path(str(path), "efficientnet", efficientnet.model_id)
            assert ours is not None and theirs is not None, path
            assert float(ours[1] @ theirs[1]) >= 0.9999, path
            assert ours[0].content_hash == theirs[0].content_hash
        facts = remote.result_facts([str(p) for p in files[:-1:3]])
        assert facts == local.result_facts([str(p) for p in files[:-1:3]])  # hashes and photo metadata


def test_the_backfill_benchmarks_own_parts_run(tmp_path: Path, efficientnet: Any) -> None:
    """bench/bench_backfill.py's tiny case, without its Ray run: that run is ``Backfill.run``, which
    test_a_backfill_on_a_ray_cluster drives through the CLI (a second cluster start, driver and actor
    cost 24 s here), and mypy checks the bench's calls into it. Its own parts run here."""
    sys.path.insert(0, str(REPO / "bench"))
    try:
        import bench_backfill
    finally:
        sys.path.remove(str(REPO / "bench"))
    files = [str(p) for p in make_archive(tmp_path / "a", 4)[:4]]
    assert bench_backfill.run_index(efficientnet, files, tmp_path)["img_s"] > 0
    assert bench_backfill.write_ceiling(512, 600, tmp_path) > 0
    assert not list(tmp_path.glob("*.sqlite3*"))  # each run's catalogue removed


# -- without a cluster --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def worker() -> Iterator[FileEmbedder]:
    """A Ray Data actor's object, made here as Ray would make it (the constructor's arguments)."""
    settings = {
        "efficientnet": extractor_settings(
            "efficientnet", {"device": "cpu", "batch_size": 8, "precision": "fp32", "engine": "torch"}
        )
    }
    made = FileEmbedder(settings, ImageLimits(), None, np.array([], dtype="S32"), threads=2)
    yield made
    made._pool.shutdown()


def batch_of(paths: list[Path], start: int = 0) -> dict[str, np.ndarray]:
    encoded = [os.fsencode(str(p)) for p in paths]
    return {
        "row": np.arange(start, start + len(paths)),
        "path": np.array(encoded, dtype=object),
    }  # no "open": the workers reach the files at the same paths (plan_table)


def driver(catalog: Catalog, efficientnet: Any, planned: int) -> Backfill:
    backfill = Backfill(
        catalog,
        {"efficientnet": efficientnet},
        {},
        ImageLimits(),
        None,
        ClusterOptions(address="test"),
        BackfillProgress(folders=["/x"], address="test"),
    )
    backfill._written = np.zeros(planned, dtype=bool)
    backfill.progress.planned = planned
    return backfill


def test_known_content_is_not_decoded_on_the_worker_and_a_repeated_result_is_written_once(
    tmp_path: Path, efficientnet: Any, worker: FileEmbedder
) -> None:
    archive = tmp_path / "a"
    files = make_archive(archive, 6)[:6]
    copy = archive / "copy-of-3.jpg"
    shutil.copyfile(files[3], copy)
    with Catalog(tmp_path / "c.sqlite3") as catalog:
        with Pipeline(catalog, {"efficientnet": efficientnet}, loader_threads=2) as pipeline:
            pipeline.process([str(files[3])])
        worker.known = np.array(catalog.hashes_with_vectors({"efficientnet": efficientnet.model_id}), dtype="S32")
        assert worker.extractors["efficientnet"].model_id == efficientnet.model_id
        before = worker.extractors["efficientnet"].images_embedded
        results = worker(batch_of([*files[:3], copy]))
        assert results["embedded_efficientnet"].tolist() == [True, True, True, False]  # the copy: known content
        assert worker.extractors["efficientnet"].images_embedded == before + 3
        backfill = driver(catalog, efficientnet, 4)
        backfill._take(results)
        backfill._take(results)  # Ray delivered it twice
        backfill._write()
        assert (backfill.progress.embedded, backfill.progress.reused, backfill.progress.repeated) == (3, 1, 4)
        stored = catalog.vector_for_path(str(copy), "efficientnet", efficientnet.model_id)
        original = catalog.vector_for_path(str(files[3]), "efficientnet", efficientnet.model_id)
        assert stored is not None and original is not None and np.array_equal(stored[1], original[1])
        assert catalog.counts()["files"] == 5
        assert status_of(catalog)["done"] == 4


def test_vectors_from_another_model_are_refused_naming_both(
    tmp_path: Path, efficientnet: Any, worker: FileEmbedder
) -> None:
    files = make_archive(tmp_path / "a", 3)[:2]
    results = worker(batch_of(files))
    results[model_column("efficientnet")][:] = "efficientnet_lite0:other-weights"
    with Catalog(tmp_path / "c.sqlite3") as catalog:
        with pytest.raises(BackfillError, match=r"efficientnet_lite0:other-weights.*this machine's efficientnet is"):
            driver(catalog, efficientnet, 2)._take(results)
        assert catalog.counts()["files"] == 0


def test_the_plan_is_a_scans_plan(tmp_path: Path, efficientnet: Any) -> None:
    files = make_archive(tmp_path / "a", 9)
    with Catalog(tmp_path / "c.sqlite3") as catalog:
        with Pipeline(catalog, {"efficientnet": efficientnet}, loader_threads=2) as pipeline:
            pipeline.process([str(files[2])])
        models = {"efficientnet": efficientnet.model_id}
        found = plan(catalog, [str(tmp_path / "a"), str(tmp_path / "a" / "sub")], ["jpg"], True, models, None)
        assert sorted(found.paths) == sorted(str(p) for p in files if p != files[2])  # overlap planned once
        assert found.unchanged == 1
        assert (
            plan(catalog, [str(tmp_path / "a")], ["jpg"], True, {"efficientnet": "another-model"}, None).unchanged == 0
        )
        with pytest.raises(FileNotFoundError):
            plan(catalog, [str(tmp_path / "nowhere")], ["jpg"], True, models, None)


def test_workers_run_an_int8_index_on_their_cpus_and_the_rest_on_the_device() -> None:
    """OpenVINO int8's vectors have their own model id: a GPU's would be refused by the driver."""
    settings = extractor_settings("clip", {"engine": "auto", "precision": "auto", "device": "auto"})
    int8 = for_workers(settings, "clip:ViT-B-32:openai:squash" + INT8_ID, "auto")
    assert (int8.device, int8.engine, int8.precision) == ("cpu", "openvino", "int8")
    floats = for_workers(settings, "clip:ViT-B-32:openai:squash", "auto")
    assert (floats.device, floats.engine, floats.precision) == ("auto", "auto", "auto")
    assert for_workers(settings, "", "cpu").device == "cpu"


def test_actor_shape_and_path_map() -> None:
    assert actor_shape({"CPU": 64, "GPU": 4}, ClusterOptions("auto")) == (4, 8.0, 1.0)
    assert actor_shape({"CPU": 16}, ClusterOptions("auto")) == (4, 4.0, 0.0)
    assert actor_shape({"CPU": 2}, ClusterOptions("auto")) == (1, 2.0, 0.0)
    assert actor_shape({"CPU": 16, "GPU": 2}, ClusterOptions("auto", gpus_per_actor=0, actors=2)) == (2, 8.0, 0.0)
    pairs = [("/photos", "/mnt/nas/photos")]
    assert mapped("/photos/2019/a.jpg", pairs) == "/mnt/nas/photos/2019/a.jpg"
    assert mapped("/photos-old/a.jpg", pairs) == "/photos-old/a.jpg"


def test_a_record_nobody_updates_reads_interrupted(tmp_path: Path) -> None:
    with Catalog(tmp_path / "c.sqlite3") as catalog:
        assert status.status(catalog) is None
        progress = BackfillProgress(folders=["/photos"], address="auto", state=State.RUNNING, planned=10, done=4)
        progress.save(catalog)
        assert status_of(catalog)["state"] == State.RUNNING
        late = status_of(catalog, now=time.time() + status.STALE_AFTER_S + 1)
        assert late["state"] == State.INTERRUPTED and late["left"] == 6 and late["eta_s"] is None


def test_without_ray_backfill_says_how_to_install_it(tmp_path: Path, offline_config: Path) -> None:
    (tmp_path / "photos").mkdir()
    code = (
        "import sys; sys.modules['ray'] = None\n"  # as if Ray were not installed
        "from imgsearchd.cli.main import main\n"
        f"sys.exit(main(['backfill', {str(tmp_path / 'photos')!r}, '--ray', 'auto', '--config', {str(offline_config)!r}]))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "pip install 'imgsearchd[ray]'" in done.stderr


def test_ray_is_not_a_dependency_of_a_plain_install() -> None:
    """``pip install imgsearchd`` pulls neither Ray nor pyarrow; the [ray] extra (and [test]) does."""
    from importlib.metadata import requires

    plain = [r for r in requires("imgsearchd") or [] if "extra ==" not in r]
    assert plain and not [r for r in plain if r.lower().startswith(("ray", "pyarrow"))]
    extra = [r.replace(" ", "") for r in requires("imgsearchd") or [] if 'extra=="ray"' in r.replace(" ", "")]
    assert any(r.startswith("ray[data]") for r in extra) and any(r.startswith("pyarrow") for r in extra)


@pytest.mark.process
def test_a_dead_ray_address_is_refused_at_once_naming_it(tmp_path: Path, offline_config: Path) -> None:
    (tmp_path / "photos").mkdir()
    address = f"127.0.0.1:{free_port()}"  # nothing listens: ray.init would retry it for minutes
    started = time.monotonic()
    done = subprocess.run(
        cli_command("backfill", str(tmp_path / "photos"), "--ray", address, "--config", str(offline_config)),
        capture_output=True,
        text=True,
        timeout=60,
        env=ray_env(tmp_path),
    )
    assert done.returncode == 1, done.stderr[-2000:]
    assert f"nothing answers at the Ray address {address!r}" in done.stderr
    assert time.monotonic() - started < 30
    with pytest.raises(BackfillError, match="not a Ray address"):
        check_reachable("photos-server")


@pytest.mark.process
def test_a_second_backfill_of_the_same_catalogue_is_refused_naming_the_first(
    tmp_path: Path, offline_config: Path
) -> None:
    (tmp_path / "photos").mkdir()
    (tmp_path / "data").mkdir()
    with only_backfill(tmp_path / "data" / "catalog.sqlite3"):  # the first backfill, in this process
        done = subprocess.run(
            cli_command("backfill", str(tmp_path / "photos"), "--ray", "local", "--config", str(offline_config)),
            capture_output=True,
            text=True,
            timeout=120,
            env=ray_env(tmp_path),
        )
        assert done.returncode == 1, done.stderr[-2000:]
        assert f"another backfill (process {os.getpid()}) is running on the catalogue" in done.stderr
    with only_backfill(tmp_path / "data" / "catalog.sqlite3"):  # released with its holder
        pass


def test_results_whose_write_failed_are_kept_for_the_last_try_and_never_counted_done(
    tmp_path: Path, efficientnet: Any, worker: FileEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = make_archive(tmp_path / "a", 3)[:3]
    results = worker(batch_of(files))
    with Catalog(tmp_path / "c.sqlite3") as catalog:
        backfill = driver(catalog, efficientnet, 3)
        backfill._take(results)

        def full_disk(_rows: object) -> int:
            raise sqlite3.OperationalError("disk I/O error")

        with monkeypatch.context() as patched:  # the disk fails once (or a Ctrl-C falls inside the write)
            patched.setattr(catalog, "record_batch", full_disk)
            with pytest.raises(sqlite3.OperationalError):
                backfill._write()
        assert catalog.counts()["files"] == 0 and backfill.progress.done == 0
        backfill._finish_early(State.FAILED, "disk I/O error")  # its last try succeeds
        assert catalog.counts()["files"] == 3
        assert status_of(catalog)["done"] == 3 and status_of(catalog)["state"] == State.FAILED


def test_the_plan_table_names_files_twice_only_under_a_path_map(tmp_path: Path, worker: FileEmbedder) -> None:
    files = make_archive(tmp_path / "a", 2)[:2]
    assert plan_table([str(p) for p in files], []).column_names == ["row", "path"]
    here = [str(p).replace(str(tmp_path), "/photos") for p in files]  # the catalogue's names
    table = plan_table(here, [("/photos", str(tmp_path))])
    assert table.column("open").to_pylist() == [os.fsencode(str(p)) for p in files]
    results = worker({name: np.array(table.column(name).to_pylist(), dtype=object) for name in table.column_names})
    assert [os.fsdecode(p) for p in results["path"]] == here  # stored under the catalogue's names
    assert results["error_reason"].tolist() == ["", ""] and results["embedded_efficientnet"].all()


def test_the_heartbeat_saves_at_once_and_on_time_until_the_block_ends(tmp_path: Path) -> None:
    """While a plan walks millions of files, /stats must read 'planning', not 'interrupted'."""
    with Catalog(tmp_path / "c.sqlite3") as catalog:
        progress = BackfillProgress(folders=["/photos"], address="auto")
        saves: list[float] = []

        def save() -> None:
            saves.append(time.monotonic())
            progress.save(catalog)

        with status.heartbeat(save, every=0.05):
            assert len(saves) == 1 and status_of(catalog)["state"] == State.PLANNING
            time.sleep(0.4)
        count = len(saves)
        assert count >= 4
        time.sleep(0.15)
        assert len(saves) == count  # stopped with the block
        assert not [t for t in threading.enumerate() if t.name == "imgsearchd-backfill-heartbeat"]
