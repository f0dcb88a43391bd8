from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Read-only reference data (Set5, the PAN authors' weights) lives beside the repository, never inside it.
SHARED = REPO.parent / "shared" / "data"

needs_shared = pytest.mark.skipif(
    not (SHARED / "Set5" / "HR").is_dir(),
    reason=f"reference data not found at {SHARED} (Set5 and the PAN authors' weights live in ../shared)",
)
