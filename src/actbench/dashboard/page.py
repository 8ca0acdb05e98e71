"""The dashboard page: one self-contained HTML file that opens from disk with no network.

plotly.js is inlined once (from the ``plotly`` package, no CDN), the figures are JSON in the
page, and a Content-Security-Policy allows nothing to be fetched: any request the page tried
would be refused and recorded. With ``#actbench-readback`` in its address the page writes what
it rendered (every trace's values, the errors, the requests) into ``<pre id=actbench-readback>``
after plotly has drawn, which is how its test reads the plots back.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import math
from pathlib import Path
from typing import Any

from actbench import records
from actbench.dashboard.data import Dashboard, RunRow, UnitView, gather
from actbench.dashboard.plots import curve_figure, layers_figure, lr_figure, ranking_figure
from actbench.dashboard.workspace import SPEC_NAME, create_command, workspace_spec, write_spec
from actbench.report.analysis import STATUS_ORDER, Unit
from actbench.report.figures import activation_colour
from actbench.report.stats import ALPHA, CONFIDENCE

PAGE_NAME = "dashboard.html"
READBACK = "actbench-readback"
# Nothing may be fetched: scripts and styles are inline, images only data: or blob: (plotly's
# own "download as PNG"). 'unsafe-inline' is what an inlined page needs; there is no remote code.
CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "img-src data: blob:; font-src data:; connect-src 'none'; form-action 'none'"
)

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 24px 48px;
       color: #222; max-width: 1400px; }
header { border-bottom: 1px solid #ddd; margin-bottom: 8px; }
h1 { font-size: 22px; margin: 18px 0 4px; } h2 { font-size: 19px; margin-top: 32px; }
h3 { font-size: 15px; margin: 22px 0 6px; color: #444; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 13px; }
th, td { border-bottom: 1px solid #e4e4e4; padding: 3px 9px; text-align: left; }
th { background: #f3f3f3; cursor: pointer; user-select: none; position: sticky; top: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px;
          margin-right: 5px; vertical-align: baseline; }
.status-completed { color: #1a7f37; } .status-diverged { color: #9a6700; }
.status-failed { color: #cf222e; } .status-running { color: #0969da; }
.note { color: #555; font-size: 13px; } nav a { margin-right: 14px; }
.grid2 { display: grid; grid-template-columns: repeat(auto-fit, minmax(560px, 1fr)); gap: 8px; }
code { background: #f3f3f3; padding: 1px 4px; border-radius: 3px; }
"""

# Runs before plotly: collects errors, refused requests and console errors for the readback.
CAPTURE = """
window.__actbench = {errors: [], refused: []};
window.addEventListener('error', e => window.__actbench.errors.push(String(e.message || e)));
window.addEventListener('unhandledrejection',
  e => window.__actbench.errors.push('unhandled rejection: ' + String(e.reason)));
document.addEventListener('securitypolicyviolation',
  e => window.__actbench.refused.push(e.violatedDirective + ' ' + e.blockedURI));
(function () {
  const error = console.error.bind(console);
  console.error = function (...args) { window.__actbench.errors.push(args.map(String).join(' '));
                                       error(...args); };
})();
"""

RENDER = """
(function () {
  const figures = JSON.parse(document.getElementById('actbench-figures').textContent);
  const config = {displaylogo: false, responsive: true};
  const drawn = Object.entries(figures).map(
    ([id, fig]) => Plotly.newPlot(id, fig.data, fig.layout, config));
  const readback = document.getElementById('__READBACK__');
  Promise.all(drawn).then(() => {
    document.body.dataset.plotsRendered = String(drawn.length);
    if (location.hash !== '#__READBACK__') return;
    const plots = {};
    document.querySelectorAll('.js-plotly-plot').forEach(gd => {
      plots[gd.id] = {
        rendered: !!gd._fullLayout && gd.querySelectorAll('.main-svg').length > 0,
        traces: gd.data.map(t => ({meta: t.meta || null, name: t.name || null,
                                   x: Array.from(t.x || []), y: Array.from(t.y || [])})),
      };
    });
    readback.textContent = JSON.stringify({
      errors: window.__actbench.errors, refused: window.__actbench.refused,
      resources: performance.getEntriesByType('resource').map(e => e.name), plots: plots});
  }).catch(err => {
    window.__actbench.errors.push('plotly: ' + String(err));
    readback.textContent = JSON.stringify({errors: window.__actbench.errors, plots: {}});
  });
  document.querySelectorAll('table.sortable th').forEach((th, col) => th.addEventListener(
    'click', () => {
      const body = th.closest('table').tBodies[0];
      const asc = th.dataset.asc !== '1';
      th.closest('tr').querySelectorAll('th').forEach(h => delete h.dataset.asc);
      th.dataset.asc = asc ? '1' : '0';
      const key = td => td.dataset.sort !== undefined ? Number(td.dataset.sort) : td.textContent;
      [...body.rows].sort((a, b) => {
        const x = key(a.cells[col]), y = key(b.cells[col]);
        return (x > y ? 1 : x < y ? -1 : 0) * (asc ? 1 : -1);
      }).forEach(r => body.appendChild(r));
    }));
})();
""".replace("__READBACK__", READBACK)


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: float | None, fmt: str = "{:.4g}") -> str:
    if value is None or not math.isfinite(value):
        return '<td class="num" data-sort="-1e300">–</td>'
    return f'<td class="num" data-sort="{value!r}">{fmt.format(value)}</td>'


def _swatch(activation: str) -> str:
    return f'<span class="swatch" style="background:{activation_colour(activation)}"></span>'


def _clean(obj: Any) -> Any:
    """JSON for a browser: non-finite floats become null (JSON has no NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def script_json(obj: Any) -> str:
    """``obj`` as JSON safe inside a ``<script>`` element (no ``</`` can close it)."""
    return json.dumps(_clean(obj), allow_nan=False, separators=(",", ":")).replace("</", "<\\/")


# ----------------------------------------------------------------------------- sections


class Figures:
    """The page's figures by div id, in the order they appear."""

    def __init__(self) -> None:
        self.figures: dict[str, dict[str, Any]] = {}

    def div(self, figure: dict[str, Any] | None, fig_id: str) -> str:
        if figure is None:
            return ""
        fig_id = f"fig-{len(self.figures)}-{fig_id}"
        self.figures[fig_id] = figure
        return f'<div class="plot" id="{_e(fig_id)}"></div>'


def _interval(low: float, high: float) -> str:
    if not (math.isfinite(low) and math.isfinite(high)):
        return "<td>–</td>"
    return f'<td class="num" data-sort="{low!r}">[{low * 100:.2f}, {high * 100:.2f}]</td>'


def _chosen_lr(unit: Unit, activation: str) -> str:
    chosen = unit.chosen_lr.get(activation)
    bracketed, reason = unit.brackets.get(activation, (None, None))
    if chosen is None:
        return "<td>–</td>"
    flag = f" <i>unbracketed: {_e(reason or 'on the grid edge')}</i>" if bracketed is False else ""
    return f'<td class="num" data-sort="{chosen!r}">{chosen:.3g}{flag}</td>'


def ranking_notes(unit: Unit) -> list[str]:
    """The letters' rule, letters that skip an activation, and what the seeds can detect."""
    notes = [
        "Activations that share a letter are not shown different (paired tests by seed, "
        f"Holm-corrected over all pairs, α = {ALPHA}); <i>could be best</i>: shown worse than "
        "no other activation; Δ: the difference to row 1 over shared seeds. Numbers from the "
        "report's statistics."
    ]
    for letter, members, skipped in unit.ranking.letter_notes if unit.ranking else []:
        notes.append(
            f"Letter <b>{_e(letter)}</b> ({_e(', '.join(members))}) skips "
            f"{_e(', '.join(skipped))}: a paired test can separate neighbours yet not two "
            "activations further apart."
        )
    p = unit.power
    if p is not None and math.isfinite(p.mde_best):
        need = "more than we can count" if p.seeds_1pt_best is None else str(p.seeds_1pt_best)
        notes.append(
            f"With these {p.n} seeds the smallest difference below the best found with "
            f"{p.power:.0%} power is {p.mde_best * 100:.2f} points; a 1-point difference "
            f"would need {need} seeds."
        )
    return [f'<p class="note">{n}</p>' for n in notes]


def ranking_table(view: UnitView) -> str:
    unit = view.unit
    if not unit.rows:
        return '<p class="note">No completed ranked run yet: nothing to rank.</p>'
    head = (
        "<tr><th>row</th><th>activation</th><th>mean test/acc (%)</th>"
        f"<th>{CONFIDENCE:.0%} t-interval (±)</th><th>std</th><th>n</th><th>letters</th>"
        "<th>could be best</th><th>shown worse than</th><th>Δ vs row 1 (pp)</th>"
        f"<th>Δ {CONFIDENCE:.0%} t-interval</th><th>Δ bootstrap interval</th><th>diverged</th>"
        "<th>chosen LR</th></tr>"
    )
    body = []
    for row in unit.rows:
        delta = unit.deltas.get(row.activation)
        deltas = (
            _num(delta.diff * 100, "{:+.2f}")
            + _interval(delta.t_low, delta.t_high)
            + _interval(delta.boot_low, delta.boot_high)
            if delta is not None
            else "<td>–</td>" * 3
        )
        body.append(
            f"<tr><td class=num>{row.position}</td><td>{_swatch(row.activation)}"
            f"{_e(row.activation)}</td>{_num(row.mean * 100, '{:.2f}')}"
            f"{_num(row.half_width * 100, '{:.2f}')}{_num(row.std * 100, '{:.2f}')}"
            f"<td class=num>{row.n}</td><td><b>{_e(row.letters)}</b></td>"
            f"<td>{'yes' if row.could_be_best else 'no'}</td>"
            f"<td>{_e(', '.join(row.worse_than) or '–')}</td>{deltas}"
            f"<td>{row.diverged}{' (unstable)' if row.unstable else ''}</td>"
            f"{_chosen_lr(unit, row.activation)}</tr>"
        )
    return (
        f'<table class="sortable"><thead>{head}</thead><tbody>{"".join(body)}</tbody></table>'
        + "".join(ranking_notes(unit))
    )


def unit_section(view: UnitView, figs: Figures) -> str:
    unit = view.unit
    slug = unit.slug
    parts = [f'<section id="unit-{_e(slug)}"><h2>{_e(unit.label)}</h2>']
    parts.append(
        f'<p class="note">{len(unit.completed)} completed ranked runs of {len(unit.runs)} '
        f"in this unit; the tuned value ({_e(unit.select)}, chosen on "
        f"{_e(unit.select_metric)}) comes from: {_e(unit.selection_source)}.</p>"
    )
    parts.append("<h3>Ranking</h3>")
    parts.append(figs.div(ranking_figure(unit), f"ranking-{slug}"))
    parts.append(ranking_table(view))
    lr = figs.div(lr_figure(unit), f"lr-{slug}")
    if lr:
        parts += ["<h3>Learning-rate sensitivity</h3>", lr]
    if view.families:
        parts.append(
            '<p class="note">Curves of the completed ranked runs: per activation the mean over '
            "seeds (n in the legend) and the min–max band; hover for the values, click a legend "
            "entry to hide an activation, drag to zoom.</p>"
        )
    for section in dict.fromkeys(f.section for f in view.families):
        shown = [f for f in view.families if f.section == section]
        # Totals side by side, then the per-layer panels at full width.
        totals = [figs.div(curve_figure(unit, f), f"{f.key}-{slug}") for f in shown]
        layers = [figs.div(layers_figure(unit, f), f"{f.key}-layers-{slug}") for f in shown]
        parts.append(f"<h3>{_e(section)}</h3>")
        parts.append(f'<div class="grid2">{"".join(totals)}</div>')
        parts += layers
    if not view.families:
        parts.append('<p class="note">No curves yet: no completed ranked run.</p>')
    parts.append("</section>")
    return "\n".join(p for p in parts if p)


def run_table(rows: list[RunRow]) -> str:
    several_units = len({r.unit for r in rows}) > 1
    head = (
        "<tr>"
        + ("<th>unit</th>" if several_units else "")
        + "<th>stage</th><th>activation</th><th>lr</th><th>seed</th><th>status</th>"
        "<th>ranked</th><th>test/acc</th><th>wall time (s)</th><th>steps</th>"
        "<th>run folder</th><th>W&amp;B run</th><th>W&amp;B group</th></tr>"
    )
    body = []
    for r in rows:
        wandb = (
            f'<a href="{_e(r.wandb_href)}">{_e(r.wandb_id)}</a>'
            if r.wandb_href
            else _e(r.wandb_id or "–")
        )
        body.append(
            "<tr>"
            + (f"<td>{_e(r.unit)}</td>" if several_units else "")
            + f"<td>{_e(r.stage or '–')}</td><td>{_swatch(r.activation)}{_e(r.activation)}</td>"
            f"{_num(r.lr, '{:.3g}')}{_num(None if r.seed is None else float(r.seed), '{:.0f}')}"
            f'<td class="status-{_e(r.status)}">{_e(r.status)}</td>'
            f"<td>{'yes' if r.ranked else ''}</td>{_num(r.test_acc)}"
            f"{_num(r.wall_time_s, '{:.1f}')}"
            f"{_num(None if r.steps is None else float(r.steps), '{:.0f}')}"
            f'<td><a href="{_e(r.href)}">{_e(r.folder)}</a></td><td>{wandb}</td>'
            f"<td>{_e(r.wandb_group or '–')}</td></tr>"
        )
    return (
        '<section id="runs"><h2>Runs</h2><p class="note">Every run folder of the sweep; links '
        "open the folder (summary, config.yaml, metrics.csv) and its local W&amp;B run "
        "(<code>wandb sync &lt;folder&gt;</code> uploads an offline one). Click a header to "
        f'sort.</p><table class="sortable"><thead>{head}</thead>'
        f"<tbody>{''.join(body)}</tbody></table></section>"
    )


def workspace_section(spec_path: Path | None, page_dir: Path) -> str:
    if spec_path is None:
        return ""
    return (
        '<section id="wandb"><h2>W&amp;B workspace</h2><p>The same panels as a W&amp;B '
        "workspace (runs grouped by activation, mean and min–max band over seeds): its spec "
        f'is <a href="{_e(spec_path.name)}">{_e(spec_path.name)}</a>; create it with '
        f"<code>{_e(create_command(spec_path))}</code>.</p></section>"
    )


def render(board: Dashboard, page_dir: Path, spec_path: Path | None = None) -> str:
    figs = Figures()
    units = [unit_section(view, figs) for view in board.units]
    counts = ", ".join(f"{board.counts[s]} {s}" for s in STATUS_ORDER if board.counts.get(s))
    nav = (
        "".join(f'<a href="#unit-{_e(v.unit.slug)}">{_e(v.unit.label)}</a>' for v in board.units)
        + '<a href="#runs">runs</a>'
        + ('<a href="#wandb">W&amp;B</a>' if spec_path else "")
    )
    partial = board.counts.get("running", 0) + board.counts.get("failed", 0)
    when = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    header = (
        f"<header><h1>actbench sweep <code>{_e(board.sweep)}</code></h1>"
        f'<p class="note">{counts or "no runs"} · records in <code>{_e(board.sweep_dir)}'
        f"</code> · generated {_e(when)}"
        + (" · <b>partial</b>: runs still running or failed" if partial else "")
        + (
            f" · {len(board.earlier)} run folders of an earlier grid left out"
            if board.earlier
            else ""
        )
        + f"</p><nav>{nav}</nav></header>"
    )
    body = "\n".join(
        [header, *units, run_table(board.runs), workspace_section(spec_path, page_dir)]
    )
    import plotly.offline

    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>actbench dashboard — {_e(board.sweep)}</title><style>{STYLE}</style>"
        f"<script>{CAPTURE}</script><script>{plotly.offline.get_plotlyjs()}</script>"
        f"</head><body>\n{body}\n"
        f'<pre id="{READBACK}" hidden></pre>'
        '<script type="application/json" id="actbench-figures">'
        f"{script_json(figs.figures)}</script><script>{RENDER}</script></body></html>\n"
    )


def build_dashboard(sweep_dir: Path, out_dir: Path, *, sweep_name: str | None = None) -> Path:
    """Write ``out_dir/dashboard.html`` and the W&B workspace spec beside it
    (``wandb_workspace.json``) from the records in ``sweep_dir``; returns the page's path.
    Works on a partial sweep; callable again while it runs."""
    sweep_dir, out_dir = Path(sweep_dir), Path(out_dir)
    board = gather(sweep_dir, out_dir, sweep_name)
    spec = workspace_spec(board)
    spec_path = write_spec(spec, out_dir / SPEC_NAME)
    page = out_dir / PAGE_NAME
    records.atomic_write_text(page, render(board, out_dir, spec_path))
    return page
