"""The progress bar of ``rips_persistence(progress=...)``, fed from the engine's control words."""

from __future__ import annotations

import time

from .problem import STAGE


def _check_progress(progress) -> bool | str:
    if isinstance(progress, bool) or (isinstance(progress, str) and progress == "auto"):
        return progress
    raise TypeError(f"progress: expected True, False or 'auto', got {progress!r}")


#: with ``progress="auto"``, a bar appears once the call has run this long
PROGRESS_AFTER_S = 2.0


Stage = STAGE.enum  # the edge collapse's and the batched engine's stages (problem.STAGE)


class ProgressBar:
    """A ``tqdm.auto`` bar fed from the engine's control words (``aura_lab._control``): stage
    ``2k`` is building the k-simplex columns (k = 0: scanning the edges), ``2k + 1`` reducing
    them; ``done``/``total`` count simplices or columns of that stage."""

    def __init__(self, after_s: float = 0.0):
        self.after_s = after_s
        self.started = time.perf_counter()
        self.bar = None
        self.stage = None

    @staticmethod
    def describe(stage: int) -> str:
        if stage == Stage.COLLAPSE:
            return "edge collapse: edges processed"
        if stage == Stage.BATCH:
            return "collection: inputs done"
        k, reducing = divmod(stage, 2)
        if k == 0 and not reducing:
            return "edges: rows scanned"
        return f"dim {k}: columns reduced" if reducing else f"dim {k}: cofacets of dim {k - 1} simplices"

    def __call__(self, ctl) -> None:
        stage, done, total = ctl.progress()
        if total <= 0 or time.perf_counter() - self.started < self.after_s:
            return
        if self.bar is None:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=self.describe(stage), leave=False, mininterval=0.2)
            self.stage = stage
        elif stage != self.stage:
            self.bar.reset(total=total)
            self.bar.set_description(self.describe(stage), refresh=False)
            self.stage = stage
        self.bar.update(min(done, total) - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
