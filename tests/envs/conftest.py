import warnings

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _quiet_gymnasium():
    warnings.filterwarnings("ignore", module="gymnasium")
    yield
