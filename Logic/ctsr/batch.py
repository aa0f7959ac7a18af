"""Cohorts: super-resolve a folder or a manifest of scans, resumable, locally or on Ray.

* :func:`find_scans` (a folder: every NRRD / NIfTI / MHA file and every DICOM series folder
  under it is one scan; outputs mirror the input names under the output folder) and
  :func:`read_manifest` (a CSV ``input,output[,scale][,roi][,reference]``) make the
  :class:`Scan` list;
* :func:`run_scan` does one scan in this process: read, :func:`ctsr.upsampling.upsample`,
  write the output atomically, then its JSON **sidecar** ``<output>.json`` (provenance, LR
  model, LR residual, metrics against ``reference`` if given, wall time, the scan's own peak
  memory where the platform can tell it). A bad scan returns a ``failed`` record with its
  one-sentence reason: it never raises, so an engine never retries it;
* :func:`run_batch` skips scans whose output and sidecar are complete for the same input (the
  same file, however spelled) and options (:func:`is_complete`; ``force`` redoes all), runs
  the rest on an engine, reports overall progress, and writes ``batch_report.csv`` and
  ``batch_report.md`` in the output folder: ``engine="local"`` (default): N worker processes,
  one per GPU (each pinned to its own) when there are GPUs, else N sized by the memory planner
  and the cores; a scan whose worker dies is failed with a sentence saying so, the others go
  on; ``engine="ray"``: one Ray task per scan with its CPU / GPU / memory request, retried
  when its worker dies (Ray's ``max_retries``; a bad input is a result, not a death).

Cancel (Ctrl-C, SIGTERM) stops the workers and raises :class:`BatchCancelled`, which says which
scans were kept; outputs and sidecars are written atomically, so only finished scans remain.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import Cancelled, UserError, known_errors
from .io import VOLUME_SUFFIXES, split_suffix
from .progress import Progress, SilentProgress
from .upsampling import DEFAULT_METHOD

REPORT_NAME = "batch_report"
#: The fields a sidecar must have to count as complete.
SIDECAR_FIELDS = ("status", "input", "output", "output_bytes", "options", "provenance")


@dataclass(frozen=True)
class BatchOptions:
    """What applies to every scan (the options of ``ctsr upsample``); ``scale`` and ``roi``
    may be overridden per scan by a manifest."""

    method: str = DEFAULT_METHOD
    scale: str = "2"
    lr_model: str | None = None
    seed: int = 0
    device: str = "auto"
    roi: str | None = None


@dataclass(frozen=True)
class Scan:
    """One unit of work: ``name`` (for the report), paths, and per-scan scale / ROI /
    reference (None: the batch's)."""

    name: str
    input: str
    output: str
    scale: str | None = None
    roi: str | None = None
    reference: str | None = None


@dataclass
class ScanRecord:
    """What happened to one scan (a row of the report)."""

    name: str
    input: str
    output: str
    status: str  # done, skipped (complete from an earlier run), failed
    reason: str = ""
    seconds: float = 0.0
    peak_rss_mb: int | None = None  # the scan's own peak resident memory (MB); None where unknown
    details: dict = field(default_factory=dict)


class BatchCancelled(Cancelled):
    """A batch was cancelled; ``str(error)`` is one sentence saying how many scans are finished
    and kept and that the others were not written."""


# -- finding the scans ----------------------------------------------------------------------
def _volume_stem(path: Path) -> str | None:
    """The name of a volume file (:data:`ctsr.io.VOLUME_SUFFIXES`) without its suffix; None for
    other files (DICOM series are folders holding ``.dcm`` files or files without a suffix that
    GDCM reads)."""
    stem, suffix = split_suffix(path)
    return stem if suffix.lower() in VOLUME_SUFFIXES else None


def _is_dicom_series_folder(folder: Path) -> bool:
    files = [p for p in folder.iterdir() if p.is_file()]
    return any(p.suffix.lower() == ".dcm" for p in files) or (
        files and all(p.suffix == "" for p in files) and _reads_as_dicom(files[0]))


def _reads_as_dicom(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def find_scans(folder, out_dir, suffix: str = ".nrrd") -> list[Scan]:
    """Every volume file and DICOM series folder under ``folder`` (sorted; ``folder`` itself
    may be a series), each with an output at the same relative place under ``out_dir``, named
    ``<stem><suffix>``; ``out_dir`` may lie inside ``folder`` (it is not searched) but not be it."""
    folder, out_dir = Path(folder), Path(out_dir)
    if not folder.is_dir():
        raise UserError(f"{folder} is not a folder.")
    if out_dir.resolve() == folder.resolve():
        raise UserError(f"the output folder is the input folder {folder}; name another one.")
    scans = []
    for root, dirs, files in os.walk(folder):
        root = Path(root)
        dirs[:] = sorted(d for d in dirs if (root / d).resolve() != out_dir.resolve())
        if _is_dicom_series_folder(root):
            relative = root.relative_to(folder)
            name = root.name if root == folder else str(relative)
            scans.append(Scan(name, str(root), str(out_dir / relative.parent / (root.name + suffix))))
        for name in sorted(files):
            stem = _volume_stem(root / name)
            if stem is not None:
                relative = (root / name).relative_to(folder)
                scans.append(Scan(str(relative), str(root / name), str(out_dir / relative.parent / (stem + suffix))))
    if not scans:
        raise UserError(f"{folder} holds no NRRD, NIfTI, MHA file or DICOM series.")
    return scans


def read_manifest(path) -> list[Scan]:
    """A CSV with a header row: ``input`` and ``output`` (required), ``scale``, ``roi``,
    ``reference`` (optional; empty cells take the batch's). Relative paths are relative to
    the manifest's folder."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise UserError(f"the manifest {path} could not be read ({error}).") from None
    if not rows or not {"input", "output"} <= set(rows[0]):
        raise UserError(f"the manifest {path} needs a header row with at least the columns input,output.")
    base = path.parent
    where = lambda text: str(base / text) if text and not Path(text).is_absolute() else text
    scans = []
    for number, row in enumerate(rows, start=2):
        if not (row.get("input") or "").strip() or not (row.get("output") or "").strip():
            raise UserError(f"the manifest {path}, line {number}: input and output are required.")
        scans.append(Scan(row["input"].strip(), where(row["input"].strip()), where(row["output"].strip()),
                          (row.get("scale") or "").strip() or None, (row.get("roi") or "").strip() or None,
                          where((row.get("reference") or "").strip()) or None))
    return scans


def check_scans(scans: list[Scan]) -> None:
    """Raise :class:`UserError` when two scans would write the same output, or one would write
    over another's input (paths compared as resolved)."""
    inputs = {Path(s.input).resolve(): s for s in scans}
    outputs: dict[Path, Scan] = {}
    for scan in scans:
        output = Path(scan.output).resolve()
        if output in outputs:
            raise UserError(f"{outputs[output].name} and {scan.name} would both be written to {scan.output}; "
                            "give them different output names.")
        if output in inputs:
            raise UserError(f"the output of {scan.name}, {scan.output}, is the input {inputs[output].name}; "
                            "write the outputs to another folder.")
        outputs[output] = scan


# -- one scan -------------------------------------------------------------------------------
def sidecar_path(output) -> Path:
    """``out.nrrd`` -> ``out.nrrd.json``."""
    output = Path(output)
    return output.with_name(output.name + ".json")


def _scan_options(scan: Scan, options: BatchOptions) -> dict:
    return {**asdict(options), "scale": scan.scale or options.scale, "roi": scan.roi or options.roi}


def is_complete(scan: Scan, options: BatchOptions) -> bool:
    """The output exists and its sidecar says it was finished, for this input (the same file
    or folder, however its path is spelled) and these options, with the size the output has now."""
    output, sidecar = Path(scan.output), sidecar_path(scan.output)
    try:
        record = json.loads(sidecar.read_text(encoding="utf-8"))
        return (all(k in record for k in SIDECAR_FIELDS) and record["status"] == "done"
                and _same_path(record["input"], scan.input) and record["options"] == _scan_options(scan, options)
                and record["output_bytes"] == output.stat().st_size)
    except (OSError, ValueError, TypeError):
        return False


def _same_path(recorded: str, current: str) -> bool:
    """The same file or folder (``os.path.samefile``: relative or absolute, through links);
    the same resolved path when one of them no longer exists."""
    try:
        return os.path.samefile(recorded, current)
    except OSError:
        return os.path.realpath(recorded) == os.path.realpath(current)


def run_scan(scan: Scan, options: BatchOptions, threads: int | None = None) -> ScanRecord:
    """Super-resolve one scan in this process (module docstring); never raises for a bad scan."""
    from .io import write_atomically
    from .upsampling import upsample_file

    if threads:
        import torch

        torch.set_num_threads(threads)
    begun = time.monotonic(), _reset_peak_memory()
    chosen = _scan_options(scan, options)
    record = ScanRecord(scan.name, scan.input, scan.output, "failed")
    try:
        with known_errors():
            Path(scan.output).parent.mkdir(parents=True, exist_ok=True)
            result, _ = upsample_file(scan.input, scan.output, chosen["scale"], chosen["method"], seed=chosen["seed"],
                                      device=chosen["device"], roi=chosen["roi"], lr_model=chosen["lr_model"])
            details = {"provenance": result.provenance}
            record.status = "done"
            if scan.reference:
                details.update(_scores_against(result.volume, scan.reference))
    except UserError as error:
        record.reason = str(error)
        return _finish(record, begun)
    except MemoryError:
        record.reason = "not enough memory for this scan; use an ROI, a smaller scale or fewer workers."
        return _finish(record, begun)
    except Cancelled:
        raise
    except Exception as error:  # noqa: BLE001 - a bug on one scan must not stop the cohort
        import traceback

        record.reason = f"internal error ({type(error).__name__}: {error}); please report it."
        record.details = {"traceback": traceback.format_exc(limit=20)}
        return _finish(record, begun)
    _finish(record, begun, details)
    sidecar = {"status": "done", "input": os.path.abspath(scan.input), "output": scan.output,
               "output_bytes": Path(scan.output).stat().st_size, "options": chosen,
               "seconds": record.seconds, "peak_rss_mb": record.peak_rss_mb, "finished": time.time(), **details}
    from .progress import to_json

    try:
        write_atomically(sidecar_path(scan.output),
                         lambda tmp: Path(tmp).write_text(to_json(sidecar), encoding="utf-8"))
    except OSError as error:  # the output without its sidecar counts as partial: a re-run redoes it
        record.status = "failed"
        record.reason = (f"the output was written but its sidecar could not be ({error.strerror or error}); "
                         "a re-run redoes this scan.")
    return record


def _scores_against(volume, reference: str) -> dict:
    """``{"metrics": PSNR and SSIM of volume}`` against the ``reference`` volume, or
    ``{"metrics_error": why}`` (a reference that cannot be read or is on another grid does not
    undo a finished scan)."""
    from .io import read_volume
    from .metrics import evaluate

    try:
        return {"metrics": evaluate(volume, read_volume(reference))}
    except UserError as error:
        return {"metrics_error": str(error)}


def _reset_peak_memory() -> bool:
    """Restart this process's resident-memory high-water mark (Linux: ``/proc/self/clear_refs``),
    so that the peak read when a scan ends is that scan's own, not the most any earlier scan of
    the same worker took; False where it cannot be restarted (other systems)."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _peak_memory_mb() -> int | None:
    """This process's resident-memory high-water mark (MB; Linux ``VmHWM``), None if unknown."""
    try:
        with open("/proc/self/status") as handle:
            return next(round(int(line.split()[1]) / 1024) for line in handle if line.startswith("VmHWM:"))
    except (OSError, StopIteration, ValueError, IndexError):
        return None


def _finish(record: ScanRecord, begun: tuple[float, bool], details: dict | None = None) -> ScanRecord:
    """Fill in ``record``'s seconds, peak memory (None unless ``begun`` says the high-water mark
    was restarted when the scan began) and the details of a finished scan."""
    start, measured = begun
    record.seconds = round(time.monotonic() - start, 2)
    record.peak_rss_mb = _peak_memory_mb() if measured else None
    if details:
        provenance = details["provenance"]
        record.details = {"lr_model": provenance["lr_model"]["model"],
                          "lr_residual_hu": provenance["lr_residual"]["rms_hu"],
                          **{k: v for k, v in details.get("metrics", {}).items()}}
        if "metrics_error" in details:
            record.reason = f"not scored: {details['metrics_error']}"
    return record


# -- the batch ------------------------------------------------------------------------------
def gpu_ids(options: BatchOptions) -> list[str]:
    """The CUDA devices the local engine spreads its workers over, as ``CUDA_VISIBLE_DEVICES``
    names them (the parent's own list when it has one): none with ``device="cpu"``."""
    if options.device == "cpu":
        return []
    import torch

    count = torch.cuda.device_count()
    inherited = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return inherited[:count] if inherited else [str(i) for i in range(count)]


def local_workers(scans: list[Scan], options: BatchOptions, requested: int | None = None) -> int:
    """Worker processes for the local engine: ``requested``; else one per GPU when there are
    GPUs (:func:`gpu_ids`); else as many as the cores allow (two threads each) and the free RAM
    holds for the scan that needs most (the memory planner's estimate of the default method, at
    the scan's scale: ``auto`` from its spacing, a manifest's own); at least
    one, and no more than there are scans."""
    if requested is not None:
        return check_workers(requested)
    gpus = gpu_ids(options)
    if gpus:
        return max(1, min(len(gpus), len(scans)))
    from .memory import available_ram_bytes
    from .planning import SAFETY

    need = max((scan_memory_bytes(scan, options) for scan in scans), default=1)
    by_memory = int(SAFETY * available_ram_bytes() // need)
    return max(1, min(by_memory, (os.cpu_count() or 1) // 2 or 1, len(scans)))


def check_workers(workers) -> int:
    """``workers`` (``--workers``) as an int of at least 1; :class:`UserError` otherwise."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise UserError(f"--workers must be a whole number of at least 1, not {workers!r}; "
                        "leave it out to size the workers by the cores and the free RAM.")
    return workers


def scan_memory_bytes(scan: Scan, options: BatchOptions) -> int:
    """The memory planner's estimate of the peak bytes of ``scan`` (the default method at the
    scale it runs at, its size from its header); the fixed cost alone when the header cannot
    tell (a DICOM folder, an unreadable file)."""
    from .planning import estimate_bytes

    size, scale = _header_grid(scan, options) or ((1, 1, 1), (1, 1, 1))
    return estimate_bytes(size[::-1], scale, 0, 0)


def _header_grid(scan: Scan, options: BatchOptions):
    """(size IJK, scale IJK) of ``scan`` read from its file's header, the scale its own or
    ``options``' (``auto`` taken from the header's spacing); None for a folder (DICOM), a file
    that cannot be read or a bad scale (the run says why)."""
    import SimpleITK as sitk

    from .grids import scale_for
    from .io import quiet_itk

    try:
        reader = sitk.ImageFileReader()
        reader.SetFileName(scan.input)
        with quiet_itk():
            reader.ReadImageInformation()
        return tuple(reader.GetSize()), scale_for(scan.scale or options.scale, reader.GetSpacing())
    except (RuntimeError, UserError):
        return None


def run_batch(scans: list[Scan], options: BatchOptions = BatchOptions(), out_dir=None, engine: str = "local",
              workers: int | None = None, force: bool = False, ray_address: str | None = None,
              progress: Progress | None = None, runner=None) -> list[ScanRecord]:
    """Run every scan not already complete (module docstring); returns one record per scan, in
    the scans' order, and writes the report into ``out_dir`` (default: the first output's
    folder). ``runner``: the per-scan function (default :func:`run_scan`; tests pass one)."""
    progress = progress or SilentProgress()
    runner = runner or run_scan
    if workers is not None:
        check_workers(workers)
    check_scans(scans)
    records: dict[int, ScanRecord] = {}
    todo = []
    for index, scan in enumerate(scans):
        if not force and is_complete(scan, options):
            records[index] = ScanRecord(scan.name, scan.input, scan.output, "skipped",
                                        "complete from an earlier run")
        else:
            todo.append(index)
    progress.update("batch", 0.0, f"{len(todo)} of {len(scans)} scans to run ({len(scans) - len(todo)} complete)")
    if engine not in ("local", "ray"):
        raise UserError(f"unknown engine {engine!r}; use local or ray.")
    if todo:
        run = _run_on_ray if engine == "ray" else _run_locally
        try:
            for done, (index, record) in enumerate(run([scans[i] for i in todo], todo, options, workers,
                                                       ray_address, runner), start=1):
                records[index] = record
                failed = sum(r.status == "failed" for r in records.values())
                progress.update("batch", done / len(todo), f"{done}/{len(todo)} scans run, {failed} failed "
                                f"(last: {record.name}, {record.status})")
        except Cancelled:
            raise BatchCancelled(_what_was_kept(records.values(), len(scans))) from None
    ordered = [records[i] for i in range(len(scans))]
    write_report(ordered, Path(out_dir) if out_dir else Path(scans[0].output).parent)
    return ordered


def _what_was_kept(records, total: int) -> str:
    """The sentence of a cancelled batch: how many of the ``total`` scans are finished (in this
    run or an earlier one) and kept, and that the others were not written."""
    records = list(records)
    kept = sum(r.status in ("done", "skipped") for r in records)
    now = sum(r.status == "done" for r in records)
    return (f"cancelled; {kept} of {total} scans are finished and kept ({now} of them in this run), the other "
            f"{total - kept} were not written; run the same batch again to finish them.")


def _run_locally(scans, indices, options, workers, ray_address, runner):
    """Yield (index, record) as worker processes finish scans, at most one in flight per worker.

    A worker that dies (the OOM killer, a crash in native code) breaks the pool, failing every
    scan in flight with no word on which one killed it: the pool is rebuilt and each of those
    scans runs again alone, before any other; one that dies alone is recorded as failed, with
    how its worker ended."""
    from collections import deque
    from concurrent.futures import FIRST_COMPLETED, wait
    from concurrent.futures.process import BrokenProcessPool

    n = local_workers(scans, options, workers)
    threads = max(1, (os.cpu_count() or 1) // n)
    if n == 1:  # no pool: same process, so Ctrl-C and memory are simplest
        for scan, index in zip(scans, indices):
            yield index, runner(scan, options, threads)
        return
    waiting, suspects = deque(zip(scans, indices)), deque()
    running = {}  # future -> (scan, index, whether it runs alone)
    pool = _local_pool(n, options)
    completed = False
    try:
        while waiting or suspects or running:
            if suspects and not running:
                scan, index = suspects.popleft()
                running[pool.submit(runner, scan, options, threads)] = scan, index, True
            alone_in_flight = any(alone for _, _, alone in running.values())
            while waiting and not suspects and not alone_in_flight and len(running) < n:
                scan, index = waiting.popleft()
                running[pool.submit(runner, scan, options, threads)] = scan, index, False
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            if any(isinstance(future.exception(), BrokenProcessPool) for future in finished):
                finished, _ = wait(running)  # the broken pool fails all the others at once
                how = _how_it_died(pool)
                pool = _local_pool(n, options)
            for future in sorted(finished, key=lambda f: running[f][1]):  # suspects rerun in input order
                scan, index, alone = running.pop(future)
                if not isinstance(future.exception(), BrokenProcessPool):
                    yield index, future.result()
                elif alone:
                    yield index, ScanRecord(scan.name, scan.input, scan.output, "failed",
                                            f"the worker running it died ({how}); re-run the batch to retry it.")
                else:
                    suspects.append((scan, index))
        completed = True
    finally:
        # Ctrl-C, SIGTERM or an error here: no worker outlives the batch (the executor has no
        # public way to stop its processes, hence its private table).
        processes = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=completed, cancel_futures=True)
        if not completed:
            for process in processes:
                process.kill()


def _local_pool(n: int, options: BatchOptions):
    """A pool of ``n`` spawned worker processes (:func:`_start_worker`), all started before the
    first task; with GPUs, worker i sees only GPU i (round robin when there are more workers
    than GPUs).

    Started up front because a spawn pool otherwise starts each worker after waking its
    manager thread for that task, and the manager can go back to waiting without watching the
    new worker: one that then dies (OOM) went unnoticed until another scan finished, and
    forever when none was left (a test caught it waiting 120 s on a loaded 2-core machine)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")
    gpus = gpu_ids(options)
    queue = None
    if gpus:
        queue = context.Queue()
        for i in range(n):
            queue.put(gpus[i % len(gpus)])
    pool = ProcessPoolExecutor(n, mp_context=context, initializer=_start_worker, initargs=(queue,))
    launch = getattr(pool, "_launch_processes", None)  # 3.11+; older ones start all workers at once anyway
    if launch is not None:
        launch()  # before the manager thread starts, as it asserts
    return pool


def _how_it_died(pool) -> str:
    """How the worker that broke ``pool`` ended ("exit code N", "killed by signal SIGKILL"),
    once the pool is shut down: the pool itself stops the other workers with SIGTERM."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=True)
    codes = [p.exitcode for p in processes if p.exitcode]
    own = [code for code in codes if code != -signal.SIGTERM] or codes
    if not own:
        return "for a reason its exit code does not tell"
    return f"killed by signal {signal.Signals(-own[0]).name}" if own[0] < 0 else f"exit code {own[0]}"


def _start_worker(gpu_queue) -> None:
    """A local worker's first act: leave Ctrl-C to the batch (which stops the workers itself;
    the worker would only print a traceback) and, with GPUs, see only the GPU it takes from
    ``gpu_queue`` (as ``cuda:0``), before anything in it starts CUDA."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if gpu_queue is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu_queue.get()


def _run_on_ray(scans, indices, options, workers, ray_address, runner):
    """Yield (index, record) as Ray tasks finish; a task whose worker died is retried twice.
    Each task requests 2 CPUs (1 on a 1-CPU cluster), a GPU when the cluster has one, and the
    memory its scan needs (:func:`scan_memory_bytes`, bytes; at most the largest node's, so a
    scan the planner finds too big still runs, alone on that node, rather than wait forever).
    Ray's own log lines are kept from the user (the batch reports its progress itself), all but
    the errors its raylet pushes to the driver (a worker died, the task will be retried), which
    Ray prints to stdout from a thread of its own."""
    try:
        import ray
    except ImportError:
        raise UserError("the ray engine needs Ray: pip install 'ctsr[ray]'.") from None
    started_here = not ray.is_initialized()
    if started_here:
        import logging

        ray.init(address=ray_address, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    try:
        gpus = 1 if options.device != "cpu" and ray.cluster_resources().get("GPU", 0) else 0
        cpus = 2 if ray.cluster_resources().get("CPU", 1) >= 2 else 1
        largest = max(node["Resources"].get("memory", 0) for node in ray.nodes() if node["Alive"])
        task = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=2)(runner)
        pending = {task.options(memory=min(scan_memory_bytes(scan, options), int(largest))).remote(scan, options, cpus):
                   index for scan, index in zip(scans, indices)}
        try:
            while pending:
                finished, _ = ray.wait(list(pending), num_returns=1)
                for ref in finished:
                    index = pending.pop(ref)
                    try:
                        record = ray.get(ref)
                    except ray.exceptions.RayError as error:  # died more times than retried
                        scan = scans[indices.index(index)]
                        record = ScanRecord(scan.name, scan.input, scan.output, "failed",
                                            f"the worker died ({type(error).__name__}) on every try.")
                    yield index, record
        except (KeyboardInterrupt, Cancelled):
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
    finally:
        if started_here:
            ray.shutdown()


def write_report(records: list[ScanRecord], out_dir: Path) -> tuple[Path, Path]:
    """``batch_report.csv`` (one row per scan) and ``batch_report.md`` (counts, then the rows)."""
    from .io import write_atomically

    out_dir.mkdir(parents=True, exist_ok=True)
    columns = ["name", "status", "reason", "seconds", "peak_rss_mb", "lr_model", "lr_residual_hu", "psnr", "ssim",
               "input", "output"]
    rows = [{**{k: v for k, v in asdict(r).items() if k != "details"}, **r.details} for r in records]
    csv_path, md_path = out_dir / f"{REPORT_NAME}.csv", out_dir / f"{REPORT_NAME}.md"

    def write_csv(tmp):
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)

    write_atomically(csv_path, write_csv)
    counts = {s: sum(r.status == s for r in records) for s in ("done", "skipped", "failed")}
    lines = [f"# Batch report: {len(records)} scans, {counts['done']} done, {counts['skipped']} skipped "
             f"(complete from an earlier run), {counts['failed']} failed", "",
             "| scan | status | seconds | LR model | LR residual HU | reason |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['status']} | {r['seconds']} | {r.get('lr_model', '')} | "
                     f"{r.get('lr_residual_hu', '')} | {r['reason']} |")
    write_atomically(md_path, lambda tmp: Path(tmp).write_text("\n".join(lines) + "\n", encoding="utf-8"))
    return csv_path, md_path
