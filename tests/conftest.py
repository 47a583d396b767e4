"""Shared fixtures: small, seeded, CPU-only."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


@pytest.fixture
def images():
    """A batch of five-band 64x64 cutouts."""
    return torch.randn(4, 5, 64, 64)
