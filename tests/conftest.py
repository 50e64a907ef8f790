import os
import random

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest


@pytest.fixture(autouse=True)
def seeded():
    """Seed every random generator the tests touch."""
    import keras

    random.seed(0)
    np.random.seed(0)
    keras.utils.set_random_seed(0)
    yield
