"""The self-contained ``report.html`` (plots inlined as base64 PNG, no external URLs)."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from emulator.validation.plots import (
    binned_figure,
    classifier_figure,
    conditioning_heatmap,
    examples_figure,
    figure_png,
    images_figure,
    observable_figure,
    response_figure,
)
from emulator.validation.report import to_json, write_metrics
from emulator.validation.samples import SampleSet, ValidationSpec

__all__ = ["render_html", "write_report"]

_CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 1.5em auto; max-width: 1320px;
       color: #222; line-height: 1.4; padding: 0 1em; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 2px solid #ddd; padding-bottom: 0.2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.pass { background: #dff3df; color: #135e13; font-weight: bold; }
.fail { background: #fbdada; color: #8a1010; font-weight: bold; }
.verdict { display: inline-block; font-size: 1.5em; padding: 0.2em 0.8em; border-radius: 4px; margin: 0.3em 0; }
.grid { display: flex; flex-wrap: wrap; gap: 6px; } .grid img { width: 318px; }
img.wide { max-width: 100%; } .note { color: #555; font-size: 0.9em; }
pre { background: #f7f7f7; padding: 0.6em; overflow-x: auto; font-size: 0.8em; max-height: 30em; }
"""


def _img(fig: Figure, cls: str = "wide", alt: str = "") -> str:
    data = base64.b64encode(figure_png(fig)).decode("ascii")
    return f'<img class="{cls}" alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _fmt(value: Any, err: Any = None, digits: int = 4) -> str:
    if value is None:
        return "not computed"
    if isinstance(value, bool):
        return str(value)
    text = f"{value:.{digits}g}"
    return f"{text} ± {err:.2g}" if err is not None and err == err else text


def _checks_table(metrics: dict[str, Any]) -> str:
    rows = []
    for c in metrics["checks"]:
        cls = "pass" if c["passed"] else "fail"
        failing = c.get("failing") or []
        where = html.escape(str(c.get("where", "")))
        if failing:
            more = f" (+{len(failing) - 3} more)" if len(failing) > 3 else ""
            where += f"<br><span class='note'>failing: {html.escape('; '.join(failing[:3]))}{more}</span>"
        resolved = (
            ""
            if c.get("resolved", True)
            else "<br><span class='note'>statistics cannot resolve the tolerance</span>"
        )
        rows.append(
            f"<tr><td>{html.escape(c['name'])}</td><td>{html.escape(c['description'])}</td>"
            f"<td class='num'>{_fmt(c['value'], c.get('value_err'))}</td><td class='num'>{c['threshold']}</td>"
            f"<td>{where}{resolved}</td><td class='{cls}'>{'pass' if c['passed'] else 'FAIL'}</td></tr>"
        )
    return (
        "<table><tr><th>check</th><th>requirement</th><th>worst value</th><th>threshold</th><th>where (worst; failing)</th>"
        "<th>result</th></tr>" + "".join(rows) + "</table>"
    )


def _headline_table(m: dict[str, Any]) -> str:
    swd = m["distances"]["sliced_wasserstein"]
    emd = m["distances"]["emd"]
    rows = [
        ("classifier AUC, high-level", _fmt(m["auc_high_level"], m.get("auc_high_level_err")), "0.5 = indistinguishable"),
        ("classifier AUC, low-level", _fmt(m["auc_low_level"], m.get("auc_low_level_err")), "0.5 = indistinguishable"),
        ("FPD × 10³", _fmt(m["fpd_x1e3"], m["fpd_err"] * 1e3), "jetnet definition; CaloChallenge G4-vs-G4 0.12 (ds1 γ)"),
        ("KPD × 10³", _fmt(m["kpd_x1e3"], m["kpd_err"] * 1e3), "jetnet definition; CaloChallenge G4-vs-G4 0.03 (ds1 γ)"),
        ("sliced W2 (low level, standardised)", _fmt(swd["value"]), f"noise level (permutation RMS) {swd['err']:.3g}"),
        ("exact EMD (high level, standardised)", _fmt(emd["emd"], emd["emd_err"]),
         f"reference-vs-reference {emd['emd_ref_ref']:.4g} ({emd['n_sub']} vs {emd['n_sub']} samples)"),
    ]  # fmt: skip
    body = "".join(
        f"<tr><td>{a}</td><td class='num'>{b}</td><td class='note'>{html.escape(c)}</td></tr>"
        for a, b, c in rows
    )
    return f"<table><tr><th>metric</th><th>value</th><th>scale</th></tr>{body}</table>"


def _observables_table(m: dict[str, Any]) -> str:
    rows = []
    sep_max = m["thresholds"]["values"].get("separation_power_max")
    for name, o in m["observables"].items():
        cls = "fail" if sep_max is not None and o["separation_power"] > sep_max else ""
        flag = " (!)" if o["w1"] > 4 * o["w1_err"] else ""
        auc = o.get("auc_given_conditions")
        rows.append(
            f"<tr><td>{html.escape(name)}</td><td class='num'>{o['mean_ref']:.4g}</td><td class='num'>{o['mean_gen']:.4g}</td>"
            f"<td class='num'>{o['w1']:.4f} ± {o['w1_err']:.4f}{flag}</td>"
            f"<td class='num {cls}'>{o['separation_power']:.4f}</td><td class='num'>{o['separation_power_ref_halves']:.4f}</td>"
            f"<td class='num'>{'—' if auc is None else f'{auc:.3f}'}</td></tr>"
        )
    return (
        "<table><tr><th>observable</th><th>mean ref</th><th>mean gen</th><th>W1 / σ_ref ± noise</th>"
        "<th>separation power</th><th>ref-half vs ref-half</th><th>AUC at given conditions</th></tr>" + "".join(rows) + "</table>"
    )


def _statistics_section(m: dict[str, Any], spec: ValidationSpec) -> list[str]:
    """Table and figures of the domain's binned statistics (empty for domains without any)."""
    if not m.get("statistics"):
        return []
    tolerances = m["thresholds"].get("statistics", {})
    rows, figures = [], []
    for stat in spec.binned_statistics:
        st = m["statistics"][stat.name]
        dev = np.abs(np.asarray(st["dev"], dtype=float))
        checked = np.asarray(st["checked"], bool)
        worst = int(np.flatnonzero(checked)[np.argmax(dev[checked])]) if checked.any() else None
        worst_txt = f"{dev[worst]:.3g} at {html.escape(st['bins'][worst])}" if worst is not None else "n/a"
        rows.append(
            f"<tr><td>{html.escape(stat.name)}</td><td>{html.escape(st['title'])}</td>"
            f"<td class='num'>{int(checked.sum())} of {len(checked)} ({html.escape(st['checked_description'] or 'all')})</td>"
            f"<td class='num'>{float(np.mean(dev[checked])) if checked.any() else float('nan'):.3g}</td>"
            f"<td class='num'>{worst_txt}</td></tr>"
        )
        fig = binned_figure(st, tolerances.get(stat.name, {}), stat.log_x, stat.log_y)
        figures.append(_img(fig, cls="", alt=stat.name))
    return [
        "<h2>Binned statistics</h2>",
        "<p class='note'>Per-bin means over samples, reference (grey band: ± its error) vs generated (red); "
        "lower panel gen/ref (or (gen − ref)/max|ref| for statistics that cross zero) with the per-bin "
        "tolerance band; hollow points are bins the checks leave out (outside the checked range or too few "
        "reference counts). |dev| columns are over the checked range, before any count cut.</p>",
        "<table><tr><th>statistic</th><th>what</th><th>checked bins</th><th>mean |dev|</th><th>max |dev|</th></tr>"
        + "".join(rows) + "</table>",
        "<div class='grid'>", *figures, "</div>",
    ]  # fmt: skip


def render_html(
    metrics: dict[str, Any], generated: SampleSet, reference: SampleSet, spec: ValidationSpec
) -> str:
    """The report as one HTML string."""
    m = metrics
    s = m["samples"]
    verdict = "PASSED" if m["passed"] else "FAILED"
    title = f"Validation report: {spec.domain} {spec.particle}".strip()
    sources = "".join(
        f"<li>{html.escape(k)}: <code>{html.escape(str(v))}</code></li>" for k, v in s["sources"].items()
    )
    clf = m["config"]["classifier"]
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<div class='verdict {'pass' if m['passed'] else 'fail'}'>{verdict}</div>",
        f"<p>against thresholds <b>{html.escape(m['thresholds']['name'])}</b> (<code>{html.escape(m['thresholds']['file'])}</code>)."
        f"<br><span class='note'>{html.escape(m['thresholds']['description'])}</span></p>",
        "<table><tr><th>generated samples</th><th>reference samples</th><th>validation seed</th><th>classifier seed</th>"
        "<th>FPD / KPD seed</th><th>wall time</th></tr>"
        f"<tr><td class='num'>{s['n_generated']:,}</td><td class='num'>{s['n_reference']:,}</td><td class='num'>{s['seed']}</td>"
        f"<td class='num'>{clf['seed']}</td><td class='num'>{m['fpd_kpd']['fpd']['seed']}</td>"
        f"<td class='num'>{m['timing_s']['total']:.0f} s</td></tr></table>",
        f"<ul>{sources}</ul>" if sources else "",
        "<h2>Checks</h2>",
        _checks_table(m),
        "<p class='note'>Per-bin checks fail where the deviation exceeds the tolerance <i>and</i> is significant at "
        f"{m['thresholds']['values'].get('significance_sigma')} σ (see <code>emulator/validation/thresholds.py</code>).</p>",
        "<h2>Summary metrics</h2>",
        _headline_table(m),
    ]
    if spec.response and spec.response in m["conditioning"]["observables"]:
        parts += [
            f"<h2>Response and resolution vs {html.escape(m['conditioning']['condition'])}</h2>",
            _img(
                response_figure(m["conditioning"], spec.response, spec, m["thresholds"]["values"]),
                alt="response",
            ),
        ]
    parts += [
        "<h2>Observables</h2>",
        "<p class='note'>Normalised histograms, reference (grey) vs generated (red, statistical errors). S: separation "
        "power on reference-quantile bins; W1/σ: Wasserstein-1 over the reference's standard deviation ± its "
        "permutation noise level. (!) marks W1 more than 4 noise levels above zero. AUC at given conditions: a "
        "tree classifier on the condition and this observable alone (0.5: it does not give the model away; "
        "compare with the high-level AUC of all of them together).</p>",
        _observables_table(m),
        "<div class='grid'>",
    ]
    for name in m["observables"]:
        fig = observable_figure(
            name, reference.observables[name], generated.observables[name], spec, m["observables"][name]
        )
        parts.append(_img(fig, cls="", alt=name))
    parts.append("</div>")
    parts += _statistics_section(m, spec)
    parts += [
        f"<h2>Observable means per {html.escape(m['conditioning']['condition'])} bin</h2>",
        _img(
            conditioning_heatmap(
                m["conditioning"],
                m["thresholds"]["values"].get("observable_mean_rel_tol"),
                {i for c in m["checks"] if c["name"] == "observable_means" for i in c["failing_index"]},
            ),
            alt="conditioning",
        ),
        "<p class='note'>Samples per bin, reference: "
        + ", ".join(str(n) for n in m["conditioning"]["n_reference"])
        + "; generated: "
        + ", ".join(str(n) for n in m["conditioning"]["n_generated"])
        + ".</p>",
    ]
    if reference.images and generated.images:
        parts += [
            "<h2>Mean sample images</h2>",
            "<p class='note'>Average over all samples; log colour scale shared by reference and generated; "
            "bottom row: generated / reference per pixel (log scale, 0.5–2).</p>",
            _img(images_figure(reference.images, generated.images), alt="images"),
        ]
    if reference.examples and generated.examples:
        parts += [
            "<h2>Example samples</h2>",
            "<p class='note'>The first few samples of each set (not selected); one log colour scale for all.</p>",
            _img(examples_figure(reference.examples, generated.examples), alt="examples"),
        ]
    if m["classifier"]:
        parts += [
            "<h2>Classifier training</h2>",
            f"<p class='note'>MLP {clf['n_hidden']}×{clf['hidden']} LeakyReLU, {clf['epochs']} epochs, batch "
            f"{clf['batch_size']}, Adam lr {clf['lr']}; epoch chosen by test-split loss; AUC on the validation split "
            + "; ".join(
                f"{k.replace('_', '-')}: {v['n_features']} inputs, "
                + ", ".join(f"{split} {n:,}" for split, n in v["n_per_class"].items())
                + " per class"
                for k, v in m["classifier"].items()
            )
            + ".</p>",
            _img(classifier_figure(m["classifier"]), alt="classifier"),
        ]
    defs = "".join(
        f"<tr><td><code>{html.escape(k)}</code></td><td>{html.escape(v)}</td></tr>"
        for k, v in m["definitions"].items()
    )
    timing = ", ".join(f"{k} {v:.1f} s" for k, v in m["timing_s"].items())
    parts += [
        "<h2>Definitions and settings</h2>",
        f"<table>{defs}</table>",
        f"<p class='note'>Timing: {html.escape(timing)}.</p>",
        f"<pre>{html.escape(json.dumps(to_json({'config': m['config'], 'spec': m['spec']}), indent=1))}</pre>",
        "</body></html>",
    ]
    return "\n".join(parts)


def write_report(
    out_dir: str | Path,
    metrics: dict[str, Any],
    generated: SampleSet,
    reference: SampleSet,
    spec: ValidationSpec,
) -> tuple[Path, Path]:
    """Write ``out_dir/metrics.json`` and ``out_dir/report.html``; returns both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics_path = write_metrics(metrics, out / "metrics.json")
    html_path = out / "report.html"
    html_path.write_text(render_html(metrics, generated, reference, spec), encoding="utf-8")
    return metrics_path, html_path
