"""CTSuperResolution engine: zero-shot CT super-resolution with no Slicer and no Qt.

Arrays are float32 in KJI order (slice, row, column), as Slicer's ``arrayFromVolume``;
geometry is a 4x4 IJK-to-RAS matrix in millimetres. See :mod:`ctsr.volume`.
"""

__version__ = "0.1.0"
