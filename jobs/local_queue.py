"""`python -m jobs.local_queue SWEEP_DIR`: start a sweep's queued local members as slots free.

Started by `jobs.sweep.submit` in a session of its own when a local sweep has more members than
`jobs.local.local_limit` allows at once; it exits when no member is queued any more.
"""

from __future__ import annotations

import sys
from pathlib import Path

from jobs.sweep import drain_local_queue

if __name__ == "__main__":
    drain_local_queue(Path(sys.argv[1]))
