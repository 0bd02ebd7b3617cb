"""The diffusion_pretraining bundle's results: the shipped weights, the speed of pretraining and of the features."""

from __future__ import annotations

from summaries.common import load, table_header, table_row


def headline(result: dict) -> str:
    """The shipped weights' held-out denoising error at each timestep and their DDIM sampling time."""
    l1, sampling = result["denoising_l1"], result["sampling"]
    steps = {k.rsplit("_t", 1)[1]: v for k, v in l1.items() if "_t" in k}
    return "\n".join(
        [
            f"Shipped weights (`{result['command']}`): held-out denoising L1 of the x0 prediction on "
            f"{result['test_split']} (images in [-1, 1]), and DDIM sampling on this CPU:",
            table_header([*(f"L1, t = {t}" for t in steps), "L1, mean", f"DDIM {sampling['ddim_steps']} steps"]),
            table_row(
                [
                    *(f"{v:.4f}" for v in steps.values()),
                    f"{l1['val_denoising_l1']:.4f}",
                    f"{sampling['seconds_per_sample']} s / sample",
                ]
            ),
        ]
    )


def pretraining(result: dict) -> str:
    l1 = result["denoising_l1"]
    steps = ", ".join(f"t = {k.rsplit('_t', 1)[1]}: {v:.4f}" for k, v in l1.items() if "_t" in k)
    sampling = result["sampling"]
    return (
        f"Shipped diffusion weights (`{result['command']}`): held-out denoising L1 of the x0 prediction on "
        f"{result['test_split']}: {steps} (mean {l1['val_denoising_l1']:.4f}; images in [-1, 1]). DDIM sampling, "
        f"{sampling['ddim_steps']} steps: {sampling['seconds_per_sample']} s per sample ({sampling['note']})."
    )


def speed(result: dict) -> str:
    lines = [f"Speed (`{result['command']}`, {result['machine']['cores']} cores):"]
    lines.append(
        table_header(["diffusion pretraining", "batch", "parameters (M)", "s / iteration", "peak memory (GB)"])
    )
    for name in ("cpu_recipe", "paper"):
        entry = result.get(f"pretraining_{name}")
        if entry is None:
            continue
        if "error" in entry:
            lines.append(
                table_row([name, "-", "-", f"failed: {entry['error'][:80]}", f"{entry['peak_memory_mb'] / 1024:.1f}"])
            )
            continue
        lines.append(
            table_row(
                [
                    name,
                    entry["batch"],
                    f"{entry['parameters_m']:.1f}",
                    f"{entry['seconds_per_iteration']:.2f}",
                    f"{entry['peak_memory_mb'] / 1024:.1f}",
                ]
            )
        )
    lines.append(table_header(["discovery step, features of", "s / volume cached", "s / volume recomputed", "speedup"]))
    for name in ("cpu_recipe", "paper"):
        entry = result.get(f"discovery_{name}_features")
        if entry:
            cells = [f"{entry['seconds_per_volume_cached']:.3f}", f"{entry['seconds_per_volume_recomputed']:.3f}"]
            lines.append(table_row([f"{name} diffusion model", *cells, f"{entry['speedup']:.1f}x"]))
    bundle = result.get("bundle_feature_cache")
    if bundle:
        cached, recomputed = bundle["cached"], bundle["recomputed"]
        lines.append(
            f"\nstructure_discovery bundle, {bundle['training_volumes']} training volumes x {bundle['epochs']} epochs: "
            f"median epoch {cached['median_epoch_seconds_after_first']:.1f} s with the cache, "
            f"{recomputed['median_epoch_seconds_after_first']:.1f} s without ({bundle.get('speedup', '-')}x); "
            f"matched Dice with minus without the cache per level: {bundle['dice_difference']}."
        )
    return "\n".join(lines)


SOURCES = {
    "pretraining_headline": (headline, lambda: load("pretraining.json")),
    "pretraining": (pretraining, lambda: load("pretraining.json")),
    "speed": (speed, lambda: load("speed.json")),
}
