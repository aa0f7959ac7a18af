"""Cohorts: super-resolve a folder or a manifest of scans, resumable, locally or on Ray.

* :func:`find_scans` (a folder: every NRRD / NIfTI / MHA file and every DICOM series folder
  under it is one scan; outputs mirror the input names under the output folder) and
  :func:`read_manifest` (a CSV ``input,output[,scale][,roi][,reference]``) make the
  :class:`Scan` list;
* :func:`run_scan` does one scan in this process: read, :func:`ctsr.upsampling.upsample`,
  write the output atomically, then its JSON **sidecar** ``<output>.json`` (provenance, LR
  model, LR residual, metrics against ``reference`` if given, wall time, peak memory). A bad
  scan returns a ``failed`` record with its one-sentence reason: it never raises, so an engine
  never retries it;
* :func:`run_batch` skips scans whose output and sidecar are complete for the same options
  (:func:`is_complete`; ``force`` redoes all), runs the rest on an engine, reports overall
  progress, and writes ``batch_report.csv`` and ``batch_report.md`` in the output folder:
  ``engine="local"`` (default): N worker processes, one per GPU (each pinned to its own) when
  there are GPUs, else N sized by the memory planner and the cores; ``engine="ray"``: one Ray
  task per scan with its CPU / GPU / memory request, retried when its worker dies (Ray's
  ``max_retries``; a bad input is a result, not a death).

Cancel (Ctrl-C, SIGTERM) stops the workers; outputs and sidecars are written atomically, so
only finished scans remain.
"""

from __future__ import annotations

import csv
import json
import os
import resource
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
    peak_rss_mb: int = 0
    details: dict = field(default_factory=dict)


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
    """The output exists and its sidecar says it was finished, for this input and these
    options, with the size the output has now."""
    output, sidecar = Path(scan.output), sidecar_path(scan.output)
    try:
        record = json.loads(sidecar.read_text(encoding="utf-8"))
        return (all(k in record for k in SIDECAR_FIELDS) and record["status"] == "done"
                and record["input"] == scan.input and record["options"] == _scan_options(scan, options)
                and record["output_bytes"] == output.stat().st_size)
    except (OSError, ValueError, TypeError):
        return False


def run_scan(scan: Scan, options: BatchOptions, threads: int | None = None) -> ScanRecord:
    """Super-resolve one scan in this process (module docstring); never raises for a bad scan."""
    from .io import write_atomically
    from .upsampling import upsample_file

    if threads:
        import torch

        torch.set_num_threads(threads)
    start = time.monotonic()
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
        return _finish(record, start)
    except MemoryError:
        record.reason = "not enough memory for this scan; use an ROI, a smaller scale or fewer workers."
        return _finish(record, start)
    except Cancelled:
        raise
    except Exception as error:  # noqa: BLE001 - a bug on one scan must not stop the cohort
        import traceback

        record.reason = f"internal error ({type(error).__name__}: {error}); please report it."
        record.details = {"traceback": traceback.format_exc(limit=20)}
        return _finish(record, start)
    _finish(record, start, details)
    sidecar = {"status": "done", "input": scan.input, "output": scan.output,
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


def _finish(record: ScanRecord, start: float, details: dict | None = None) -> ScanRecord:
    record.seconds = round(time.monotonic() - start, 2)
    record.peak_rss_mb = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)  # of the worker
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
    if requested:
        return max(1, int(requested))
    gpus = gpu_ids(options)
    if gpus:
        return max(1, min(len(gpus), len(scans)))
    from .memory import available_ram_bytes
    from .planning import SAFETY, estimate_bytes

    grids = filter(None, (_header_grid(scan, options) for scan in scans))
    need = max((estimate_bytes(size[::-1], scale, 0, 0) for size, scale in grids),
               default=estimate_bytes((1, 1, 1), (1, 1, 1), 0, 0))  # the fixed cost
    by_memory = int(SAFETY * available_ram_bytes() // need)
    return max(1, min(by_memory, (os.cpu_count() or 1) // 2 or 1, len(scans)))


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
        for done, (index, record) in enumerate(run([scans[i] for i in todo], todo, options, workers, ray_address,
                                                   runner), start=1):
            records[index] = record
            failed = sum(r.status == "failed" for r in records.values())
            progress.update("batch", done / len(todo), f"{done}/{len(todo)} scans run, {failed} failed "
                            f"(last: {record.name}, {record.status})")
    ordered = [records[i] for i in range(len(scans))]
    write_report(ordered, Path(out_dir) if out_dir else Path(scans[0].output).parent)
    return ordered


def _run_locally(scans, indices, options, workers, ray_address, runner):
    """Yield (index, record) as worker processes finish scans."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    n = local_workers(scans, options, workers)
    threads = max(1, (os.cpu_count() or 1) // n)
    if n == 1:  # no pool: same process, so Ctrl-C and memory are simplest
        for scan, index in zip(scans, indices):
            yield index, runner(scan, options, threads)
        return
    context = multiprocessing.get_context("spawn")
    gpus = gpu_ids(options)
    pinning = {}
    if gpus:  # worker i sees only GPU i (round robin when there are more workers than GPUs)
        queue = context.Queue()
        for i in range(n):
            queue.put(gpus[i % len(gpus)])
        pinning = {"initializer": _pin_to_gpu, "initargs": (queue,)}
    pool = ProcessPoolExecutor(n, mp_context=context, **pinning)
    completed = False
    try:
        pending = {pool.submit(runner, scan, options, threads): index for scan, index in zip(scans, indices)}
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                yield pending.pop(future), future.result()
        completed = True
    finally:
        # Ctrl-C, SIGTERM or a dead worker: no worker outlives the batch (the executor has no
        # public way to stop its processes, hence its private table).
        processes = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=completed, cancel_futures=True)
        if not completed:
            for process in processes:
                process.kill()


def _pin_to_gpu(queue) -> None:
    """A local worker's first act: see only the GPU it takes from ``queue`` (as ``cuda:0``),
    before anything in it starts CUDA."""
    os.environ["CUDA_VISIBLE_DEVICES"] = queue.get()


def _run_on_ray(scans, indices, options, workers, ray_address, runner):
    """Yield (index, record) as Ray tasks finish; a task whose worker died is retried twice."""
    try:
        import ray
    except ImportError:
        raise UserError("the ray engine needs Ray: pip install 'ctsr[ray]'.") from None
    started_here = not ray.is_initialized()
    if started_here:
        import logging

        ray.init(address=ray_address, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    try:
        gpus = 1 if options.device != "cpu" and ray.cluster_resources().get("GPU", 0) else 0
        cpus = 2 if ray.cluster_resources().get("CPU", 1) >= 2 else 1
        task = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=2)(runner)
        pending = {task.remote(scan, options, cpus): index for scan, index in zip(scans, indices)}
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
