"""The evaluation of label-free multi-class segmentations in the layout of CUTS (Liu, Amodio et al., Table 1): every
label map reduced to the target by the hint rule (``monai_ext.metrics.hint``), scored per target, with the oracle
"best level" of a level series in a column of its own."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ignite.engine import Engine
from monai.utils import convert_to_numpy

from monai_ext.engines.handlers import EndOfRunWriter
from monai_ext.metrics import best_level_scores, finite_stats, hint_scores
from monai_ext.provenance import environment, write_json
from monai_ext.transforms.hierarchy import output_items

__all__ = ["ORACLE", "CUTSReport", "cuts_table", "summarize_hint_scores"]

ORACLE = "best level (oracle)"
"""The row of the level chosen with the ground truth."""
METRICS = ("dice", "hausdorff", "hd95", "ssim", "ergas", "rmse")


def summarize_hint_scores(scores: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Mean, sd and count of each metric of :func:`monai_ext.metrics.binary_mask_scores` over images."""
    return {metric: finite_stats([s[metric] for s in scores]) for metric in METRICS}


def cuts_table(report: Mapping[str, Any]) -> str:
    """Dice, HD95 and SSIM of every method (rows) for every target (columns), as CUTS Table 1 lays them out."""
    targets = list(report["targets"])
    methods = list(dict.fromkeys(m for t in targets for m in report["targets"][t]["methods"]))
    lines = [f"{'method':<28}" + "".join(f"{t + ' Dice / HD95 / SSIM':<36}" for t in targets)]
    for method in methods:
        cells = []
        for target in targets:
            s = report["targets"][target]["methods"].get(method)
            cells.append(
                " / ".join(f"{s[m]['mean']:.3f}" if s and s[m] else "-" for m in ("dice", "hd95", "ssim")) if s else "-"
            )
        lines.append(f"{method:<28}" + "".join(f"{c:<36}" for c in cells))
    counts = ", ".join(
        f"{t}: {report['targets'][t]['images']} images scored, {report['targets'][t]['empty_truth']} without it"
        for t in targets
    )
    lines.append(counts)
    return "\n".join(lines)


class CUTSReport(EndOfRunWriter):
    """Ignite handler that scores the label maps of every evaluated image against each target and writes
    ``report.json`` when the run completes.

    Per item and target (a binary ground truth under ``targets[name]``; items without the key are skipped): each
    method's label map (``methods[name]``, keys absent from the item are skipped) is reduced to a binary mask by the
    hint rule and scored with Dice, Hausdorff, HD95, SSIM, ERGAS and RMSE (:func:`monai_ext.metrics.hint_scores`);
    the level series under ``levels_key`` adds the oracle row :data:`ORACLE`
    (:func:`monai_ext.metrics.best_level_scores`). An empty ground truth is counted, not scored.

    Args:
        output_dir: folder of ``report.json``.
        methods: row name -> key of a (1, H, W) or (H, W) label map.
        targets: target name -> key of its (1, H, W) binary ground truth.
        levels_key: key of the (L, H, W) level series; None: no oracle row.
        output_transform: maps ``engine.state.output`` to the decollated items; identity by default.
        batch_transform: maps ``engine.state.batch`` to the decollated items; identity by default. Each item is
            the batch item updated with the output item: MONAI's evaluators keep the keys that came with the data
            (e.g. a second ground truth) in the batch, and only ``image``, ``label`` and ``pred`` in the output.
        overwrite: replace an existing report; when False, ``attach`` refuses an existing one.
    """

    def __init__(
        self,
        output_dir: str | Path,
        methods: Mapping[str, str],
        targets: Mapping[str, str],
        levels_key: str | None = "pred_levels",
        output_transform: Callable[[Any], Any] = lambda x: x,
        batch_transform: Callable[[Any], Any] = lambda x: x,
        overwrite: bool = False,
    ) -> None:
        if not methods or not targets:
            raise ValueError(f"methods and targets must name at least one key each, got {methods} and {targets}.")
        if ORACLE in methods:
            raise ValueError(f"'{ORACLE}' is the oracle's row; name the methods otherwise.")
        self.methods, self.targets = dict(methods), dict(targets)
        self.levels_key = levels_key
        self.batch_transform = batch_transform
        super().__init__(Path(output_dir) / "report.json", output_transform, overwrite)

    def reset(self) -> None:
        self.scores: dict[str, dict[str, list[dict]]] = {t: {} for t in self.targets}
        self.best_levels: dict[str, list[int]] = {t: [] for t in self.targets}
        self.empty: dict[str, int] = dict.fromkeys(self.targets, 0)
        self.found: dict[str, int] = dict.fromkeys(self.targets, 0)
        self.images = 0

    def __call__(self, engine: Engine) -> None:
        outputs = output_items(self.output_transform(engine.state.output))
        batch = output_items(self.batch_transform(engine.state.batch))
        for data, output in zip(batch, outputs, strict=True):
            self.add({**data, **output})

    def add(self, item: Mapping[str, Any]) -> None:
        """Score one item (a dict holding the label maps, the levels and the ground truth of each target)."""
        self.images += 1
        maps = {m: convert_to_numpy(item[k]) for m, k in self.methods.items() if k in item}
        levels = convert_to_numpy(item[self.levels_key]) if self.levels_key in item else None
        for target, key in self.targets.items():
            if item.get(key) is None:
                continue
            self.found[target] += 1
            truth = convert_to_numpy(item[key]).reshape(convert_to_numpy(item[key]).shape[-2:]) > 0
            if not truth.any():
                self.empty[target] += 1
                continue
            for method, label_map in maps.items():
                scores = hint_scores(label_map.reshape(truth.shape), truth)
                self.scores[target].setdefault(method, []).append(scores)
            if levels is not None:
                index, scores = best_level_scores(levels, truth)
                self.scores[target].setdefault(ORACLE, []).append(scores)
                self.best_levels[target].append(index)

    def report(self) -> dict:
        targets = {}
        for target, rows in self.scores.items():
            images = max((len(s) for s in rows.values()), default=0)
            targets[target] = {
                "images": images,
                "empty_truth": self.empty[target],
                "methods": {method: summarize_hint_scores(scores) for method, scores in rows.items()},
                "best_level_index": finite_stats(self.best_levels[target]),
            }
        return {"images": self.images, "targets": targets}

    def write(self) -> None:
        """Print the table and write ``report.json``.

        Raises:
            ValueError: a target's ground truth was in none of the evaluated items (nothing could be scored for it).
        """
        if not self.images:
            self.logger.warning(f"no item evaluated: '{self.path}' not written.")
            return
        if missing := [f"'{t}' (key '{self.targets[t]}')" for t, found in self.found.items() if not found]:
            raise ValueError(
                f"none of the {self.images} evaluated images has the ground truth of target {', '.join(missing)} "
                "(config id targets: target name -> datalist key of a binary mask); evaluation needs labels: "
                "give records with those keys, or name the keys they have."
            )
        report = self.report()
        print(cuts_table(report))
        write_json(self.path, {**environment(), **report}, overwrite=self.overwrite)
        self.logger.info(f"report written to '{self.path}'.")
