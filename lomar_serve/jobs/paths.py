"""Which paths and names an admin request may use.

Data paths in requests are confined to configured data roots: a path is resolved (symlinks followed, `..`
collapsed) and must then lie inside one resolved root (`contracts.datasets.within`, the rule the job's training
and scoring programs apply to every image and class folder they list, given `--data-roots`). Model names and
versions are validated against the repository contract (contracts.model_repository) before they are ever joined
to a directory.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from contracts.datasets import (OutsideDataRoots, class_names, has_splits, is_image_file, resolve_roots, train_dir,
                               within)
from contracts.model_repository import MODEL_NAME_RULE, is_model_name, is_version
from lomar_serve.jobs.errors import InvalidName, PathNotAllowed


def check_model_name(name: str) -> str:
    """`name` if it follows the model-name rule, else InvalidName."""
    if not is_model_name(name):
        raise InvalidName(f"invalid model name {name!r}: use {MODEL_NAME_RULE}")
    return name


def check_version(version: int | str) -> str:
    """The version as Triton spells it ("3") if it is a positive integer, else InvalidName."""
    if not is_version(version):
        raise InvalidName(f"invalid model version {version!r}: a positive integer is expected")
    return str(version)


@dataclass(frozen=True)
class Dataset:
    """A labelled image folder found under the data roots (what a job's `data_dir` may name)."""

    path: str  # as a request names it: relative to the first root, else absolute
    classes: tuple[str, ...]  # its class folders (DATA_DIR/train/CLASS or DATA_DIR/CLASS)
    splits: bool  # train/ and val/ (else the job validates on its training images)


@dataclass(frozen=True)
class DataRoots:
    """The folders request paths may point into (resolved once, at construction)."""

    roots: tuple[Path, ...]

    @classmethod
    def of(cls, roots: Iterable[str | Path]) -> DataRoots:
        return cls(resolve_roots(roots))

    def resolve(self, path: str, *, kind: str = "path", must_be_dir: bool = False) -> Path:
        """The resolved `path` if it exists inside a data root.

        Relative paths are taken relative to the first root. Raises PathNotAllowed otherwise (the message
        names the roots, never what lies outside them).
        """
        if not self.roots:
            raise PathNotAllowed(f"no data roots are configured (LOMAR_DATA_ROOTS): {kind} paths are refused")
        if not isinstance(path, str) or not path or "\x00" in path:
            raise PathNotAllowed(f"{kind} must be a non-empty path")
        candidate = Path(path)  # no "~" expansion: "~user/x" is a relative name like any other
        if not candidate.is_absolute():
            candidate = self.roots[0] / candidate
        try:
            resolved = candidate.resolve()
        except (OSError, RuntimeError) as error:  # a symlink loop, a name too long
            raise PathNotAllowed(f"{kind} {path!r} cannot be resolved: {error}") from None
        if not within(resolved, self.roots):
            raise PathNotAllowed(f"{kind} {path!r} is outside the data roots ({self.describe()})")
        if must_be_dir and not resolved.is_dir():
            raise PathNotAllowed(f"{kind} {path!r} is not a folder inside the data roots")
        if not must_be_dir and not resolved.is_file():
            raise PathNotAllowed(f"{kind} {path!r} is not a file inside the data roots")
        return resolved

    def class_folders(self, folder: Path) -> list[str]:
        """The class folders of a resolved `folder` inside the roots; PathNotAllowed if one resolves outside them
        (a symlink leading out: its name would become a label, even with no image in it). The training program
        checks again when it lists them (`--data-roots`)."""
        try:
            return class_names(folder, self.roots)
        except OutsideDataRoots as error:
            raise PathNotAllowed(str(error)) from None

    def datasets(self, depth: int = 2, limit: int = 200) -> list[Dataset]:
        """Labelled image folders at most `depth` levels under each root (the roots included), by path: a folder
        with train/ and val/, or whose class folders hold images. Their images are not counted (a data set may
        hold millions); the folders inside a data set are not searched; folders leading out of the roots are
        skipped. At most `limit`."""
        found: list[Dataset] = []
        pending = [(root, root, 0) for root in self.roots]
        while pending and len(found) < limit:
            root, folder, level = pending.pop(0)
            dataset = self._dataset(root, folder)
            if dataset is not None:
                found.append(dataset)
            elif level < depth:
                pending.extend((root, child, level + 1) for child in _subfolders(folder)
                               if within(child.resolve(), self.roots))
        return sorted(found, key=lambda dataset: dataset.path)

    def _dataset(self, root: Path, folder: Path) -> Dataset | None:
        try:
            classes = self.class_folders(train_dir(folder))
        except PathNotAllowed:
            return None
        splits = has_splits(folder)
        if not splits and sum(_holds_an_image(train_dir(folder) / name) for name in classes[:3]) < 2:
            return None
        relative = folder.relative_to(root)
        path = str(relative) if root == self.roots[0] else str(folder)
        return Dataset(path=path if path != "." else str(folder), classes=tuple(classes), splits=splits)

    def describe(self) -> str:
        return ", ".join(str(root) for root in self.roots) or "none"


def _subfolders(folder: Path) -> list[Path]:
    try:
        return sorted(entry for entry in folder.iterdir() if entry.is_dir() and not entry.name.startswith("."))
    except OSError:
        return []


def _holds_an_image(folder: Path) -> bool:
    """Whether `folder` itself holds an image file (the first one found ends the look)."""
    try:
        return any(is_image_file(entry) for entry in folder.iterdir())
    except OSError:
        return False
