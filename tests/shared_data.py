"""Where the test suite finds the shared sample data (Open Assistant trees and prompts).

The data is not ours and never enters the repository: it lies beside the checkout in
`../shared/data`, or wherever `PARLEY_SHARED_DATA` points. Tests that need it skip, saying
where they looked, when it is missing.
"""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("PARLEY_SHARED_DATA") or ROOT.parent / "shared" / "data").resolve()
TREES = DATA / "oasst_en_100_trees.jsonl"
PROMPTS = DATA / "oasst_prompts_en_250.jsonl"


def shared(path: Path) -> Path:
    """`path` if it exists; otherwise the test is skipped with where it was looked for."""
    if not path.is_file():
        pytest.skip(
            f"shared sample data not found at {path} (it lives outside the repository, in "
            "../shared/data or where PARLEY_SHARED_DATA points)"
        )
    return path
