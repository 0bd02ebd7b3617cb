"""The diffusion_segmentation bundle's results (``benchmarks/diffusion_segmentation.py``)."""

from __future__ import annotations

from summaries.common import load, repo_relative, table_header, table_row


def _scores(s: dict) -> list[str]:
    """Dice [without empty], HD95, Jaccard [without empty], empty predictions of one ``summarize_scores`` row."""
    cell = lambda stats, digits=3: f"{stats['mean']:.{digits}f}" if stats else "-"  # noqa: E731
    return [
        f"{cell(s['dice'])} [{cell(s['dice_without_empty'])}]",
        cell(s["hd95"], 2),
        f"{cell(s['jaccard'])} [{cell(s['jaccard_without_empty'])}]",
        f"{s['empty_predictions']} / {s['slices']}",
    ]


def headline(result: dict) -> str:
    """One sample, the ensemble of 5 and the supervised baselines on the test slices, the paper's values beside."""
    ensemble, supervised, paper = result["ensemble"], result["supervised"], result["paper_table1"]
    lines = [
        f"Diffusion segmentation ensembles (`{result['command']}`), {result['tumour_slices']} test slices through "
        f"the tumour of {result['test_slices']} (64 x 64, DDIM 50 steps); Dice and Jaccard over every tumour slice "
        "[without the empty predictions], HD95 in pixels over the non-empty ones; paper = Wolleb et al. 2022 on "
        "BraTS (nnU-Net for the supervised row):",
        table_header(["method", "Dice", "HD95", "Jaccard", "empty predictions", "paper Dice / HD95 / Jaccard"]),
    ]
    rows = [
        ("1 sampling run", ensemble["report"]["single_sample"], paper["1 sampling run"]),
        ("ensemble of 5", ensemble["report"]["ensemble"], paper["ensemble of 5"]),
        ("supervised U-Net", supervised["dropout_off"], paper["nnU-Net"]),
        ("U-Net, MC-dropout ensemble of 5", supervised["mc_dropout"]["ensemble"], None),
    ]
    for name, scores, reference in rows:
        lines.append(
            table_row([name, *_scores(scores), " / ".join(f"{v:.3f}" for v in reference) if reference else "-"])
        )
    return "\n".join(lines)


def diffusion_segmentation(result: dict) -> str:
    """:func:`headline`, then the uncertainty maps, the samplers, the ensemble sizes and the cost at 128 x 128."""
    ensemble, supervised = result["ensemble"], result["supervised"]
    lines = [
        headline(result),
        "",
        table_header(["uncertainty map", "boundary / elsewhere variance", "variance-error AUROC", "ECE of the mean"]),
    ]
    for name, u in (
        ("diffusion ensemble of 5", ensemble["report"]["uncertainty"]),
        ("U-Net MC dropout x5", supervised["mc_dropout"]["uncertainty"]),
    ):
        cells = [f"{u['boundary_variance_ratio']:.2f}", f"{u['variance_error_auroc']:.3f}", f"{u['mean_map_ece']:.4f}"]
        lines.append(table_row([name, *cells]))
    lines += [
        "",
        f"Samplers on the first {result['sampler_slices']} tumour slices (ensembles of 5):",
        table_header(["sampler", "steps", "Dice (ensemble)", "s / sample", "speed-up vs DDPM"]),
    ]
    for name, row in result["samplers"].items():
        dice = row["report"]["ensemble"]["dice"]
        cells = [name, str(row["steps"]), f"{dice['mean']:.3f}" if dice else "-", f"{row['seconds_per_sample']}"]
        lines.append(table_row([*cells, f"{row['speedup_vs_ddpm']}x"]))
    curve = ", ".join(f"{k}: {v['mean']:.3f}" for k, v in result["dice_vs_ensemble_size"].items())
    lines += [
        "",
        f"Dice against ensemble size (DDIM 50; `{repo_relative(result['figure'])}`): {curve}. One ensemble of "
        f"{max(int(k) for k in result['dice_vs_ensemble_size'])} samples: "
        f"{result['ensemble']['seconds_per_ensemble_of_largest']} s per slice "
        f"({result['ensemble']['seconds_per_sample']} s per sample, batched); peak resident memory of the "
        f"benchmark process {result['peak_memory_mb_process'] / 1024:.2f} GB.",
    ]
    if timing := result.get("timing_128"):
        lines += ["", "Cost at 128 x 128 (one ensemble of 5, this CPU):"]
        lines.append(table_header(["sampler", "s / sample", "s / ensemble of 5", "peak resident memory (GB)"]))
        for name, row in timing.items():
            cells = [f"{row['seconds_per_sample']}", f"{row['seconds_per_ensemble']}"]
            lines.append(table_row([name, *cells, f"{row['peak_memory_mb_process'] / 1024:.2f}"]))
    return "\n".join(lines)


SOURCES = {
    "diffusion_segmentation": (diffusion_segmentation, lambda: load("diffusion_segmentation.json")),
    "diffusion_segmentation_headline": (headline, lambda: load("diffusion_segmentation.json")),
}
