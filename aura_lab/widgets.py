"""``ComparisonPanel(op)``: pick backends, sizes, dtype and repeats; Run; see time,
throughput, speed-up and agreement with the reference side by side.

The panel is a thin shell over ``aura_lab.harness.compare_backends``: the Run handler calls
it, stores the rows in ``panel.results`` (the source of truth, which tests assert on) and
renders a table, a plot (``panel.figure``), a correctness badge per backend and which
backend ``auto`` would pick. A backend that raises shows its message in the panel; the
panel stays usable and the next Run works.
"""

from __future__ import annotations

import html
import math

import ipywidgets as W

from . import harness
from .harness.core import PanelSpec


class ComparisonPanel:
    def __init__(self, op: str | PanelSpec, *, sizes: list[str] | None = None, dtype: str | None = None, repeats: int = 3):
        self.spec = op if isinstance(op, PanelSpec) else harness.panel_spec(op)
        spec = self.spec
        self.toggles: dict[str, W.ToggleButton] = {}
        for b in spec.backends:
            ok, reason = spec.available(b)
            self.toggles[b] = W.ToggleButton(
                value=ok, description=b, disabled=not ok,
                tooltip=f"{b}: available" if ok else f"{b} unavailable: {reason}",
                layout=W.Layout(width="auto"),
            )
        unavailable = [f"<b>{b}</b>: {html.escape(t.tooltip.split(': ', 1)[1])}" for b, t in self.toggles.items() if t.disabled]
        self.unavailable = W.HTML("<br>".join(unavailable))
        labels = list(spec.sizes)
        self.sizes = W.SelectMultiple(options=labels, value=tuple(sizes or labels[:1]), description="sizes", rows=min(6, len(labels)))
        self.dtype = W.Dropdown(options=spec.dtypes, value=dtype or spec.dtypes[0], description="dtype")
        self.repeats = W.IntSlider(value=repeats, min=1, max=20, description="repeats", continuous_update=False)
        self.run = W.Button(description="Run", button_style="primary", icon="play")
        self.progress = W.IntProgress(value=0, min=0, max=1, description="", layout=W.Layout(width="300px"))
        self.status = W.HTML("")
        self.auto = W.HTML("")
        self.badges = W.HTML("")
        self.table = W.HTML("")
        self.plot = W.Output(layout=W.Layout(min_height="320px"))
        self.results: list[dict] = []
        self.history: list[list[dict]] = []
        self.errors: list[str] = []
        self.figure = None
        self.run.on_click(self._on_run)
        self.sizes.observe(lambda _: self._show_auto(), names="value")
        self.widget = W.VBox([
            W.HTML(f"<h4>{html.escape(spec.name)}: backends vs the {html.escape(spec.reference)} reference</h4>"),
            W.HBox(list(self.toggles.values())),
            self.unavailable,
            W.HBox([self.sizes, W.VBox([self.dtype, self.repeats, W.HBox([self.run, self.progress])])]),
            self.status, self.auto, self.badges, self.table, self.plot,
        ])
        self._show_auto()

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)

    # ------------------------------------------------------------------ actions
    def selected_backends(self) -> list[str]:
        return [b for b, t in self.toggles.items() if t.value and not t.disabled]

    def _show_auto(self):
        if self.spec.explain is None:
            self.auto.value = ""
            return
        parts = []
        for label in self.sizes.value:
            try:
                parts.append(f"{html.escape(label)}: {html.escape(self.spec.explain(self.spec.sizes[label]))}")
            except Exception as e:
                parts.append(f"{html.escape(label)}: cannot tell ({html.escape(str(e))})")
        self.auto.value = "<b>auto</b> would pick &mdash; " + "<br>".join(parts)

    def _step(self, k: int, total: int, what: str):
        self.progress.max = total
        self.progress.value = k
        self.status.value = f"running {html.escape(what)} ({k}/{total})"

    def _on_run(self, _button=None):
        self.run.disabled = True
        self.errors = []
        try:
            backends = self.selected_backends()
            if not backends:
                self.status.value = "<span style='color:#b00'>select at least one backend</span>"
                return
            rows = harness.compare_backends(self.spec, backends, list(self.sizes.value), self.dtype.value,
                                            repeats=self.repeats.value, on_step=self._step)
            self.results = rows
            self.history.append(rows)
            self.errors = [f"{r['backend']} @ {r['size']}: {r['error']}" for r in rows if r.get("error")]
            done = sum(1 for r in rows if not r.get("error"))
            msg = f"done: {done}/{len(rows)} runs"
            if self.errors:
                msg += "<br><span style='color:#b00'>" + "<br>".join(html.escape(e) for e in self.errors) + "</span>"
            self.status.value = msg
            self._render()
        except Exception as e:  # never leave the panel half-drawn
            self.errors.append(f"{type(e).__name__}: {e}")
            self.status.value = f"<span style='color:#b00'>run failed: {html.escape(self.errors[-1])}</span>"
        finally:
            self.progress.value = 0
            self.run.disabled = False

    # ---------------------------------------------------------------- rendering
    def frame(self):
        import pandas as pd

        cols = ["size", "backend", "dtype", "ms", "GB/s", "GFLOP/s", "tokens/s", f"speedup_vs_{self.spec.reference}",
                "max_err", "passed", "error"]
        df = pd.DataFrame(self.results)
        return df[[c for c in cols if c in df.columns]]

    def _render(self):
        self.table.value = self.frame().to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="")
        self.badges.value = " ".join(self._badge(b) for b in dict.fromkeys(r["backend"] for r in self.results))
        self._plot()

    def _badge(self, backend: str) -> str:
        rows = [r for r in self.results if r["backend"] == backend]
        if any(r.get("error") for r in rows):
            color, text = "#b00", "error"
        elif all(r.get("passed") for r in rows):
            worst = max(r["max_err"] for r in rows)
            color, text = "#080", f"pass (max err {worst:.2g})"
        else:
            worst = max((r["max_err"] for r in rows if r.get("max_err") == r.get("max_err")), default=float("nan"))
            color, text = "#b00", f"FAIL (max err {worst:.2g})"
        return (f"<span style='border:1px solid {color};color:{color};border-radius:4px;padding:1px 6px;"
                f"margin-right:6px'>{html.escape(backend)}: {html.escape(text)}</span>")

    def _plot(self):
        import matplotlib.pyplot as plt

        ok = [r for r in self.results if not r.get("error") and r.get("ms") and math.isfinite(r["ms"])]
        fig, (ax_t, ax_s) = plt.subplots(1, 2, figsize=(10, 3.6))
        key = "work" if all(r.get("work") for r in ok) else None
        order = list(self.spec.sizes)
        xs = lambda rs: [r["work"] if key else order.index(r["size"]) + 1 for r in rs]  # noqa: E731
        for b in dict.fromkeys(r["backend"] for r in ok):
            rs = sorted((r for r in ok if r["backend"] == b), key=lambda r: order.index(r["size"]))
            ax_t.plot(xs(rs), [r["ms"] for r in rs], "o-", label=b)
            sp = [r.get(f"speedup_vs_{self.spec.reference}") for r in rs]
            if all(v is not None for v in sp):
                ax_s.plot(xs(rs), sp, "o-", label=b)
        for ax in (ax_t, ax_s):
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("problem size (work)" if key else "size index")
            ax.grid(True, which="both", alpha=0.3)
        ax_t.set_ylabel("time (ms)")
        ax_t.set_title("time vs size")
        ax_s.set_ylabel(f"speed-up over {self.spec.reference}")
        ax_s.set_title("speed-up")
        if ok:
            ax_t.legend(fontsize=8)
        fig.tight_layout()
        self.figure = fig
        self.plot.clear_output(wait=True)
        from IPython import get_ipython

        if get_ipython() is not None:  # headless (tests): keep the figure, draw nothing
            with self.plot:
                from IPython.display import display

                display(fig)
        plt.close(fig)
