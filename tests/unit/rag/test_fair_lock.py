"""The embedder's lock passes to waiters in arrival order, never back to the thread that let it
go while another waits (a question waits behind one batch of an upload, not all of them)."""

import threading
import time

from rag.retrieval.embedder import FairLock


def test_the_lock_goes_to_the_waiter_before_the_thread_that_released_it() -> None:
    lock, order = FairLock(), []
    holding, waiting = threading.Event(), threading.Event()

    def batches() -> None:
        for n in range(3):
            with lock:
                order.append(f"batch {n}")
                holding.set()
                if n == 0:
                    waiting.wait()
                    time.sleep(0.05)  # the waiter is queued before this batch ends

    def question() -> None:
        holding.wait()
        waiting.set()
        with lock:
            order.append("question")

    threads = [threading.Thread(target=batches), threading.Thread(target=question)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert order == ["batch 0", "question", "batch 1", "batch 2"]
