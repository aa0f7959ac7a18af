"""CT Super-Resolution: the 3D Slicer scripted module (Module, Widget, Logic, Test).

The work runs in a background process (``python -m ctsr.worker``, through PythonSlicer); this
file only holds what needs the Slicer application and Qt. Everything else (node <-> file, job
building, the worker process, progress parsing) is the Qt-free ``CTSuperResolutionLib``, which
is tested headless with slicer-core.

From the Python console::

    logic = slicer.util.getModuleLogic("CTSuperResolution")
    hr = logic.process(getNode("CT"), scale=4, method="cubic")
"""

import os
from typing import Annotated, Optional

import qt
import vtk

import slicer
from CTSuperResolutionLib.engine import check_slicer_version, ensure_engine_importable

# Before anything that needs a recent Slicer (vtkMRMLMarkupsROINode from slicer, Python 3.10).
check_slicer_version(slicer.app.majorVersion, slicer.app.minorVersion)

from slicer import vtkMRMLMarkupsROINode, vtkMRMLScalarVolumeNode  # noqa: E402
from slicer.i18n import tr as _  # noqa: E402
from slicer.i18n import translate  # noqa: E402
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper  # noqa: E402
from slicer.ScriptedLoadableModule import (  # noqa: E402
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin  # noqa: E402

ensure_engine_importable(os.path.dirname(os.path.abspath(__file__)))

from ctsr.errors import UserError  # noqa: E402  (importable only after the line above)
from ctsr.resources import resources_dir, sample_volume_path  # noqa: E402

from CTSuperResolutionLib import jobs  # noqa: E402
from CTSuperResolutionLib.dependencies import (  # noqa: E402
    call_pip_ensure,
    find_pip_ensure,
    missing_requirements,
    plan_installation,
    read_requirements,
    torch_version_requirement,
)
from CTSuperResolutionLib.panel import run_action  # noqa: E402
from CTSuperResolutionLib.runner import stop_all_workers  # noqa: E402
from CTSuperResolutionLib.events import percent  # noqa: E402
from CTSuperResolutionLib.logic import (  # noqa: E402
    CANCELLED,
    FAILED,
    SUCCEEDED,
    CTSuperResolutionLogicBase,
)


def resourcePath(relativePath: str) -> str:
    """A file of the extension's Resources folder (beside the engine in both layouts)."""
    return str(resources_dir() / relativePath)


#
# CTSuperResolution
#


class CTSuperResolution(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("CT Super-Resolution")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Filtering")]
        self.parent.dependencies = []
        self.parent.contributors = ["CTSuperResolution developers"]
        self.parent.helpText = _(
            "Makes a low-resolution CT volume high-resolution (x2, x4 or x8 in-plane, across the "
            "slices, or both) without paired training data: by default a small network the "
            "scan trains on itself (balanced); without it, in about a second (fast); or a network "
            "trained on the scan's own 2D X-ray "
            "projections and signed 3D Gaussians (standard, quality); or an interpolation "
            "baseline. The work runs in a background "
            "process; the result is a new volume aligned with the input.")
        self.parent.acknowledgementText = _(
            "Method: Zero-shot CT Super-Resolution using Diffusion-based 2D Projection Priors and "
            "Signed 3D Gaussians (arXiv 2508.15151). Sample data: a crop of a chest CT from "
            "TotalSegmentator's test data (Apache-2.0).")
        self.parent.icon = qt.QIcon(resourcePath("Icons/CTSuperResolution.png"))
        slicer.app.connect("startupCompleted()", registerSampleData)


def registerSampleData():
    """Offer the bundled chest CT crop in the Sample Data module. The "download" is a copy of
    the local file (a file:// URI) into Slicer's cache, checked against the file's SHA-256."""
    import hashlib

    import SampleData

    path = sample_volume_path()
    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category="CTSuperResolution",
        sampleName="CTSuperResolutionChestCrop",
        thumbnailFileName=resourcePath("Icons/CTSuperResolution.png"),
        uris=path.as_uri(),
        fileNames="CTSuperResolution_" + path.name,
        checksums="SHA256:" + hashlib.sha256(path.read_bytes()).hexdigest(),
        nodeNames="CTChestCrop",
    )


#
# CTSuperResolutionParameterNode
#


#: The panel's methods: the engine's, less ``nabgs`` (NAB-GS without a prior, the check that
#: the reconstruction gives back cubic: minutes for no gain; the console still takes it).
_METHODS = [m for m in CTSuperResolutionLogicBase.methods() if m != "nabgs"]
_DEFAULT_METHOD = CTSuperResolutionLogicBase.defaultMethod()
#: Parameter node fields that the panel keeps for itself, bound to no widget.
_PANEL_STATE_FIELDS = ("scalesSetFor",)


@parameterNodeWrapper
class CTSuperResolutionParameterNode:
    """The panel's state, saved with the scene.

    inputVolume - the LR CT volume. inPlaneScale, sliceScale - the factors in-plane and across
    the slices (the axis of largest spacing; 1 leaves a direction as it is; e.g. 2 and 4 on a
    3 x 3 x 10 mm scan give 1.5 x 1.5 x 2.5 mm). method - an engine method. device - auto, GPU
    or CPU. outputVolume - the node to fill; empty makes a new one named <input>_SRx<scale>. roi -
    a markups ROI: only that box is processed (empty: the whole volume). uncertaintyRuns - 0
    (off) or K >= 2 runs whose voxelwise standard deviation becomes a second volume
    <output>_uncertainty. lrModel - how the input was made (engine grammar, e.g.
    "box,noise:15"); empty: from DICOM SliceThickness, then estimated. scalesSetFor - the ID of
    the input for which the two factors were last set from its spacing (a new input gets them
    set again; a reload or a saved scene keeps the user's choice).
    """

    inputVolume: vtkMRMLScalarVolumeNode
    inPlaneScale: Annotated[int, Choice(list(jobs.PANEL_SCALES))] = 2
    sliceScale: Annotated[int, Choice(list(jobs.PANEL_SCALES))] = 2
    method: Annotated[str, Choice(_METHODS)] = _DEFAULT_METHOD
    device: Annotated[str, Choice(["auto", "GPU", "CPU"])] = "auto"
    outputVolume: Optional[vtkMRMLScalarVolumeNode] = None
    roi: Optional[vtkMRMLMarkupsROINode] = None
    uncertaintyRuns: Annotated[int, WithinRange(0, 16)] = 0
    lrModel: str = ""
    scalesSetFor: str = ""


#
# CTSuperResolutionWidget
#


class CTSuperResolutionWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    #: Milliseconds between two reads of the worker's progress.
    POLL_MS = 100

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._job = None
        self._timer = qt.QTimer()
        self._timer.setInterval(self.POLL_MS)
        self._timer.connect("timeout()", self._pollJob)

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(resourcePath("UI/CTSuperResolution.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = CTSuperResolutionLogic()

        self.ui.progressBar.hide()
        self.ui.statusLabel.text = ""
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        """The module is closed (or Slicer exits): stop the running job's whole process tree now."""
        if self._parameterNode is not None and self._parameterNodeGuiTag is not None:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
        self.removeObservers()
        self._timer.stop()
        if self._job is not None:
            self._job.cancel(grace_s=0)
            self._job = None
        stop_all_workers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)

    def onSceneStartClose(self, caller, event) -> None:
        """The scene's nodes are going: stop every job now (the panel's and the console's), as
        none could place its result; each ends cancelled when next polled."""
        self._cancelJob()
        stop_all_workers()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            firstVolumeNode = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if firstVolumeNode:
                self._parameterNode.inputVolume = firstVolumeNode

    def setParameterNode(self, inputParameterNode: Optional[CTSuperResolutionParameterNode]) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._onParameterNodeModified)
            self._onParameterNodeModified()

    def _onParameterNodeModified(self, caller=None, event=None) -> None:
        """A newly selected input sets the two factors from its spacing
        (:func:`jobs.factors_for_input`: x2 everywhere, or for thick slices x2 or x4 across
        them, in-plane too only where the pixels are coarse), and the status line says so when
        they change; the user can change them again, and a reload or a saved scene keeps that."""
        p = self._parameterNode
        node = p.inputVolume if p else None
        if node is not None and node.GetID() != p.scalesSetFor:
            p.scalesSetFor = node.GetID()
            factors = jobs.factors_for_input(node.GetSpacing())
            if factors != (p.inPlaneScale, p.sliceScale):
                p.inPlaneScale, p.sliceScale = factors
                spacing = " x ".join(f"{s:.3g}" for s in node.GetSpacing())
                self._showStatus(_("{name} ({spacing} mm): scale x{inPlane} in-plane, x{slices} across the slices.")
                                 .format(name=node.GetName(), spacing=spacing, inPlane=factors[0], slices=factors[1]))
        self._updateButtons()

    def _updateButtons(self, caller=None, event=None) -> None:
        running = self._job is not None
        self.ui.parametersCollapsibleButton.enabled = not running
        if running:
            self.ui.applyButton.text = _("Cancel")
            self.ui.applyButton.toolTip = _("Stop the running job; nothing is added to the scene.")
            self.ui.applyButton.enabled = not self._job.cancelRequested
            return
        self.ui.applyButton.text = _("Apply")
        why = self._whyNotApply()
        self.ui.applyButton.toolTip = why or _("Super-resolve the input volume.")
        self.ui.applyButton.enabled = not why

    def _whyNotApply(self) -> str:
        """Why the current settings cannot run (one sentence), or "" when they can."""
        p = self._parameterNode
        if not p or not p.inputVolume:
            return _("Select an input volume.")
        if p.outputVolume is not None and p.outputVolume is p.inputVolume:
            return _("Pick an output volume other than the input, or leave it empty for a new one.")
        try:  # the engine's rules: a scale; uncertainty runs for a method that has them; an LR model it reads
            jobs.uncertainty_options(p.uncertaintyRuns, p.method)
            jobs.lr_model_options(p.lrModel, self._scale())
        except UserError as error:
            return str(error)[:1].upper() + str(error)[1:]
        return ""

    def _scale(self):
        """The per-axis scale (IJK) of the panel's two factors on the input's axes."""
        p = self._parameterNode
        return jobs.panel_scale(p.inPlaneScale, p.sliceScale, p.inputVolume.GetSpacing())

    # -- running a job ------------------------------------------------------------------------
    def onApplyButton(self) -> None:
        if self._job is not None:
            self._cancelJob()
            return
        p = self._parameterNode
        self.ui.logTextEdit.clear()
        # Every failure (a declined installation too) is one message in the error display.
        self._job = run_action(lambda: self.logic.process(
            p.inputVolume, p.outputVolume, scale=self._scale(), method=p.method, device=p.device,
            roi=p.roi, uncertainty=p.uncertaintyRuns,
            lrModel=p.lrModel, wait=False, progressCallback=self._onEvent),
            slicer.util.errorDisplay, _("Could not start the super-resolution"))
        if self._job is None:
            return
        self.ui.progressBar.value = 0
        self.ui.progressBar.show()
        self._showStatus(self._job.statusText)
        self._updateButtons()
        self._timer.start()

    def _onEvent(self, event: dict) -> None:
        kind = event.get("event")
        if kind == "progress":
            self.ui.progressBar.value = percent(event)
        elif kind in ("log", "error"):
            self.ui.logTextEdit.appendPlainText(event.get("message", ""))

    def _pollJob(self) -> None:
        job = self._job
        if job is None:
            return
        if not job.poll():  # elapsed / remaining tick between events
            self._showStatus(_("Cancelling...") if job.cancelRequested else job.statusText)
            return
        self._timer.stop()
        self._job = None
        self.ui.progressBar.hide()
        self._updateButtons()
        if job.state == SUCCEEDED:
            status = _("Done in {seconds} s.").format(seconds=job.provenance.get("wall_time_s"))
            if job.residualText:  # how well the output, degraded like the input, reproduces it
                self.ui.logTextEdit.appendPlainText(job.residualText)
                status += " " + job.residualText + "."
            if job.uncertaintyVolume is not None:
                self.ui.logTextEdit.appendPlainText(
                    _("Uncertainty (standard deviation over the runs, HU): {name}").format(
                        name=job.uncertaintyVolume.GetName()))
                slicer.util.setSliceViewerLayers(background=job.outputVolume, foreground=job.uncertaintyVolume,
                                                 foregroundOpacity=0.4, fit=True)
            else:  # no map of an earlier run left over the new result
                slicer.util.setSliceViewerLayers(background=job.outputVolume, foreground=None, fit=True)
            self._showStatus(status)
        elif job.state == FAILED:
            for line in job.stderrTail:  # the log events are in the log already
                self.ui.logTextEdit.appendPlainText(line)
            self._showStatus(_("Failed."))
            slicer.util.errorDisplay(job.errorMessage[:1].upper() + job.errorMessage[1:])
        elif job.state == CANCELLED:
            self._showStatus(_("Cancelled; nothing was added to the scene."))

    def _cancelJob(self) -> None:
        """Ask the job to stop and return at once; the polling timer finishes it (the worker's
        tree is killed if it has not stopped within a few seconds) and reports "Cancelled"."""
        if self._job is None:
            return
        self._job.requestCancel()
        self.ui.applyButton.enabled = False
        self._showStatus(_("Cancelling..."))

    def _showStatus(self, text: str) -> None:
        self.ui.statusLabel.text = text


#
# CTSuperResolutionLogic
#


class CTSuperResolutionLogic(ScriptedLoadableModuleLogic, CTSuperResolutionLogicBase):
    """``process(inputVolume, outputVolume=None, scale=2, method="balanced", device="auto",
    wait=True, progressCallback=None, throughPlaneOnly=False, seed=0, options=None, timeout=None,
    roi=None, uncertainty=0, lrModel=None)``: see
    :meth:`CTSuperResolutionLib.logic.CTSuperResolutionLogicBase.process`. Usable without the
    GUI (Python console, scripts, tests)."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        CTSuperResolutionLogicBase.__init__(self, os.path.dirname(os.path.abspath(__file__)))

    def getParameterNode(self):
        return CTSuperResolutionParameterNode(super().getParameterNode())

    def ensureDependencies(self) -> None:
        """On first use, install what the engine lacks in Slicer's Python after one confirmation
        that lists everything: torch through the PyTorch extension (the build for this
        computer's GPU driver; an older torch is upgraded), the rest with Slicer's pip
        (``pip_ensure`` where this Slicer has it). numpy, scipy, SimpleITK and VTK are never
        touched (Slicer ships them). Declining or a failed installation is a :class:`UserError`;
        in testing mode (ctest) nothing is installed and a missing package is one too."""
        requirements = read_requirements(resourcePath("requirements.txt"))
        plan = plan_installation(requirements)
        if plan.empty:
            return
        if slicer.app.testingEnabled():
            raise UserError(_("Slicer is in testing mode, where nothing is installed; these Python packages are "
                              "missing: {packages}.").format(packages=", ".join(plan.requirements)))
        torchUtils = None
        if plan.torch:
            try:
                import PyTorchUtils
            except ImportError:
                raise UserError(_("CT Super-Resolution needs PyTorch ({torch}): install the PyTorch extension with "
                                  "the Extensions Manager, restart Slicer and try again.").format(torch=plan.torch)) from None
            torchUtils = PyTorchUtils.PyTorchUtilsLogic()
        if not slicer.util.confirmOkCancelDisplay(
                _("CT Super-Resolution needs these Python packages. Install them now (this can take "
                  "several minutes)?"), detailedText=plan.describe()):
            raise UserError(_("The required Python packages were not installed: {packages}.").format(
                packages=", ".join(plan.requirements)))
        if torchUtils is not None and torchUtils.installTorch(
                askConfirmation=False, torchVersionRequirement=torch_version_requirement(plan.torch)) is None:
            raise UserError(_("PyTorch ({torch}) could not be installed by the PyTorch extension.").format(
                torch=plan.torch))
        if plan.pip:
            pipEnsure = find_pip_ensure()
            if pipEnsure is not None:
                call_pip_ensure(pipEnsure, plan.pip, "CT Super-Resolution")
            else:
                with slicer.util.WaitCursor():
                    slicer.util.pip_install(plan.pip)
        still = missing_requirements(requirements)
        if still:
            raise UserError(_("These Python packages are still missing after the installation: {packages}; "
                              "restart Slicer and try again.").format(packages=", ".join(still)))


#
# CTSuperResolutionTest
#


class CTSuperResolutionTest(ScriptedLoadableModuleTest):
    """Runs in Slicer (Developer mode "Reload and Test", or ctest): loads the sample through
    its Sample Data registration, runs the fast preset in the background worker, and checks the
    output geometry against the input."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_processSampleKeepsGeometry()
        self.setUp()
        self.test_roiCropsInPlace()
        self.setUp()
        self.test_badInputIsOneMessage()

    def test_processSampleKeepsGeometry(self):
        import numpy as np

        import SampleData

        self.delayDisplay("Loading the sample")
        registerSampleData()
        inputVolume = SampleData.downloadSample("CTSuperResolutionChestCrop")
        method = "fast"
        events = []
        self.delayDisplay(f"Running {method} x2")
        outputVolume = CTSuperResolutionLogic().process(
            inputVolume, scale=2, method=method, progressCallback=events.append)

        self.assertEqual(outputVolume.GetName(), inputVolume.GetName() + "_SRx2")
        self.assertEqual(outputVolume.GetImageData().GetDimensions(),
                         tuple(2 * n for n in inputVolume.GetImageData().GetDimensions()))
        np.testing.assert_allclose(outputVolume.GetSpacing(), np.array(inputVolume.GetSpacing()) / 2)
        # LR voxel 0's centre is the centre of HR voxels 0 and 1 along each axis.
        lrToRas, hrToRas = vtk.vtkMatrix4x4(), vtk.vtkMatrix4x4()
        inputVolume.GetIJKToRASMatrix(lrToRas)
        outputVolume.GetIJKToRASMatrix(hrToRas)
        np.testing.assert_allclose(hrToRas.MultiplyPoint((0.5, 0.5, 0.5, 1.0)),
                                   lrToRas.MultiplyPoint((0.0, 0.0, 0.0, 1.0)), atol=1e-6)
        self.assertEqual(outputVolume.GetAttribute("CTSuperResolution.method"), method)
        # How the input was taken to be made, and the residual beside the noise it stopped at.
        self.assertTrue(outputVolume.GetAttribute("CTSuperResolution.lrModel"))
        self.assertIn("estimated", outputVolume.GetAttribute("CTSuperResolution.lrModelSource"))
        self.assertGreaterEqual(float(outputVolume.GetAttribute("CTSuperResolution.lrNoiseHU")), 0.0)
        self.assertTrue(any(e["event"] == "result" for e in events))
        self.delayDisplay("Test passed")

    def test_roiCropsInPlace(self):
        import numpy as np

        import SampleData

        registerSampleData()
        inputVolume = SampleData.downloadSample("CTSuperResolutionChestCrop")
        bounds = [0.0] * 6
        inputVolume.GetRASBounds(bounds)
        box = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "box")
        box.SetCenter([(bounds[2 * a] + bounds[2 * a + 1]) / 2 for a in range(3)])
        box.SetSize(30.0, 24.0, 18.0)
        self.delayDisplay("Running cubic x2 in an ROI")
        outputVolume = CTSuperResolutionLogic().process(inputVolume, scale=2, method="cubic", roi=box)

        np.testing.assert_allclose(outputVolume.GetSpacing(), np.array(inputVolume.GetSpacing()) / 2)
        got = [0.0] * 6
        outputVolume.GetRASBounds(got)
        spacing = 1.01 * max(inputVolume.GetSpacing())
        for axis in range(3):  # the output covers the box (to within an input voxel), no more
            low, high = box.GetCenter()[axis] - box.GetSize()[axis] / 2, box.GetCenter()[axis] + box.GetSize()[axis] / 2
            self.assertAlmostEqual(got[2 * axis], low, delta=spacing)
            self.assertAlmostEqual(got[2 * axis + 1], high, delta=spacing)
        self.delayDisplay("Test passed")

    def test_badInputIsOneMessage(self):
        labelmap = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "labels")
        with self.assertRaises(UserError):
            CTSuperResolutionLogic().process(labelmap, scale=2)
        self.delayDisplay("Test passed")
