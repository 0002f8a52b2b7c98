"""A full dataset check: open every image and mask and list everything that is wrong.

``scan_dataset`` stops at the first structural problem and never decodes pixels (it runs before
every training). This check is the slower, complete one a person runs on a new dataset, or a
pipeline runs as its first step: it reports all problems at once rather than raising, so a whole
folder can be fixed in one pass (``strict=True`` raises the first one instead).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from texinspect.data.images import ImageInfo, image_info, mask_array
from texinspect.data.layout import (
    GOOD,
    GROUND_TRUTH,
    IMAGE_EXTENSIONS,
    MASK_SUFFIX,
    TEST,
    TRAIN,
    absolute_path,
    find_mask,
    has_ground_truth,
    images_in,
    is_image_file,
    mask_candidates,
    subfolders,
)
from texinspect.errors import DataError


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one file or folder; ``str()`` is a one-line message naming it."""

    kind: str  # e.g. "unreadable_image", "mask_size", "missing_mask" (see check_dataset)
    path: Path  # absolute path of the file or folder concerned
    rel: str  # the same, relative to the dataset root (for tables)
    message: str
    split: str = ""
    defect_type: str = ""

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass
class _Group:
    images: int = 0
    masks: int = 0
    problems: int = 0
    sizes: Counter[str] = field(default_factory=Counter)
    modes: Counter[str] = field(default_factory=Counter)


@dataclass
class CheckReport:
    """Counts per split and defect type, image sizes and modes seen, problems and warnings."""

    root: Path
    groups: dict[tuple[str, str], _Group] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def sizes(self) -> Counter[str]:
        """Image size ("WxH") -> number of images of that size (all splits)."""
        return sum((g.sizes for g in self.groups.values()), Counter())

    @property
    def modes(self) -> Counter[str]:
        """Pillow mode ("L", "RGB", "I;16", ...) -> number of images."""
        return sum((g.modes for g in self.groups.values()), Counter())

    def count(self, split: str, defect_type: str) -> int:
        group = self.groups.get((split, defect_type))
        return group.images if group else 0

    def problem_kinds(self) -> Counter[str]:
        return Counter(p.kind for p in self.problems)

    def table(self) -> pd.DataFrame:
        """One row per split and type: images, masks, problems, sizes and modes seen."""
        rows = [
            {
                "split": split,
                "type": defect_type,
                "images": g.images,
                "masks": g.masks,
                "problems": g.problems,
                "sizes": _describe(g.sizes),
                "modes": _describe(g.modes),
            }
            for (split, defect_type), g in sorted(self.groups.items(), key=_group_order)
        ]
        columns = ["split", "type", "images", "masks", "problems", "sizes", "modes"]
        return pd.DataFrame(rows, columns=columns)

    def summary(self, max_problems: int = 30) -> str:
        """Printable report: the table, then problems (one line each) and warnings."""
        lines = [f"dataset: {self.root}"]
        table = self.table()
        if len(table):
            lines.append(table.to_string(index=False))
        n = len(self.problems)
        lines.append(f"problems: {n}" + (f" ({_describe(self.problem_kinds())})" if n else ""))
        lines += [f"  {p.rel}: {p.message}" for p in self.problems[:max_problems]]
        if n > max_problems:
            lines.append(f"  ... and {n - max_problems} more")
        if self.warnings:
            lines.append(f"warnings: {len(self.warnings)}")
            lines += [f"  {w}" for w in self.warnings]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def _group_order(item: tuple[tuple[str, str], _Group]) -> tuple[bool, bool, str]:
    """train first, then test/good, then the defect types by name."""
    (split, defect_type), _ = item
    return (split != TRAIN, defect_type != GOOD, defect_type)


def _describe(counter: Counter[str]) -> str:
    return ", ".join(f"{key} x{n}" for key, n in counter.most_common())


class _Checker:
    """Walks one dataset; keeps the report being filled."""

    def __init__(self, root: Path, size: int | None, progress: bool) -> None:
        self.root = root
        self.size = size
        self.progress = progress
        self.report = CheckReport(root=root)
        self.small = 0
        self.masks = True  # False when the dataset has no ground_truth/ folder (image labels only)

    def rel(self, path: Path) -> str:
        if path == self.root:
            return str(path)
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return str(path)

    def problem(self, kind: str, path: Path, message: str, split: str = "", defect_type: str = "") -> None:
        self.report.problems.append(Problem(kind, path, self.rel(path), message, split, defect_type))
        if (split, defect_type) in self.report.groups:
            self.report.groups[(split, defect_type)].problems += 1

    def warn(self, message: str) -> None:
        self.report.warnings.append(message)

    def run(self) -> CheckReport:
        root = self.root
        if not root.is_dir():
            self.problem(
                "root_missing", root, "dataset folder not found" if not root.exists() else "not a folder"
            )
            return self.report
        work = self.collect()
        self.masks = has_ground_truth(root)
        if not self.masks and any(s == TEST and t != GOOD for s, t, _ in work):
            self.warn(f"no {GROUND_TRUTH}/ folder: image-level labels only (pixel metrics will not be available)")
        for split, defect_type, path in tqdm(work, desc="checking", disable=not self.progress, leave=False):
            self.check_image(split, defect_type, path)
        self.check_ground_truth()
        if self.small:
            self.warn(f"{self.small} image(s) are smaller than {self.size} px and will be upsampled")
        return self.report

    def collect(self) -> list[tuple[str, str, Path]]:
        """Structure: which images exist in which split/type; structural problems and warnings."""
        root, work = self.root, []
        good_dir = root / TRAIN / GOOD
        if not good_dir.is_dir():
            self.problem(
                "train_missing", good_dir, "folder not found (expected train/good with defect-free images)"
            )
        else:
            self.report.groups[(TRAIN, GOOD)] = _Group()
            images = images_in(good_dir)
            self._warn_non_images(good_dir)
            if not images:
                self.problem(
                    "train_empty", good_dir, f"no training images ({'/'.join(IMAGE_EXTENSIONS)})", TRAIN, GOOD
                )
            work += [(TRAIN, GOOD, p) for p in images]
        if (root / TRAIN).is_dir():
            for other in subfolders(root / TRAIN):
                if other.name != GOOD:
                    self.warn(f"{self.rel(other)}: ignored (only train/good is used for training)")
        test_dir = root / TEST
        if not test_dir.is_dir():
            self.warn("no test/ folder: nothing to evaluate on")
            return work
        loose = [p for p in test_dir.iterdir() if p.is_file() and is_image_file(p)]
        if loose:
            self.warn(f"test/: {len(loose)} image(s) outside a test/<type>/ folder are ignored")
        for type_dir in subfolders(test_dir):
            self.report.groups[(TEST, type_dir.name)] = _Group()
            images = images_in(type_dir)
            self._warn_non_images(type_dir)
            if not images:
                self.warn(f"{self.rel(type_dir)}: empty folder")
            work += [(TEST, type_dir.name, p) for p in images]
        return work

    def _warn_non_images(self, folder: Path) -> None:
        others = [p.name for p in folder.iterdir() if not p.name.startswith(".") and not is_image_file(p)]
        if others:
            shown = ", ".join(sorted(others)[:3]) + (", ..." if len(others) > 3 else "")
            self.warn(f"{self.rel(folder)}: {len(others)} non-image entr(ies) ignored ({shown})")

    def check_image(self, split: str, defect_type: str, path: Path) -> None:
        group = self.report.groups[(split, defect_type)]
        group.images += 1
        try:
            info = image_info(path)
        except DataError as exc:
            self.problem("unreadable_image", path, _strip(exc, path), split, defect_type)
            info = None
        if info is not None:
            group.sizes[f"{info.width}x{info.height}"] += 1
            group.modes[info.mode] += 1
            if self.size is not None and min(info.width, info.height) < self.size:
                self.small += 1
        if split != TEST or defect_type == GOOD or not self.masks:
            return
        mask_path = find_mask(self.root, defect_type, path.stem)
        if mask_path is None:
            expected = self.rel(mask_candidates(self.root, defect_type, path.stem)[0])
            self.problem(
                "missing_mask", path, f"defect image has no mask (expected {expected})", split, defect_type
            )
            return
        group.masks += 1
        self.check_mask(mask_path, info, split, defect_type)

    def check_mask(self, path: Path, info: ImageInfo | None, split: str, defect_type: str) -> None:
        try:
            mask = mask_array(path)
        except DataError as exc:
            self.problem("unreadable_mask", path, _strip(exc, path), split, defect_type)
            return
        height, width = mask.shape
        if info is not None and (width, height) != (info.width, info.height):
            self.problem(
                "mask_size",
                path,
                f"mask is {width}x{height} but its image is {info.width}x{info.height}",
                split,
                defect_type,
            )
        values = np.unique(mask)
        odd = values[(values != 0) & (values != 255)]
        if odd.size:
            shown = ", ".join(str(v) for v in odd[:5].tolist()) + (", ..." if odd.size > 5 else "")
            self.problem(
                "mask_values", path, f"mask has values other than 0 and 255 ({shown})", split, defect_type
            )
        elif not values.any():
            self.warn(f"{self.rel(path)}: mask is empty (all 0) for a defect image")

    def check_ground_truth(self) -> None:
        """Masks must belong to a defect image: no orphans, no masks for good images."""
        gt_dir = self.root / GROUND_TRUTH
        if not gt_dir.is_dir():
            return
        for type_dir in subfolders(gt_dir):
            defect_type = type_dir.name
            image_dir = self.root / TEST / defect_type
            stems = {p.stem for p in images_in(image_dir)} if image_dir.is_dir() else set()
            for path in images_in(type_dir):
                stem = path.stem
                name_ok = stem.endswith(MASK_SUFFIX)
                image_stem = stem[: -len(MASK_SUFFIX)] if name_ok else stem
                if name_ok and image_stem in stems:
                    if defect_type == GOOD:
                        self.problem(
                            "good_has_mask", path, "mask for a defect-free (test/good) image", TEST, GOOD
                        )
                    continue
                expected = (
                    f"test/{defect_type}/{image_stem}.png" if name_ok else f"name <stem>{MASK_SUFFIX}.png"
                )
                self.problem(
                    "orphan_mask", path, f"mask without image (expected {expected})", TEST, defect_type
                )


def _strip(exc: DataError, path: Path) -> str:
    """The message of a DataError without its leading "<path>: " (the report names the file)."""
    text = str(exc)
    prefix = f"{path}: "
    return text[len(prefix) :] if text.startswith(prefix) else text


def check_dataset(
    root: str | Path, size: int | None = None, strict: bool = False, progress: bool = False
) -> CheckReport:
    """Open every image and mask under ``root`` (MVTec layout) and report what is wrong.

    Problems (``report.problems``): root or train/good missing, no training images, unreadable or
    truncated images and masks, defect images without mask (when the dataset has a ground_truth/
    folder; without one it has image-level labels only, which is a warning), masks whose size
    differs from their image, masks with values other than 0/255, masks without image, good images
    with a mask.
    ``size``: also warn about images smaller than the training size. ``strict``: raise the first
    problem as DataError instead of returning it.
    """
    report = _Checker(absolute_path(root), size, progress).run()
    if strict and report.problems:
        raise DataError(str(report.problems[0]))
    return report
