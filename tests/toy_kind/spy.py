"""The PFGM++ model kind, subclassed to record which data rows each rank trains on (DDP tests)."""

from __future__ import annotations

import json
from pathlib import Path

from workbench.generative.config import PFGMPPConfig
from workbench.generative.module import Generative


class RowSpy(Generative):
    """PFGM++ that appends each step's rows to rows-rank<r>.jsonl in its run directory."""

    Config = PFGMPPConfig

    def training_step(self, batch, batch_idx):
        record = {"step": int(self.trainer.global_step), "rows": batch["rows"].tolist()}
        with open(Path(self.trainer.default_root_dir) / f"rows-rank{self.global_rank}.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        return super().training_step(batch, batch_idx)
