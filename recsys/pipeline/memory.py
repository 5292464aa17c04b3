"""Peak resident memory (RSS) of this process, per step of the batch job.

On Linux the kernel's high-water mark is reset at the start of a step (``5`` written to
``/proc/self/clear_refs``) and read at its end (``VmHWM`` in ``/proc/self/status``): the
exact peak of that step, no sampling. Where that is not possible the figure is the
process's peak so far (``getrusage``), which never decreases; ``method`` says which.
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path
from typing import Literal

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")

Method = Literal["per-step", "process-peak"]


def _high_water_bytes() -> int | None:
    try:
        with open(_STATUS, encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_high_water() -> bool:
    try:
        with open(_CLEAR_REFS, "w", encoding="ascii") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _process_peak_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


class PeakMemory:
    """Measures the peak RSS between :meth:`begin` and :meth:`end`, and over all steps."""

    def __init__(self) -> None:
        self.method: Method = "per-step" if _high_water_bytes() is not None and _reset_high_water() else "process-peak"
        self._overall = 0

    def _current_peak(self) -> int:
        if self.method == "per-step":
            return _high_water_bytes() or 0
        return _process_peak_bytes()

    def begin(self) -> None:
        """Start a step: what happened since the last step still counts for the overall peak."""
        self._overall = max(self._overall, self._current_peak())
        if self.method == "per-step":
            _reset_high_water()

    def end(self) -> int:
        """The step's peak in bytes."""
        peak = self._current_peak()
        self._overall = max(self._overall, peak)
        return peak

    def overall(self) -> int:
        """Peak in bytes since this object was made (the first ``begin`` at the latest)."""
        self._overall = max(self._overall, self._current_peak())
        return self._overall


def megabytes(value: int) -> float:
    return round(value / 2**20, 1)
