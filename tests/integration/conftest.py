import pytest

from cdnow_offline.emulator import Emulator


@pytest.fixture(scope="module")
def stack(root):
    """The stack of template.yaml in a fresh emulator, for one test module."""
    with Emulator(root) as emulator:
        yield emulator.provision("cdnow-it")
