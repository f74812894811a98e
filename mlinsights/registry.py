"""Model artifacts on disk: saved once under ``MODEL_DIR`` with their SHA-256, loaded only
when the file is there and its hash is the one registered.

Artifacts are joblib (pickle) files and loading one runs code: only files this process wrote
are ever loaded, and the hash check refuses one that was truncated, replaced or corrupted
since. A loaded pipeline is kept in memory per hash, so scoring does not reread the file.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

import joblib
from django.conf import settings
from sklearn.pipeline import Pipeline


class ArtifactInvalid(Exception):
    """A model artifact cannot be used (missing, hash mismatch, unreadable, wrong shape)."""


_loaded: dict[str, Pipeline] = {}
_loaded_guard = threading.Lock()


def model_dir() -> Path:
    return Path(settings.MODEL_DIR)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def artifact_save(model: Pipeline, *, name: str) -> str:
    """Write ``model`` to ``MODEL_DIR/name`` (atomically: a crash leaves no half file under
    that name) and return the file's SHA-256. An existing file is never overwritten."""
    if Path(name).name != name or not name.endswith(".joblib"):
        raise ValueError(f"artifact name must be a bare '*.joblib' file name, got {name!r}")
    directory = model_dir()
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / name
    if target.exists():
        raise FileExistsError(f"artifact {name} already exists in the model directory")
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".saving-", suffix=".joblib")
    os.close(handle)
    try:
        joblib.dump(model, temporary)
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())
        # link + unlink: unlike rename, link refuses to replace a file that appeared meanwhile.
        os.link(temporary, target)
    finally:
        os.unlink(temporary)
    return _sha256(target)


def artifact_load(*, name: str, sha256: str, features: list[str]) -> Pipeline:
    """The pipeline saved as ``name``, verified against ``sha256``; raises ``ArtifactInvalid``
    saying what is wrong (and never loads a file whose hash differs)."""
    with _loaded_guard:
        cached = _loaded.get(sha256)
    if cached is not None:
        return cached
    path = model_dir() / name
    if Path(name).name != name or not path.is_file():
        raise ArtifactInvalid(f"artifact {name} is missing from the model directory")
    actual = _sha256(path)
    if actual != sha256:
        raise ArtifactInvalid(
            f"artifact {name} has SHA-256 {actual[:12]}…, registered {sha256[:12]}…: "
            "the file changed since it was saved"
        )
    try:
        model: Any = joblib.load(path)
    except Exception as error:  # an unreadable pickle can raise nearly anything
        raise ArtifactInvalid(f"artifact {name} cannot be read: {error}") from error
    if not isinstance(model, Pipeline) or not hasattr(model, "predict_proba"):
        raise ArtifactInvalid(f"artifact {name} is not a scikit-learn pipeline")
    expected = getattr(model, "n_features_in_", None)
    if expected != len(features):
        raise ArtifactInvalid(
            f"artifact {name} takes {expected} features, the registry lists {len(features)}"
        )
    with _loaded_guard:
        _loaded[sha256] = model
    return model


def artifact_cache_clear() -> None:
    """Forget loaded pipelines (tests; a process that must reread the files)."""
    with _loaded_guard:
        _loaded.clear()
