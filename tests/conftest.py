"""Shared fixtures: small, seeded, CPU-only."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """One torch thread: test models are tiny and gain nothing from two, and lose a lot when the other core is busy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


@pytest.fixture
def images():
    """A batch of five-band 64x64 cutouts."""
    return torch.randn(4, 5, 64, 64)
