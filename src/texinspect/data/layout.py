"""Where the images are: the MVTec AD folder layout, scanned without decoding any image.

Layout::

    <root>/train/good/*                         defect-free training images
    <root>/test/good/*                          defect-free test images
    <root>/test/<type>/*                        defective test images of one defect type
    <root>/ground_truth/<type>/<stem>_mask.png  pixel masks of the defective test images

``ground_truth/`` is optional as a whole: a dataset without it (e.g. ELPV) has image-level labels
only, and pixel metrics are not available on it. Once ``ground_truth/`` exists, every defect image
needs its mask (a missing one is an error naming the file).

Scanning only lists folders (it is called at the start of every training, prediction and
evaluation run), so problems that need the pixels (truncated files, masks of the wrong size) are
found by ``texinspect.data.check``. The problems found here stop the run with one line that names
the folder or file, because training on a misread dataset wastes hours.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from texinspect.errors import DataError

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
GOOD = "good"
TRAIN = "train"
TEST = "test"
GROUND_TRUTH = "ground_truth"
MASK_SUFFIX = "_mask"


@dataclass(frozen=True)
class ImageRecord:
    """One image file and what the folder layout says about it."""

    path: Path  # absolute
    rel: str  # posix path relative to the dataset (or folder) root: the image's stable name
    split: str  # "train", "test", or "" for a plain folder
    defect_type: str  # "good", a defect folder name, or "" when unknown
    mask_path: Path | None = None

    @property
    def label(self) -> int | None:
        """0 defect-free, 1 defective, None unknown (plain folders)."""
        if not self.defect_type:
            return None
        return 0 if self.defect_type == GOOD else 1


@dataclass
class DatasetIndex:
    """The records of one dataset in MVTec layout, in a deterministic (sorted) order."""

    root: Path
    train: list[ImageRecord]
    test: list[ImageRecord] = field(default_factory=list)

    def types(self) -> list[str]:
        """Test-split types: "good" first (when present), then the defect types sorted."""
        found = {r.defect_type for r in self.test}
        return ([GOOD] if GOOD in found else []) + sorted(found - {GOOD})

    def defect_types(self) -> list[str]:
        return [t for t in self.types() if t != GOOD]

    def records(self, split: str, defect_type: str | None = None) -> list[ImageRecord]:
        if split not in (TRAIN, TEST):
            raise DataError(f"unknown split '{split}' (expected 'train' or 'test')")
        records = self.train if split == TRAIN else self.test
        return [r for r in records if defect_type is None or r.defect_type == defect_type]

    def counts(self) -> dict[str, int]:
        """Images per "split/type", e.g. {"train/good": 762, "test/good": 95, "test/crack": 57}."""
        counter = Counter(f"{r.split}/{r.defect_type}" for r in self.train + self.test)
        order = [f"{TRAIN}/{GOOD}"] + [f"{TEST}/{t}" for t in self.types()]
        return {key: counter[key] for key in order if counter[key]}

    def __len__(self) -> int:
        return len(self.train) + len(self.test)


# --------------------------------------------------------------------------- helpers


def is_image_file(path: Path) -> bool:
    """An image by its extension (case-insensitive); hidden files such as ``._x.png`` are not."""
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def absolute_path(path: str | Path) -> Path:
    # abspath, not resolve(): a DVC-linked dataset should keep its own paths, not the cache's.
    return Path(os.path.abspath(os.fspath(path)))


def images_in(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name."""
    return sorted((p for p in folder.iterdir() if p.is_file() and is_image_file(p)), key=lambda p: p.name)


def subfolders(folder: Path) -> list[Path]:
    return sorted(
        (p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name
    )


def mask_candidates(root: Path, defect_type: str, stem: str) -> list[Path]:
    """Where the mask of ``test/<defect_type>/<stem>.*`` may be, preferred (``.png``) first."""
    folder = root / GROUND_TRUTH / defect_type
    return [folder / f"{stem}{MASK_SUFFIX}{ext}" for ext in IMAGE_EXTENSIONS]


def find_mask(root: Path, defect_type: str, stem: str) -> Path | None:
    for candidate in mask_candidates(root, defect_type, stem):
        if candidate.is_file():
            return candidate
    return None


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def has_ground_truth(root: str | Path) -> bool:
    """True when ``root`` has a ``ground_truth/`` folder; without one, labels are image-level only."""
    return (Path(root) / GROUND_TRUTH).is_dir()


def has_mvtec_layout(root: str | Path) -> bool:
    """True when ``root`` has a ``test/`` or ``train/good/`` folder (MVTec layout)."""
    root = Path(root)
    return (root / TEST).is_dir() or (root / TRAIN / GOOD).is_dir()


# --------------------------------------------------------------------------- scanning


def scan_train(root: Path) -> list[ImageRecord]:
    """Records of ``train/good``; raises DataError when the folder is missing or empty."""
    folder = root / TRAIN / GOOD
    if not folder.is_dir():
        raise DataError(
            f"{folder}: folder not found (expected the MVTec layout: train/good, test/<type>, "
            f"ground_truth/<type>)"
        )
    records = [ImageRecord(p, _rel(p, root), TRAIN, GOOD, None) for p in images_in(folder)]
    if not records:
        raise DataError(f"{folder}: no training images (expected {'/'.join(IMAGE_EXTENSIONS)} files)")
    return records


def scan_test(root: Path, require_masks: bool = True) -> list[ImageRecord]:
    """Records of ``test/<type>/*``; a defect image without its mask is an error if ``require_masks``.

    A dataset with no ``ground_truth/`` folder at all has image-level labels only: its defect
    images get ``mask_path=None`` and no error, whatever ``require_masks`` says.
    """
    folder = root / TEST
    if not folder.is_dir():
        return []
    require_masks = require_masks and has_ground_truth(root)
    records: list[ImageRecord] = []
    for type_dir in subfolders(folder):
        defect_type = type_dir.name
        for path in images_in(type_dir):
            mask = None
            if defect_type != GOOD:
                mask = find_mask(root, defect_type, path.stem)
                if mask is None and require_masks:
                    expected = mask_candidates(root, defect_type, path.stem)[0]
                    raise DataError(f"{path}: defect image has no mask (expected {_rel(expected, root)})")
            records.append(ImageRecord(path, _rel(path, root), TEST, defect_type, mask))
    return records


def scan_dataset(root: str | Path, require_test: bool = False) -> DatasetIndex:
    """Index a dataset in MVTec layout; raises DataError (one line, naming the path) when unusable.

    ``ground_truth/`` is optional (image labels only, :func:`has_ground_truth`); when it exists,
    every defect test image must have its mask.
    """
    root = absolute_path(root)
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder not found" if not root.exists() else f"{root}: not a folder")
    train = scan_train(root)
    test = scan_test(root, require_masks=True)
    if require_test and not test:
        raise DataError(f"{root / TEST}: no test images (expected test/good/* and test/<defect type>/*)")
    return DatasetIndex(root=root, train=train, test=test)


def list_images(folder: str | Path) -> list[ImageRecord]:
    """All images under ``folder`` (recursive, sorted by relative path); labels unknown."""
    folder = absolute_path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: folder not found" if not folder.exists() else f"{folder}: not a folder")
    paths = [
        Path(dirpath) / name
        for dirpath, dirnames, filenames in os.walk(folder)
        for name in filenames
        if is_image_file(Path(name))
    ]
    # Hidden folders (.git, .dvc, .ipynb_checkpoints) hold no images to inspect.
    paths = [p for p in paths if not any(part.startswith(".") for part in p.relative_to(folder).parts)]
    records = [ImageRecord(p, _rel(p, folder), "", "", None) for p in paths]
    return sorted(records, key=lambda r: r.rel)


def records_for_prediction(root: str | Path) -> list[ImageRecord]:
    """What ``predict`` runs on: the test split of an MVTec dataset, else every image under ``root``.

    A single image file is accepted too. Masks are attached where present but not required:
    predicting needs no ground truth (evaluation checks it).
    """
    path = absolute_path(root)
    if path.is_file():
        if not is_image_file(path):
            raise DataError(f"{path}: not an image file (expected {'/'.join(IMAGE_EXTENSIONS)})")
        return [ImageRecord(path, path.name, "", "", None)]
    if not path.exists():
        raise DataError(f"{path}: folder not found")
    if (path / TEST).is_dir():
        records = scan_test(path, require_masks=False)
        if not records:
            raise DataError(f"{path / TEST}: no test images (expected test/<type>/*.png)")
        return records
    records = list_images(path)
    if not records:
        raise DataError(f"{path}: no images found (expected {'/'.join(IMAGE_EXTENSIONS)} files)")
    return records
