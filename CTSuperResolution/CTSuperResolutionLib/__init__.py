"""The Qt-free layer of the CTSuperResolution Slicer module.

Everything the module does except drawing widgets lives here, so that it runs (and is tested)
with slicer-core's MRML alone, without the Slicer application, ``qt`` or
``ScriptedLoadableModule``:

* :mod:`.engine`: the oldest Slicer supported, where the ``ctsr`` engine and the Python that
  runs the worker are;
* :mod:`.nodes`: volume node <-> :class:`ctsr.volume.Volume` (and so <-> file, via ``ctsr.io``);
* :mod:`.jobs`: scale choice, output naming, the job file of ``python -m ctsr.worker``;
* :mod:`.roi`: a markups ROI node -> the engine's ``ras:...`` box in the input's frame;
* :mod:`.events`: parsing the worker's JSON-lines progress and formatting it for the panel;
* :mod:`.runner`: the worker subprocess (its own process group; stop = ask, then kill the tree
  after a grace period, never blocking the GUI; every worker is killed when Python exits);
* :mod:`.dependencies`: which engine requirements are missing, and how to install them;
* :mod:`.panel`: a user action's failure -> one message for the error display;
* :mod:`.logic`: :class:`CTSuperResolutionLogicBase` (``process``) and the job handle.

The engine must be importable before this package is used; :func:`.engine.ensure_engine_importable`
arranges that from the module's folder.
"""
