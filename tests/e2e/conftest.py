from pathlib import Path

import pytest

from localvllm import make_weights_volume


@pytest.fixture(scope="session")
def weights_volume() -> Path:
    """A local stand-in for the PVC `weights`: holds the tiny model at tiny/ (made once, then cached)."""
    return make_weights_volume()
