"""``texinspect evaluate``: measure the files ``texinspect predict`` wrote against the ground truth.

Reads ``PRED/scores.csv`` (columns ``path``, ``score``; others ignored), ``PRED/maps/<path>.npy``
and, when present, ``PRED/prediction.json`` plus the test split (images, masks) of the dataset,
and writes into ``PRED``:

``metrics.json``   image AUROC, pixel AUROC, AUPRO, image precision/recall/F1 at the threshold,
                   pixel precision/recall/F1 at the pixel threshold (FMR-Net Table V), best F1,
                   thresholds and where they came from, counts
``per_type.csv``   one row per defect type (that type vs the good images), plus ``good``, ``all``
``per_type.md``    the same table in Markdown
``overlays/<type>/<stem>.png``  image | anomaly map | mask | overlay, for a look at the failures
``overview.png``   one picture for people (README, MLflow): ``good`` and each defect type side by
                   side, two images each with the map overlaid, true mask (red) and found region
                   (green) outlined, score and verdict; a 256-colour PNG, small enough to commit
``curves/roc.csv``, ``curves/pr.csv`` (``dvc plots`` input) and ``curves/roc.png``, ``curves/pr.png``

Because only these files are read, every model family (and any outside tool that writes the same
files) is measured by the same code. Images whose mask is empty still count at image level and
add normal pixels at pixel level; AUPRO has no region to take from them.

Without ``prediction.json`` (what an outside tool writes: ``scores.csv`` + ``maps/`` only) the
model's thresholds are unknown: ``metrics.json`` says ``"prediction_json": false`` and
``"family": null``, and the image and pixel thresholds fall back to the same rule as a
``prediction.json`` with null thresholds: ``eval.threshold_rule`` over the test split itself
(k-sigma over the good test images' scores / map pixels, or the best-F1 threshold), named by
``threshold_source`` / ``pixel_threshold_source`` (``k_sigma_test_good``, ``best_f1_test``). P/R/F1
at such a threshold has seen the test labels or test normals, so compare it only with rows
scored the same way; AUROC and AUPRO need no threshold and are unaffected.

A dataset without a ``ground_truth/`` folder (image-level labels only, e.g. ELPV) gets the image
metrics; the pixel metrics (``pixel_auroc``, ``aupro``, ``pixel_precision/recall/f1``) are NaN
(``null`` in metrics.json, ``n/a`` in printed tables) and ``pixel_metrics_unavailable`` says why.
"""

from __future__ import annotations

from texinspect.evaluation.measures import (
    NO_MASKS_REASON,
    compute_metrics,
    markdown_table,
    per_type_table,
    pixel_metrics_unavailable,
)
from texinspect.evaluation.pictures import (
    OVERVIEW_FILE,
    OverviewLayout,
    overlay_panel,
    overview_tile,
    write_curves,
    write_overlays,
    write_overview,
)
from texinspect.evaluation.reading import (
    METRICS_FILE,
    PREDICTION_FILE,
    REQUIRED_COLUMNS,
    SCORES_FILE,
    TestImage,
    load_items,
    read_prediction_meta,
    read_scores,
)
from texinspect.evaluation.stage import evaluate

__all__ = [
    "METRICS_FILE", "NO_MASKS_REASON", "OVERVIEW_FILE", "PREDICTION_FILE", "REQUIRED_COLUMNS", "SCORES_FILE",
    "OverviewLayout", "TestImage", "compute_metrics", "evaluate", "load_items", "markdown_table", "overlay_panel",
    "overview_tile", "per_type_table", "pixel_metrics_unavailable", "read_prediction_meta", "read_scores",
    "write_curves", "write_overlays", "write_overview",
]  # fmt: skip
