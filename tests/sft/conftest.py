"""One torch thread for the sft tests: their tiny models run 5-10x slower with two threads on a CPU other
jobs share (measured: the generation equality test 1.3 s on one thread, 7-13 s on two, load average 6)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
