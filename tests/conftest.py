from __future__ import annotations

from pathlib import Path

import pytest
import torch

FIXTURES = Path(__file__).parent / "fixtures" / "aum_official"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not (FIXTURES / "v1_d96_L4.pt").exists():
        pytest.fail(f"official fixtures missing under {FIXTURES}")
    return FIXTURES


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
