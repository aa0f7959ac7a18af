"""``process``: a volume node in, a super-resolved volume node out, through the background worker.

Data flows one way: input node -> ``input.nrrd`` in a private temporary folder -> ``python -m
ctsr.worker job.json`` (a subprocess) -> ``output.nrrd`` -> a new (or the given) volume node
with exactly the geometry the engine computed (and, with uncertainty runs,
``output_uncertainty.nrrd`` -> a second node ``<output>_uncertainty``). The temporary folder is removed whatever
happens (a folder left by a Slicer that died mid-job is removed by a job days later:
:func:`remove_stale_work_folders`), and nodes are only added to the scene once the results
have been read, so a failed or cancelled job leaves nothing behind.

All MRML work happens in the thread that calls :meth:`SuperResolutionJob.poll` (Slicer's GUI
thread through a timer, or :meth:`SuperResolutionJob.wait`); the subprocess output is read by
background threads of :class:`.runner.WorkerProcess`.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from ctsr.cli import EXIT_BUG
from ctsr.errors import Cancelled, UserError, check_seed
from ctsr.io import read_volume
from ctsr.upsampling import DEFAULT_METHOD, INTERPOLATION_METHODS, METHODS

from . import engine, jobs, nodes
from .events import residual_text, status_text
from .roi import as_engine_roi
from .runner import CANCEL_GRACE_S, WorkerProcess

RUNNING, SUCCEEDED, FAILED, CANCELLED = "running", "succeeded", "failed", "cancelled"

#: The name of a job's private temporary folder begins with this.
WORK_FOLDER_PREFIX = "CTSuperResolution-"
#: A job folder untouched this long (seconds) was left by a Slicer that died mid-job (every
#: other outcome removes it): the next job removes it.
STALE_WORK_FOLDER_S = 2 * 24 * 3600


def remove_stale_work_folders(folder=None, max_age_s: float = STALE_WORK_FOLDER_S) -> list[Path]:
    """Remove the job folders in ``folder`` (default: the temporary folder jobs use) not
    modified for ``max_age_s`` seconds; returns those removed."""
    folder = Path(folder or nodes.temporary_folder() or tempfile.gettempdir())
    cutoff = time.time() - max_age_s
    stale = []
    for path in folder.glob(WORK_FOLDER_PREFIX + "*"):
        try:
            if path.is_dir() and path.stat().st_mtime < cutoff:
                stale.append(path)
        except OSError:  # gone meanwhile (another Slicer's job ended)
            continue
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return stale


#: Worker exit statuses (see ctsr.cli) with no ``error`` event of their own, and their meaning.
_CRASH_HINTS = {-9: "it was killed (often: the system ran out of memory)",
                EXIT_BUG: "it hit an internal error"}


class SuperResolutionJob:
    """A running ``process(..., wait=False)`` job: poll it, cancel it, or wait for it.

    ``state`` is ``"running"``, ``"succeeded"``, ``"failed"`` or ``"cancelled"``;
    ``outputVolume`` is the result node once succeeded, ``uncertaintyVolume`` the node of the
    voxelwise standard deviation (HU) when uncertainty runs were asked for (else ``None``);
    ``residualText`` the LR residual in words (``""`` when the engine did not report it);
    ``errorMessage`` one sentence once
    failed; ``log`` the worker's log lines (and, once failed, the last lines of its stderr,
    also in ``stderrTail``); ``lastProgress`` the latest progress event.
    ``progressCallback(event)`` gets every event of the protocol, in the polling thread.
    """

    def __init__(self, inputVolume, outputVolume, scale, method, device, seed, options,
                 progressCallback, moduleDir):
        self.inputVolume = inputVolume
        self.outputVolume = None
        self.uncertaintyVolume = None
        self.residualText = ""
        self._givenOutput = outputVolume
        self.scale = scale
        self.method = method
        self.progressCallback = progressCallback
        self.state = RUNNING
        self.errorMessage = ""
        self.log: list[str] = []
        self.stderrTail: list[str] = []
        self.lastProgress: dict | None = None
        self._progressAt = 0.0
        self.provenance: dict = {}
        self._result: dict | None = None
        self._error: dict | None = None
        self._started = time.monotonic()
        self._cancelRequested = False
        remove_stale_work_folders()
        self.workDir = Path(tempfile.mkdtemp(prefix=WORK_FOLDER_PREFIX, dir=nodes.temporary_folder()))
        try:
            # In the node's own voxel type, uncompressed: gzip would cost the GUI thread seconds.
            inputPath = self.workDir / "input.nrrd"
            nodes.write_node(inputVolume, inputPath)
            job = jobs.build_job(inputPath, self.workDir / "output.nrrd", scale, method, device,
                                 seed, options, compress=False,
                                 uncertainty_path=self.workDir / "output_uncertainty.nrrd")
            jobPath = jobs.write_job(job, self.workDir / "job.json")
            self.process = WorkerProcess(
                [engine.python_executable(), "-m", "ctsr.worker", jobPath],
                env=engine.worker_environment(moduleDir), cwd=self.workDir)
        except BaseException:
            self._removeWorkDir()
            raise

    # -- following the worker ---------------------------------------------------------------
    def poll(self) -> bool:
        """Handle the worker's new events; when it has finished, load the result (or record the
        failure) and clean up. Returns True once the job is over."""
        if self.state != RUNNING:
            return True
        if self._cancelRequested:  # after requestCancel: wait for the tree to go, load nothing
            self.process.read_events()
            if not (self.process.enforce_stop() and self.process.finished()):
                return False
            self.state = CANCELLED
            self._removeWorkDir()
            return True
        for event in self.process.read_events():
            self._handle(event)
        if not self.process.finished():
            return False
        for event in self.process.read_events():  # lines that came in with the exit
            self._handle(event)
        self._finish(self.process.returncode)
        return True

    def _handle(self, event: dict) -> None:
        kind = event.get("event")
        if kind == "progress":
            self.lastProgress = event
            self._progressAt = time.monotonic()
        elif kind == "log":
            self.log.append(event.get("message", ""))
        elif kind == "result":
            self._result = event
        elif kind == "error":
            self._error = event
        if self.progressCallback is not None:
            try:
                self.progressCallback(event)
            except Cancelled:  # the callback's way to stop the job, blocking or not
                self.requestCancel()

    def _finish(self, returncode: int) -> None:
        try:
            if returncode == 0 and self._result is not None:
                self._loadResult(self._result)
                self.state = SUCCEEDED
            elif (self._error is not None and self._error.get("kind") == "cancelled") or self.process.stopped:
                self.state = CANCELLED  # asked to stop, or killed by stop_all_workers (Slicer closing)
            else:
                self._fail(self._describeFailure(returncode))
        except Exception as error:  # a result that cannot be read or loaded
            self._fail(str(error) if isinstance(error, UserError)
                       else f"the result could not be loaded into Slicer: {error}")
        finally:
            self._removeWorkDir()

    def _describeFailure(self, returncode: int) -> str:
        if self._error is not None:
            return self._error.get("message", "the worker failed.")
        hint = _CRASH_HINTS.get(returncode, "it stopped unexpectedly")
        tail = self.process.stderr_tail(1)
        detail = f" Last message: {tail[0]}" if tail else ""
        return f"The super-resolution worker failed (exit status {returncode}): {hint}.{detail}"

    def _fail(self, message: str) -> None:
        self.state = FAILED
        self.errorMessage = message
        self.stderrTail = self.process.stderr_tail()
        self.log.extend(self.stderrTail)

    def _loadResult(self, result: dict) -> None:
        scene = self.inputVolume.GetScene()
        node = self._givenOutput
        for what, removed in (("input", self.inputVolume), ("chosen output", node)):
            if removed is not None and removed.GetScene() is None:
                raise UserError(f"the {what} volume {removed.GetName()} was removed from the scene while the job "
                                "ran; nothing was added.")
        volume = read_volume(result["output"])
        # a deterministic method has a constant (zero) spread: not an unusable volume here
        spread = read_volume(result["uncertainty"], check=False) if result.get("uncertainty") else None
        created = []
        self.provenance = {"model": "none", **result.get("provenance", {}),
                           "input": self.inputVolume.GetName(),
                           "wall_time_s": round(time.monotonic() - self._started, 2)}
        try:
            if node is None:
                node = nodes.add_volume_node(scene, jobs.output_name(self.inputVolume.GetName(), self.scale))
                created.append(node)
            # The uncertainty first: if it fails, a given output node is left as it was.
            if spread is not None:
                self.uncertaintyVolume = self._loadUncertainty(node, spread, created)
            else:  # an earlier run's map does not describe this result
                node.RemoveNodeReferenceIDs(nodes.UNCERTAINTY_REFERENCE_ROLE)
            nodes.update_node_from_volume(node, volume)
            nodes.match_display(self.inputVolume, node)
            nodes.set_provenance(node, self.provenance)
        except BaseException:
            for made in created:
                scene.RemoveNode(made)
            raise
        self.outputVolume = node
        self.residualText = residual_text(self.provenance)
        if self.residualText:
            self.log.append(self.residualText)

    def _loadUncertainty(self, node, spread, created: list):
        """Put the standard deviation volume into the node ``node`` refers to (a re-run), or a
        new ``<output>_uncertainty`` node (appended to ``created``); shown with a colour map,
        under the input's parent transform (the output's, :func:`.nodes.match_display`)."""
        scene = node.GetScene()
        target = node.GetNodeReference(nodes.UNCERTAINTY_REFERENCE_ROLE)
        if target is None:
            target = nodes.add_volume_node(scene, node.GetName() + "_uncertainty")
            created.append(target)
            node.SetNodeReferenceID(nodes.UNCERTAINTY_REFERENCE_ROLE, target.GetID())
        nodes.update_node_from_volume(target, spread)
        target.SetAndObserveTransformNodeID(self.inputVolume.GetTransformNodeID())  # where the output goes
        nodes.show_as_uncertainty(target)
        nodes.set_provenance(target, {"uncertaintyOf": node.GetName(),
                                      "uncertainty_runs": self.provenance.get("uncertainty_runs", ""),
                                      "unit": "HU (standard deviation over the runs)"})
        return target

    # -- the caller's controls --------------------------------------------------------------
    def requestCancel(self) -> None:
        """Ask the worker to stop and return at once (the panel's Cancel): the next polls kill
        its tree after the grace period if it has not stopped, then the job is cancelled and
        its temporary files removed; no output node is made, even if the result was ready."""
        if self.state != RUNNING or self._cancelRequested:
            return
        self._cancelRequested = True
        self.process.request_stop()

    def cancel(self, grace_s: float = CANCEL_GRACE_S) -> None:
        """Stop the worker and its children (SIGTERM, then SIGKILL after ``grace_s`` seconds),
        remove the temporary files; no output node is made. Blocks at most ``grace_s`` seconds
        (scripts; the panel uses :meth:`requestCancel`)."""
        if self.state != RUNNING:
            return
        try:
            self.process.cancel(grace_s)
            self.process.read_events()
        finally:
            self.state = CANCELLED
            self._removeWorkDir()

    def wait(self, timeout: float | None = None, interval: float = 0.05) -> "SuperResolutionJob":
        """Poll until the job is over (or cancel it and raise ``TimeoutError`` after
        ``timeout`` seconds). Returns the job."""
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while not self.poll():
                if deadline is not None and time.monotonic() > deadline:
                    self.cancel()
                    raise TimeoutError(f"the super-resolution job took longer than {timeout} s")
                time.sleep(interval)
        except BaseException:
            self.cancel()  # e.g. KeyboardInterrupt in a script: leave no worker behind
            raise
        return self

    @property
    def cancelRequested(self) -> bool:
        """True from :meth:`requestCancel` until the job is over."""
        return self._cancelRequested and self.state == RUNNING

    @property
    def statusText(self) -> str:
        """One line for the panel: the latest stage and message, the time since the job
        started and the latest remaining-time estimate counted down to now."""
        if self._cancelRequested:
            return "cancelling: waiting for the worker to stop"
        if self.lastProgress is None:
            return "starting the worker"
        now = time.monotonic()
        event = {**self.lastProgress, "elapsed": now - self._started}
        if event.get("eta") is not None:
            event["eta"] = max(0.0, event["eta"] - (now - self._progressAt))
        return status_text(event)

    def _removeWorkDir(self) -> None:
        shutil.rmtree(self.workDir, ignore_errors=True)


class CTSuperResolutionLogicBase:
    """The module's logic without Slicer's application classes: usable from slicer-core in a
    plain Python, and the base of ``CTSuperResolutionLogic`` in ``CTSuperResolution.py``.

    ``moduleDir`` is the folder of ``CTSuperResolution.py`` (where the engine is found).
    """

    def __init__(self, moduleDir=None):
        self.moduleDir = Path(moduleDir) if moduleDir else Path(__file__).resolve().parents[1]

    @staticmethod
    def methods() -> tuple:
        """The engine's methods (presets of the zero-shot method and the baselines)."""
        return tuple(METHODS)

    @staticmethod
    def defaultMethod() -> str:
        return DEFAULT_METHOD

    def process(self, inputVolume, outputVolume=None, scale=2, method=DEFAULT_METHOD,
                device="auto", wait=True, progressCallback=None, throughPlaneOnly=False,
                seed=0, options=None, timeout=None, roi=None, uncertainty=0, lrModel=None):
        """Super-resolve ``inputVolume`` (a scalar volume node, HU).

        :param outputVolume: node to fill; ``None`` makes a new node ``<input>_SRx<scale>``.
        :param scale: 2, 4, 8 (all axes), per axis as ``"1x1x4"`` / ``(1, 1, 4)`` (IJK), or,
            with ``throughPlaneOnly``, one factor applied to the slice axis only.
        :param method: one of :meth:`methods`.
        :param device: ``"auto"``, ``"GPU"`` or ``"CPU"``.
        :param wait: True: block, return the output node, raise :class:`UserError` (one
            sentence) on failure or :class:`Cancelled`; False: return a
            :class:`SuperResolutionJob` to poll (the panel's way).
        :param progressCallback: called with every progress-protocol event dict; it may raise
            :class:`Cancelled` to stop the job.
        :param seed: a whole number from 0 (runs with uncertainty use ``seed .. seed + K - 1``).
        :param timeout: with ``wait``, seconds after which the job is cancelled and
            ``TimeoutError`` raised.
        :param options: extra engine options passed through the job file.
        :param roi: only this box: a markups ROI node (its axis-aligned bounds in the input's
            frame, through both parent transforms; see :mod:`.roi`) or a string
            ``"ras:R1,A1,S1,R2,A2,S2"`` (mm, the input's RAS frame) / ``"ijk:..."``. The output
            covers that box at the new resolution, in place.
        :param uncertainty: 0, or K >= 2 runs with seeds ``seed .. seed + K - 1`` of a zero-shot
            method: the voxelwise standard deviation (HU) is loaded as a second node
            ``<output>_uncertainty`` with a colour map (``job.uncertaintyVolume``).
        :param lrModel: how the input was made (the engine's ``--lr-model`` grammar, e.g.
            ``"box,noise:15"``); empty or None: the z profile from the DICOM database's
            SliceThickness when the node was loaded from DICOM, the rest estimated.

        The output node carries the provenance as ``CTSuperResolution.*`` attributes, with the
        LR residual (how far the output, degraded like the input, is from it) as
        ``CTSuperResolution.lrResidualHU`` and ``CTSuperResolution.lrResidualRelative``, the
        LR model used as ``CTSuperResolution.lrModel`` (where each part came from:
        ``CTSuperResolution.lrModelSource``) and its noise as ``CTSuperResolution.lrNoiseHU``.
        """
        nodes.check_input_node(inputVolume)
        if outputVolume is not None and outputVolume is inputVolume:
            raise UserError("the output volume must differ from the input volume.")
        if outputVolume is not None and (not outputVolume.IsA("vtkMRMLScalarVolumeNode")
                                         or outputVolume.IsA("vtkMRMLLabelMapVolumeNode")):
            raise UserError(f"the output {outputVolume.GetName()} is not a scalar volume; pick one or leave it "
                            "empty for a new one.")
        if timeout is not None and not wait:
            raise UserError("timeout applies with wait=True; with wait=False call job.wait(timeout).")
        check_seed(seed)
        jobs.engine_device(device)
        if method not in METHODS:
            raise UserError(f"unknown method {method!r}; this engine offers {', '.join(METHODS)}.")
        fullScale = jobs.resolve_scale(scale, inputVolume.GetSpacing(), throughPlaneOnly)
        options = {**(options or {}), **jobs.uncertainty_options(uncertainty, method),
                   **jobs.lr_model_options(lrModel, fullScale)}
        engineRoi = as_engine_roi(roi, inputVolume)
        if engineRoi is not None:
            options["roi"] = engineRoi
        thickness = nodes.dicom_slice_thickness(inputVolume)
        if thickness is not None:
            options["slice_thickness_mm"] = thickness
        if method not in INTERPOLATION_METHODS:  # they need only what Slicer ships (numpy, scipy, SimpleITK)
            self.ensureDependencies()
        job = SuperResolutionJob(inputVolume, outputVolume, fullScale, method, device, seed,
                                 options, progressCallback, self.moduleDir)
        if not wait:
            return job
        job.wait(timeout)
        if job.state == FAILED:
            raise UserError(job.errorMessage)
        if job.state == CANCELLED:
            raise Cancelled("the super-resolution job was cancelled")
        return job.outputVolume

    def ensureDependencies(self) -> None:
        """Make sure the engine's requirements are importable by the worker. Here (no Slicer
        application) a missing one is a :class:`UserError` naming what to install; the
        Slicer module overrides this to offer the installation."""
        from .dependencies import missing_requirements, read_requirements
        from ctsr.resources import resources_dir

        missing = missing_requirements(read_requirements(resources_dir() / "requirements.txt"))
        if missing:
            raise UserError(f"missing Python packages: {' '.join(missing)}; install them "
                            f"with: pip install {' '.join(missing)}")
