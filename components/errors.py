"""A step's input error, marked so that a cluster never retries it.

KFP's launcher ends a failed step with exit code 1 whatever the step's own code
(backend/src/v2/cmd/launcher-v2/main.go: glog.Exit), so an exit code cannot tell
an input error (`PadError`: bad data, a mismatched artifact; the same input fails
the same way) from a lost node. The pod's termination message can: Argo puts it
in the node's message (argo-workflows v4.0.5 workflow/controller/operator.go
inferFailedReason), which a retry expression reads as `lastRetry.message`. The
KFP install of `k8s/kfp` retries every step unless that message holds INPUT_ERROR.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import TracebackType

INPUT_ERROR = "pad input error"
TERMINATION_LOG = Path("/dev/termination-log")  # Kubernetes' default terminationMessagePath


def record_input_error(exc: BaseException, log: Path | None = None) -> bool:
    """Write `exc` (a PadError) as the pod's termination message (`log`, default TERMINATION_LOG); False outside a
    pod (no log file)."""
    from padcore.errors import PadError

    log = log or TERMINATION_LOG
    if not isinstance(exc, PadError) or not log.exists() or not os.access(log, os.W_OK):
        return False
    log.write_text(f"{INPUT_ERROR}: {exc}"[:4000])  # Kubernetes keeps at most 4096 bytes
    return True


def mark_input_errors() -> None:
    """From now on, a PadError that ends this process is recorded as its pod's termination message."""
    previous = sys.excepthook
    if getattr(previous, "pad_marks_input_errors", False):
        return

    def hook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        record_input_error(exc)
        previous(kind, exc, tb)

    hook.pad_marks_input_errors = True  # type: ignore[attr-defined]
    sys.excepthook = hook
