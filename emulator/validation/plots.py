"""Figures of the validation report, as PNG bytes (matplotlib, Agg canvas, no pyplot state).

Conventions: reference in grey (filled), generated in colour (line with statistical error
bars); every comparison has a ratio or deviation panel underneath with the tolerance band
of the thresholds file where one applies; energies on logarithmic axes.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, NullFormatter

from emulator.validation.samples import ImagePanel, ValidationSpec

__all__ = [
    "binned_figure",
    "classifier_figure",
    "conditioning_heatmap",
    "examples_figure",
    "figure_png",
    "images_figure",
    "observable_figure",
    "response_figure",
]

REF_COLOR = "0.55"
GEN_COLOR = "#d62728"
BAND_COLOR = "#2ca02c"


def figure_png(fig: Figure, dpi: int = 100) -> bytes:
    """Render ``fig`` to PNG bytes."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def _plot_bins(ref: np.ndarray, gen: np.ndarray, log_x: bool, n_bins: int = 40) -> tuple[np.ndarray, bool]:
    """Plot binning: one bin per value for discrete observables; else 40 bins, logarithmic
    (at most 4 decades below the 99.5 % quantile) when asked and < 1 % of values are <= 0."""
    uniq = np.unique(ref)
    if uniq.size <= 12:  # discrete observable: one bin per value
        vals = np.unique(np.concatenate([uniq, np.unique(gen)[:50]]))
        step = np.min(np.diff(vals)) if vals.size > 1 else 1.0
        return np.concatenate([vals - step / 2, [vals[-1] + step / 2]]), False
    both = np.concatenate([ref, gen])
    if log_x and np.mean(both <= 0) < 0.01:
        pos = both[both > 0]
        hi = np.quantile(pos, 0.9995)
        lo = max(np.quantile(pos, 0.0005), hi * 1e-4)
        if hi > lo > 0:
            return np.logspace(np.log10(lo), np.log10(hi), n_bins + 1), True
    lo, hi = np.quantile(ref, [0.0005, 0.9995])
    glo, ghi = np.quantile(gen, [0.005, 0.995])
    lo, hi = min(lo, glo), max(hi, ghi)
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, n_bins + 1), False


def _fractions(values: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Fraction of all samples per bin, its Poisson error and the fraction outside the bins."""
    counts, _ = np.histogram(values, bins=edges)
    n = max(len(values), 1)
    return counts / n, np.sqrt(counts) / n, 1.0 - counts.sum() / n


def observable_figure(
    name: str, ref: np.ndarray, gen: np.ndarray, spec: ValidationSpec, stats: dict[str, float]
) -> Figure:
    """Histogram of one observable (reference vs generated) with a gen/ref ratio panel."""
    edges, log_x = _plot_bins(ref, gen, spec.log_x(name))
    d_ref, e_ref, out_ref = _fractions(ref, edges)
    d_gen, e_gen, out_gen = _fractions(gen, edges)
    centres = np.sqrt(edges[1:] * edges[:-1]) if log_x else 0.5 * (edges[1:] + edges[:-1])
    fig = Figure(figsize=(4.2, 3.6))
    ax, rax = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1], "hspace": 0.05})
    ax.stairs(d_ref, edges, fill=True, color=REF_COLOR, alpha=0.6, label="reference")
    ax.errorbar(centres, d_gen, yerr=e_gen, fmt="o", ms=2.5, color=GEN_COLOR, lw=1, label="generated")
    pos = d_ref[d_ref > 0]
    if pos.size and pos.max() / np.median(pos) > 30:
        ax.set_yscale("log")
    ax.set_ylabel("fraction of samples / bin", fontsize=8)
    sep, w1, w1e = stats.get("separation_power", np.nan), stats.get("w1", np.nan), stats.get("w1_err", np.nan)
    ax.set_title(f"{name}: S = {sep:.3f}, W1/σ = {w1:.3f} ± {w1e:.3f}", fontsize=9)
    note = f"outside: ref {out_ref:.1%}, gen {out_gen:.1%}" if max(out_ref, out_gen) > 0.002 else ""
    ax.legend(fontsize=7, title=note or None, title_fontsize=6, loc="best")
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = d_gen / d_ref
        r_err = ratio * np.sqrt((e_gen / np.where(d_gen > 0, d_gen, np.inf)) ** 2 + (e_ref / d_ref) ** 2)
    ok = d_ref > 0
    rax.errorbar(centres[ok], ratio[ok], yerr=r_err[ok], fmt="o", ms=2, color=GEN_COLOR, lw=0.8)
    rax.axhline(1.0, color="k", lw=0.8)
    outside = np.mean(np.abs(ratio[ok] - 1.0) > 0.5) if ok.any() else 0.0
    if outside > 0.2:  # grossly different shapes: a log ratio axis shows how different
        rax.set_yscale("log")
        rax.set_ylim(0.1, 10.0)
    else:
        rax.set_ylim(0.5, 1.5)
    rax.set_ylabel("gen/ref", fontsize=8)
    rax.set_xlabel(spec.label(name), fontsize=8)
    if log_x:
        ax.set_xscale("log")
    for a in (ax, rax):
        a.tick_params(labelsize=7)
    return fig


def response_figure(
    conditioning: dict[str, Any], response: str, spec: ValidationSpec, tolerances: dict
) -> Figure:
    """Mean response and relative spread per condition bin, with deviation panels and tolerance bands."""
    rows = conditioning["observables"][response]
    edges = np.asarray(conditioning["edges"])
    x = 0.5 * (edges[1:] + edges[:-1])
    xerr = 0.5 * np.diff(edges)
    fig = Figure(figsize=(13, 5.6))
    axes = fig.subplots(
        2, 2, sharex=True, gridspec_kw={"height_ratios": [2, 1], "hspace": 0.06, "wspace": 0.25}
    )
    unit = f"{conditioning['condition']} [{conditioning['unit']}]"
    for col, (key, title, tol) in enumerate(
        [
            ("mean", f"mean {spec.label(response)} (response)", tolerances.get("response_mean_rel_tol")),
            (
                "rel_spread",
                f"relative spread std/mean of {response} (resolution)",
                tolerances.get("response_rel_spread_rel_tol"),
            ),
        ]
    ):
        ax, dax = axes[0, col], axes[1, col]
        ax.errorbar(
            x,
            rows[f"{key}_ref"],
            xerr=xerr,
            yerr=rows[f"{key}_ref_err"],
            fmt="s",
            color=REF_COLOR,
            ms=4,
            label="reference",
        )
        ax.errorbar(
            x,
            rows[f"{key}_gen"],
            yerr=rows[f"{key}_gen_err"],
            fmt="o",
            color=GEN_COLOR,
            ms=3.5,
            label="generated",
        )
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)
        if key == "rel_spread":
            ax.set_yscale("log")
        dev = 100 * np.asarray(rows[f"{key}_dev"], dtype=float)
        dev_err = 100 * np.asarray(rows[f"{key}_dev_err"], dtype=float)
        if tol is not None:
            dax.axhspan(
                -100 * tol, 100 * tol, color=BAND_COLOR, alpha=0.2, label=f"tolerance ±{100 * tol:g}%"
            )
            dax.legend(fontsize=7, loc="upper right")
        dax.errorbar(x, dev, xerr=xerr, yerr=dev_err, fmt="o", color=GEN_COLOR, ms=3.5)
        if key == "rel_spread" and "rel_spread_robust_dev" in rows:  # informational: the width of the core
            robust = 100 * np.asarray(rows["rel_spread_robust_dev"], dtype=float)
            dax.plot(x, robust, "D", mfc="none", color=GEN_COLOR, ms=4, label="IQR/1.349 width (info, no check)")
            dax.legend(fontsize=7, loc="upper right")
        dax.axhline(0, color="k", lw=0.8)
        finite = np.abs(dev[np.isfinite(dev)])
        lim = max(3 * 100 * (tol or 0.01), 1.2 * float(finite.max()) if finite.size else 1.0)
        dax.set_ylim(-min(lim, 100.0 * 10), min(lim, 100.0 * 10))
        dax.set_ylabel("(gen − ref)/ref [%]", fontsize=8)
        dax.set_xlabel(unit)
    return fig


def conditioning_heatmap(conditioning: dict[str, Any], tol: float | None, failing: set[int]) -> Figure:
    """Relative mean deviation of every observable (rows) in every condition bin (columns).

    ``failing`` holds the flat indices (row * n_bins + bin) that fail the observable-means check.
    """
    names = list(conditioning["observables"])
    dev = np.array([conditioning["observables"][n]["mean_dev"] for n in names], dtype=float)
    edges = conditioning["edges"]
    fig = Figure(figsize=(11, 0.32 * len(names) + 1.6))
    ax = fig.subplots()
    lim = max(2 * (tol or 0.05), 0.01)
    im = ax.imshow(100 * dev, cmap="RdBu_r", norm=Normalize(-100 * lim, 100 * lim), aspect="auto")
    for i in range(dev.shape[0]):
        for j in range(dev.shape[1]):
            v = dev[i, j]
            bad = i * dev.shape[1] + j in failing
            txt = "n/a" if not np.isfinite(v) else f"{100 * v:+.1f}"
            dark = np.isfinite(v) and abs(v) > 0.6 * lim
            ax.text(j, i, txt, ha="center", va="center", fontsize=7, fontweight="bold" if bad else "normal",
                    color="white" if dark else "black",
                    bbox={"boxstyle": "square,pad=0.15", "fc": "none", "ec": "white" if dark else "black", "lw": 1.2}
                    if bad else None)  # fmt: skip
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xticks(
        range(len(edges) - 1),
        [f"{edges[i]:.3g}–{edges[i + 1]:.3g}" for i in range(len(edges) - 1)],
        fontsize=8,
    )
    ax.set_xlabel(f"{conditioning['condition']} bin [{conditioning['unit']}]")
    cb = fig.colorbar(im, ax=ax, pad=0.01)
    cb.set_label("(mean_gen − mean_ref)/mean_ref [%]", fontsize=8)
    ax.set_title("mean deviation per bin [%] (boxed: fails the check)", fontsize=10)
    return fig


def images_figure(ref_panels: list[ImagePanel], gen_panels: list[ImagePanel]) -> Figure:
    """Mean sample images: reference, generated (shared log colour scale) and their ratio."""
    n = len(ref_panels)
    fig = Figure(figsize=(5.0 * n, 13))
    axes = fig.subplots(3, n, squeeze=False, gridspec_kw={"hspace": 0.3, "wspace": 0.5})
    for j, (rp, gp) in enumerate(zip(ref_panels, gen_panels, strict=True)):
        both = np.concatenate([rp.image.ravel(), gp.image.ravel()])
        pos = both[both > 0]
        vmax = float(pos.max()) if pos.size else 1.0
        vmin = max(float(pos.min()) if pos.size else 1e-6, vmax * 1e-5)
        norm = LogNorm(vmin=vmin, vmax=vmax)
        for i, (panel, label) in enumerate(((rp, "reference"), (gp, "generated"))):
            ax = axes[i, j]
            img = np.ma.masked_less_equal(panel.image, 0)
            im = ax.imshow(
                img,
                norm=norm,
                cmap="viridis",
                extent=panel.extent,
                aspect="auto",
                origin="lower",
                interpolation="nearest",
            )
            ax.set_title(f"{label}: {panel.title}", fontsize=8)
            ax.set_xlabel(panel.axis_labels[0], fontsize=7)
            ax.set_ylabel(panel.axis_labels[1], fontsize=7)
            ax.tick_params(labelsize=7)
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02).set_label(panel.unit, fontsize=7)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.ma.masked_invalid(np.where(rp.image > 0, gp.image / rp.image, np.nan))
        ax = axes[2, j]
        im = ax.imshow(
            ratio,
            norm=LogNorm(0.5, 2.0),
            cmap="RdBu_r",
            extent=rp.extent,
            aspect="auto",
            origin="lower",
            interpolation="nearest",
        )
        ax.set_title(f"generated / reference: {rp.title.split(' (')[0]}", fontsize=8)
        ax.set_xlabel(rp.axis_labels[0], fontsize=7)
        ax.set_ylabel(rp.axis_labels[1], fontsize=7)
        ax.tick_params(labelsize=7)
        cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02, ticks=[0.5, 0.7, 1.0, 1.4, 2.0])
        cb.ax.yaxis.set_minor_formatter(NullFormatter())
        cb.ax.set_yticklabels(["0.5", "0.7", "1", "1.4", "2"], fontsize=7)
        cb.set_label("ratio (white = 1)", fontsize=7)
    return fig


def classifier_figure(classifiers: dict[str, Any]) -> Figure:
    """Test-split AUC and loss per epoch for each classifier (the selected epoch marked)."""
    fig = Figure(figsize=(11, 3))
    axes = fig.subplots(1, max(len(classifiers), 1), squeeze=False)[0]
    for ax, (level, res) in zip(axes, classifiers.items(), strict=False):
        hist = res["history"]
        ep = [h["epoch"] for h in hist]
        ax.plot(ep, [h["test_auc"] for h in hist], "o-", ms=3, color=GEN_COLOR, label="test AUC")
        ax.axvline(res["best_epoch"], color="k", ls=":", label=f"selected epoch {res['best_epoch']}")
        ax.axhline(0.5, color=REF_COLOR, lw=0.8)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("test-split AUC")
        ax.set_title(
            f"{level.replace('_', '-')}: validation AUC {res['auc']:.3f} ± {res['auc_err']:.3f}", fontsize=10
        )
        ax.legend(fontsize=7)
    return fig


def binned_figure(
    stat: dict[str, Any], tolerances: dict[str, float | None], log_x: bool = False, log_y: bool = False
) -> Figure:
    """One binned statistic (``metrics["statistics"][name]``): per-bin means, reference vs generated,
    over a gen/ref ratio panel (or (gen - ref)/max|ref| for zero-crossing statistics) with the
    per-bin tolerance band of ``tolerances`` (the thresholds entry); bins the checks skip are hollow."""
    x = np.asarray(stat["x"], dtype=float)
    checked = np.asarray(stat["checked"], bool)
    gate, bin_tol = tolerances.get("min_ref_counts"), tolerances.get("bin_rel_tol")
    if stat["counts_ref"] is not None and gate is not None:
        checked &= np.asarray(stat["counts_ref"]) >= gate
    fig = Figure(figsize=(4.6, 3.9))
    ax, rax = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2, 1], "hspace": 0.05})
    ref, ref_err = np.asarray(stat["mean_ref"]), np.asarray(stat["mean_ref_err"])
    ax.fill_between(x, ref - ref_err, ref + ref_err, color=REF_COLOR, alpha=0.5)
    ax.plot(x, ref, color=REF_COLOR, lw=1.2, label=f"reference ({stat['n_reference']:,})")
    ax.errorbar(x, stat["mean_gen"], yerr=stat["mean_gen_err"], fmt="o", ms=2.5, color=GEN_COLOR, lw=0.8,
                label=f"generated ({stat['n_generated']:,})")  # fmt: skip
    ax.set_ylabel(stat["y_label"], fontsize=8)
    ax.set_title(stat["title"], fontsize=9)
    ax.legend(fontsize=7)
    if log_y and np.any(ref > 0):
        ax.set_yscale("log")
        shown = np.concatenate([ref, np.asarray(stat["mean_gen"], dtype=float)])
        ax.set_ylim(bottom=0.5 * shown[shown > 0].min())  # not down to the error band's negative edge
    by_max = stat["relative_to"] == "max"
    centre = 0.0 if by_max else 1.0
    y = np.asarray(stat["dev"], dtype=float) + centre
    y_err = np.asarray(stat["dev_err"], dtype=float)
    if bin_tol is not None:
        rax.axhspan(centre - bin_tol, centre + bin_tol, color=BAND_COLOR, alpha=0.2, label=f"±{bin_tol:.0%}")
        rax.legend(fontsize=6, loc="upper right")
    seen = np.abs(y[checked & np.isfinite(y)] - centre)
    lim = min(max(3 * (bin_tol or 0.05), 1.2 * float(seen.max()) if seen.size else 0.0), 1.0)
    inside = np.abs(y - centre) <= lim
    for mask, face in ((checked, GEN_COLOR), (~checked, "none")):
        m = mask & inside
        rax.errorbar(x[m], y[m], yerr=y_err[m], fmt="o", ms=2.5, color=GEN_COLOR, mfc=face, lw=0.8)
    for sign, marker in ((1, "^"), (-1, "v")):  # off-scale bins: a triangle on the edge
        m = ~inside & (np.sign(np.nan_to_num(y - centre, nan=1.0)) == sign)
        rax.plot(x[m], np.full(m.sum(), centre + sign * 0.97 * lim), marker, ms=4, color=GEN_COLOR, ls="none")
    rax.axhline(centre, color="k", lw=0.8)
    rax.set_ylim(centre - lim, centre + lim)
    rax.set_ylabel("(gen − ref)/max|ref|" if by_max else "gen/ref", fontsize=8)
    rax.set_xlabel(stat["x_label"], fontsize=8)
    if log_x and np.all(x > 0):
        ax.set_xscale("log")
    for a in (ax, rax):
        a.tick_params(which="both", labelsize=7)
        a.xaxis.set_minor_formatter(NullFormatter())
    return fig


def examples_figure(ref_panels: list[ImagePanel], gen_panels: list[ImagePanel]) -> Figure:
    """A few individual samples side by side: reference (top row) and generated (bottom row),
    one logarithmic colour scale (from the reference's pixels) for all panels."""
    n = max(len(ref_panels), len(gen_panels))
    fig = Figure(figsize=(3.2 * n, 6.4))
    axes = fig.subplots(2, n, squeeze=False, gridspec_kw={"hspace": 0.25, "wspace": 0.15})
    # the reference sets the colour scale: a broken generator must not wash out the reference panels
    pixels = np.concatenate([p.image.ravel() for p in ref_panels or gen_panels])
    pos = pixels[pixels > 0]
    vmax = float(np.quantile(pos, 0.999)) if pos.size else 1.0
    norm = LogNorm(vmin=max(float(np.quantile(pos, 0.01)) if pos.size else 1e-3, vmax * 1e-4), vmax=vmax)
    im = None
    for i, (panels, label) in enumerate(((ref_panels, "reference"), (gen_panels, "generated"))):
        for j in range(n):
            ax = axes[i, j]
            if j >= len(panels):
                ax.set_axis_off()
                continue
            panel = panels[j]
            im = ax.imshow(np.clip(panel.image, norm.vmin, norm.vmax), norm=norm, cmap="magma", extent=panel.extent,
                           origin="lower", interpolation="nearest")  # fmt: skip
            ax.set_title(f"{label}: {panel.title}", fontsize=8)
            ax.set_xlabel(panel.axis_labels[0], fontsize=7)
            ax.set_ylabel(panel.axis_labels[1] if j == 0 else "", fontsize=7)
            ax.tick_params(labelsize=6)
    if im is not None:
        fig.colorbar(im, ax=axes, fraction=0.02, pad=0.02).set_label(
            ref_panels[0].unit if ref_panels else "", fontsize=8
        )
    return fig
