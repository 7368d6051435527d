"""``ComparisonPanel(op)``: pick backends, sizes, dtype and repeats; Run; see time,
throughput, speed-up and agreement with the reference side by side.

The panel is a thin shell over ``aura_lab.harness.compare_backends``: Run starts the sweep
on a background thread (the button callback returns at once and the notebook stays
usable); rows land in ``panel.results`` (the source of truth, which tests assert on) as each
case finishes, and the table, the plot (``panel.figure``, drawn off-screen and shown as a
PNG), a correctness badge per backend and the progress bar follow them. **Stop** cancels the
sweep through ``aura_lab.cancellable`` (a running Mojo/MAX call stops at its next poll; a
pure-Python call finishes its case) and keeps the rows finished so far. A second Run while
one is going is refused, not queued. A backend that raises shows its message in the panel;
the panel stays usable and the next Run works.

From code: ``panel.run.click(); panel.wait()`` (``wait`` joins the sweep).
"""

from __future__ import annotations

import html
import io
import math
import threading
import traceback

import ipywidgets as W

from . import harness
from ._control import Control, cancellable
from .harness.core import PanelSpec

BUSY_MESSAGE = "a run is already going: press Stop first"


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
        self.stop = W.Button(description="Stop", button_style="warning", icon="stop", disabled=True,
                             tooltip="stop the running sweep (keeps the cases finished so far)")
        self.progress = W.IntProgress(value=0, min=0, max=1, description="", layout=W.Layout(width="300px"))
        self.status = W.HTML("")
        self.auto = W.HTML("")
        self.badges = W.HTML("")
        self.table = W.HTML("")
        self.plot = W.Image(format="png", layout=W.Layout(min_height="320px"))
        self.results: list[dict] = []
        self.history: list[list[dict]] = []
        self.errors: list[str] = []
        self.figure = None
        self.traceback: str | None = None  # of the last run's failure, if it failed outside a backend
        self._said = ""  # the status line; a notice (refused Run, stopping) is shown under it
        self._notice = ""
        self._thread: threading.Thread | None = None
        self._control: Control | None = None
        self._lock = threading.Lock()
        self.run.on_click(self._on_run)
        self.stop.on_click(self._on_stop)
        self.sizes.observe(lambda _: self._show_auto(), names="value")
        self.widget = W.VBox([
            W.HTML(f"<h4>{html.escape(spec.name)}: backends vs the {html.escape(spec.reference)} reference</h4>"),
            W.HBox(list(self.toggles.values())),
            self.unavailable,
            W.HBox([self.sizes, W.VBox([self.dtype, self.repeats, W.HBox([self.run, self.stop, self.progress])])]),
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

    @property
    def busy(self) -> bool:
        """True while a sweep runs on the background thread."""
        return self._thread is not None and self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> bool:
        """Join the running sweep (if any); True once it has finished."""
        t = self._thread
        if t is not None:
            t.join(timeout)
            return not t.is_alive()
        return True

    def _step(self, k: int, total: int, what: str):
        self.progress.max = total
        self.progress.value = k - 1  # steps finished
        self._say(f"running {html.escape(what)} ({k}/{total})")

    def _say(self, text: str | None = None, notice: str | None = None):
        if text is not None:
            self._said = text
        if notice is not None:
            self._notice = notice
        self.status.value = self._said + (f"<br>{self._notice}" if self._notice else "")

    def _on_stop(self, _button=None):
        ctl = self._control
        if ctl is not None and self.busy:
            ctl.cancel()
            self.stop.disabled = True
            self._say(notice="stopping: the running case ends at its next check")

    def _on_run(self, _button=None):
        with self._lock:
            if self.busy:
                self._say(notice=f"<span style='color:#b00'>{BUSY_MESSAGE}</span>")
                return
            backends = self.selected_backends()
            if not backends:
                self._say("<span style='color:#b00'>select at least one backend</span>", notice="")
                return
            self.errors = []
            self.results = []
            self.traceback = None
            self.progress.value = 0
            sizes, dtype, repeats = list(self.sizes.value), self.dtype.value, self.repeats.value
            self._control = ctl = Control()
            self.stop.disabled = False
            self._say("starting", notice="")
            self._thread = threading.Thread(target=self._sweep, args=(ctl, backends, sizes, dtype, repeats),
                                            name=f"aura-panel-{self.spec.name}", daemon=True)
            self._thread.start()

    def _sweep(self, ctl: Control, backends: list[str], sizes: list[str], dtype: str, repeats: int):
        """The background thread: run the sweep, render as rows come in, always end in a status."""
        rows = self.results
        n_cases = len(backends) * len(sizes)

        def on_row(row):
            rows.append(row)
            if row.get("error"):
                self.errors.append(f"{row['backend']} @ {row['size']}: {row['error']}")
            self._render_safely()

        outcome = "done"
        try:
            with cancellable(ctl):
                harness.compare_backends(self.spec, backends, sizes, dtype, repeats=repeats,
                                         on_step=self._step, on_row=on_row)
        except KeyboardInterrupt:  # aura_lab.Cancelled: Stop was pressed
            outcome = "stopped"
        except BaseException as e:  # never lost: into errors and the status
            outcome = "failed"
            self.errors.append(f"{type(e).__name__}: {e}")
            self.traceback = traceback.format_exc()
        finally:
            try:
                self.history.append(rows)
                if rows:
                    self._render_safely()
                ok = sum(1 for r in rows if not r.get("error"))
                if outcome == "done":
                    msg = f"done: {ok}/{len(rows)} runs"
                    self.progress.value = self.progress.max
                elif outcome == "stopped":
                    msg = f"stopped after {len(rows)}/{n_cases} cases"
                else:
                    msg = f"run failed after {len(rows)}/{n_cases} cases"
                if self.errors:
                    msg += "<br><span style='color:#b00'>" + "<br>".join(html.escape(e) for e in self.errors) + "</span>"
                self._say(msg, notice="")  # last: once it reads done/stopped, everything is drawn
            finally:
                self.stop.disabled = True

    def _render_safely(self):
        try:
            self._render()
        except Exception as e:  # a drawing bug must not end the sweep
            self.errors.append(f"rendering failed: {type(e).__name__}: {e}")

    # ---------------------------------------------------------------- rendering
    def frame(self):
        import pandas as pd

        cols = ["size", "backend", "dtype", "ms", "GB/s", "GFLOP/s", "tokens/s", "clouds/s", f"speedup_vs_{self.spec.reference}",
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
        # an off-screen Agg figure (no pyplot: it is not thread-safe, and the inline backend would
        # show pyplot figures in whichever cell runs); shown as a PNG in an Image widget
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        ok = [r for r in self.results if not r.get("error") and r.get("ms") and math.isfinite(r["ms"])]
        fig = Figure(figsize=(10, 3.6))
        FigureCanvasAgg(fig)
        ax_t, ax_s = fig.subplots(1, 2)
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
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=80)
        self.figure = fig
        self.plot.value = buf.getvalue()
