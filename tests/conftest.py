"""Shared test helpers: where the read-only real data of ``../shared`` lives."""
from pathlib import Path

import pytest

#: ``../shared`` beside the repository: real ground truth and image samples (never copied here)
SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def shared_file(relative: str) -> Path:
    """The path of ``../shared/<relative>``; skips the test, saying which file, when it is absent."""
    path = SHARED / relative
    if not path.is_file():
        pytest.skip(f"real data absent: {path} (the read-only ../shared folder is not beside the repo)")
    return path
