from collections.abc import Iterator

import pytest
import torch

from tests.helpers import Batches, tiny_net
from training.loop import check_stop, clear_stop, evaluate, request_stop


@pytest.fixture
def stop_state() -> Iterator[None]:
    clear_stop()
    yield
    clear_stop()


def test_only_the_first_stop_signal_interrupts(stop_state: None) -> None:
    """A scheduler and run_all.sh may both send SIGTERM: the second must not interrupt the runner
    while it reports the first and exits (it surfaced as a traceback from an atexit callback)."""
    with pytest.raises(KeyboardInterrupt):
        request_stop()
    try:
        request_stop()  # kept, not raised
    except KeyboardInterrupt:
        pytest.fail("a second stop signal interrupted again")
    with pytest.raises(KeyboardInterrupt):
        check_stop()  # the request still stands for the loop


def test_evaluation_honours_a_pending_stop(stop_state: None) -> None:
    """A request whose exception was lost (raised in a destructor) stops an evaluation too, not
    only a training step: a long evaluation would otherwise run to its end."""
    with pytest.raises(KeyboardInterrupt):
        request_stop()  # its exception lost, say; the request stays
    with pytest.raises(KeyboardInterrupt):
        evaluate(tiny_net(), Batches(), torch.device("cpu"))
    clear_stop()
    loss, accuracy = evaluate(tiny_net(), Batches(), torch.device("cpu"))
    assert loss > 0 and 0 <= accuracy <= 1
