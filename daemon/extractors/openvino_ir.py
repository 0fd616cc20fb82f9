"""torch models converted to OpenVINO's format once, cached under the data folder by model id and engine version.

A cached model is a folder ``DATA_DIR/models/NAME-PART-FORM-ID-DIGEST/`` holding ``model.xml`` and
``model.bin``; ID is a digest of the model id, DIGEST covers the model id, the part (image, the image's fp32 head and its rest,
text), the weights' form (fp32, int8), the versions of OpenVINO, torch and NNCF (int8) and of the
calibration pictures: a change of any of them converts again, and the older folders of that
name, part, form and model id are removed then (another model's stay: a model change runs two). A folder appears whole (written beside, then renamed), so
two processes converting at once leave one good copy; one that cannot be read is made again, and
so is one that reads but fails the check an earlier start passed it with (engines: ``reading``).

OpenVINO and NNCF send usage data to Google Analytics unless told otherwise (openvino_telemetry:
"collected by default", and a conversion or a quantisation is a reported event). A local image
index must not call out: both libraries fall back to a stub when ``openvino_telemetry`` cannot be
imported, so ``openvino()`` blocks that import before the first import of either.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import hashlib
import io
import logging
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger("imgsearchd.extractors")

# Bumped when what a cached model holds changes for the same versions (a new cut, new calibration).
FORMAT = 2  # 2: int8 without SmoothQuant


def openvino() -> Any:
    """The ``openvino`` module, imported with its telemetry (and NNCF's) blocked; ImportError when absent."""
    if "openvino_telemetry" not in sys.modules:
        sys.modules["openvino_telemetry"] = None  # type: ignore[assignment]  # `import` raises ImportError
    import openvino as ov

    return ov


@functools.cache
def core() -> Any:
    """The process's one OpenVINO ``Core``, kept for its life.

    Measured: two models compiled by two Cores in a test process, used and freed, and the next
    SIGTERM (the daemon's stop) crashed the process with SIGSEGV in its signal handler. The CPU
    plugin is unloaded with the last Core; one Core that lives as long as the process keeps it.
    """
    return openvino().Core()


def nncf() -> Any:
    """The ``nncf`` module, its telemetry blocked (``openvino()`` first); ImportError when absent."""
    openvino()
    # NNCF's quantisation loads torch's C++ extension helper, which warns "No CUDA runtime is found"
    # where torch is a CUDA build on a machine without CUDA: a line in the daemon's log, for nothing.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    import nncf as nncf_module

    return nncf_module


@dataclass(frozen=True)
class Part:
    """What one cached model is: whose (``name``, ``model_id``), which ``part``, weights ``form``."""

    name: str
    model_id: str
    part: str  # "image", "image-head" (the fp32 stages), "image-rest", "text"
    form: str = "fp32"  # "fp32" or "int8"

    def folder(self, models_dir: Path, calibration: str = "") -> Path:
        """Where this part is cached: its digest covers everything that changes what is in it."""
        # The versions read off the installed packages: importing NNCF (scikit-learn and more) for
        # its version would cost seconds on every load of a cached int8 model.
        versions = [f"openvino {version('openvino')}", f"torch {torch.__version__}", f"format {FORMAT}"]
        if self.form == "int8":
            versions += [f"nncf {version('nncf')}", f"calibration {calibration}"]
        text = "\n".join([self.model_id, self.part, self.form, *versions])
        digest = hashlib.blake2b(text.encode(), digest_size=8).hexdigest()
        return models_dir / f"{self.prefix}{digest}"

    @property
    def prefix(self) -> str:
        """Name, part, form and the model id's digest: a new version of this model replaces the old
        one; another model id (the old model of a model change) keeps its own."""
        model = hashlib.blake2b(self.model_id.encode(), digest_size=4).hexdigest()
        return f"{self.name}-{self.part}-{self.form}-{model}-"


# The cache folders ``cached`` read in this thread inside ``reading()`` (None outside it).
_reads = threading.local()


@contextlib.contextmanager
def reading() -> Iterator[list[Path]]:
    """The cache folders read (not made) in this thread inside the block: what ``forget`` removes when
    a model that passed the check at an earlier start fails it now (a cache that reads but is not whole)."""
    folders: list[Path] = []
    _reads.folders = folders
    try:
        yield folders
    finally:
        _reads.folders = None


def forget(folders: Sequence[Path]) -> None:
    """Remove cached models (the next ``cached`` of their parts makes them again)."""
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


def cached(part: Part, models_dir: Path | None, build: Callable[[], Any], calibration: str = "") -> Any:
    """The part's OpenVINO model: read from the cache, or built (``build``) and written there.

    ``models_dir`` None: built and not kept. A cache that cannot be written (full disk, read-only)
    costs only the next start's conversion: logged, and the model built is used.
    """
    if models_dir is None:
        return build()
    folder = part.folder(models_dir, calibration)
    xml = folder / "model.xml"
    if xml.is_file():
        try:
            model = core().read_model(str(xml))
            if getattr(_reads, "folders", None) is not None:
                _reads.folders.append(folder)
            return model
        except RuntimeError as exc:  # a damaged or truncated file: made again below
            log.warning("%s: cached %s model %s cannot be read (%s); converting again", part.name, part.part, xml, exc)
            shutil.rmtree(folder, ignore_errors=True)
    started = time.perf_counter()
    model = build()
    _remove_abandoned(models_dir, folder.name)
    try:
        _write(model, folder)
    except (OSError, RuntimeError) as exc:  # save_model says a full or read-only disk with RuntimeError
        log.warning("%s: cannot cache the %s model in %s (%s); it is made again at the next start", part.name,
                    part.part, models_dir, exc)  # fmt: skip
    else:
        _prune(models_dir, part.prefix, keep=folder.name)
    log.info(
        "%s: %s model made for OpenVINO in %.1f s (%s)", part.name, part.part, time.perf_counter() - started, folder
    )
    return model


def _write(model: Any, folder: Path) -> None:
    """Save beside the folder, then rename: a reader sees no folder or a whole one."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    # The writer's pid in the scratch's name: a process killed while saving leaves it (CLIP's image
    # model: up to 350 MB), and the next writer of the part removes it (_remove_abandoned).
    scratch = Path(tempfile.mkdtemp(prefix=f".{folder.name}.{_writer()}.", dir=folder.parent))
    try:
        # fp32 weights: save_model's default fp16 compression adds its own drift, which under bf16
        # took EfficientNet's top-10 neighbour overlap with fp32 from 0.949 to 0.925 (BENCHMARKS.md).
        try:
            openvino().save_model(model, str(scratch / "model.xml"), compress_to_fp16=False)
        except RuntimeError as exc:  # measured while the scratch still fills the disk
            raise RuntimeError(f"{exc}{_nearly_full(folder.parent)}") from exc
        try:
            os.rename(scratch, folder)
        except OSError:
            if not (folder / "model.xml").is_file():  # not another process's copy: a real failure
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _host() -> str:
    """This machine's name as a scratch folder holds it (letters and digits, the rest dashes)."""
    return "".join(c if c.isalnum() else "-" for c in socket.gethostname())[:40]


def _writer() -> str:
    """This process as a scratch folder names it: its host (a models folder shared between machines or
    containers sees other pids) and its pid."""
    return f"{_host()}-{os.getpid()}"


def _remove_abandoned(models_dir: Path, name: str) -> None:
    """Remove the scratch folders of ``name`` left by writers of this host that died while saving."""
    host = _host()
    for scratch in models_dir.glob(f".{glob.escape(name)}.{glob.escape(host)}-*"):
        pid = scratch.name[len(name) + len(host) + 3 :].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(scratch, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def _nearly_full(models_dir: Path) -> str:
    """ "; the disk is full" where under 64 MB is free (save_model says only "iostream error"), else ""."""
    try:
        free = shutil.disk_usage(models_dir).free
    except OSError:
        return ""
    return f"; the disk is full: {free >> 20} MB free" if free < 64 << 20 else ""


def _prune(models_dir: Path, prefix: str, keep: str) -> None:
    """Remove the older conversions of the same name, part and form (other versions or weights)."""
    for old in models_dir.glob(f"{prefix}*"):
        if old.name != keep and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)


def convert(module: torch.nn.Module, example: torch.Tensor) -> Any:
    """A torch module (eval, fp32) as an OpenVINO model, traced with ``example`` (any batch size)."""
    ov = openvino()
    with warnings.catch_warnings(), torch.no_grad():
        # convert_model traces through TorchScript and says so (a FutureWarning per call): nothing to act on here.
        warnings.simplefilter("ignore")
        return ov.convert_model(module, example_input=example)


def quantised(model: Any, samples: Sequence[np.ndarray], transformer: bool) -> Any:
    """``model`` with int8 weights and activations (NNCF post-training quantisation) calibrated on ``samples``.

    ``transformer``: NNCF's transformer preset (keeps the softmax and the layer norms in float),
    without SmoothQuant. On CLIP ViT-B-32 (random weights, 600 real pictures) the preset gave a
    smaller drift than the defaults, and SmoothQuant off a smaller one still: smallest cosine to
    fp32 0.996 against 0.949, top-10 neighbour overlap 0.960 against 0.945, 13 s against 19 s.
    """
    library = nncf()
    options: dict[str, Any] = {}
    if transformer:
        no_smoothing = library.AdvancedSmoothQuantParameters(matmul=-1)
        options["model_type"] = library.ModelType.TRANSFORMER
        options["advanced_parameters"] = library.AdvancedQuantizationParameters(smooth_quant_alphas=no_smoothing)
    log.info("quantising to int8 on %d calibration pictures (once; 15-40 s on 2 cores)", len(samples))
    # NNCF draws its progress bars on stdout, where `imgsearchd index --json` writes its answer: on a
    # terminal they go to stderr; elsewhere (the daemon's journal, a pipe) nowhere, the line above says it.
    bars = sys.stderr if sys.stderr.isatty() else io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(bars):
        warnings.simplefilter("ignore")
        return library.quantize(model, library.Dataset(list(samples)), subset_size=len(samples), **options)
