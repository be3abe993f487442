"""Errors meant for the user rather than for a traceback.

``UserError`` is the one base class: every package's user errors subclass it (``hardware.HardwareError``,
``calibrate.records.sweep.SweepError``, ``calibrate.records.record.RecordError`` ...), so the CLI catches only it. It is
defined in ``hardware.errors`` because the hardware package is a leaf that imports nothing of ours, yet its
errors must be user errors too; this module is where everything else imports it from.
"""

from hardware.errors import UserError

__all__ = ["UserError"]
