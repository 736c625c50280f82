"""`Batcher`: merges concurrent requests into one model call."""

import asyncio
import dataclasses
import logging

import numpy as np

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class _Task:
    inputs: dict
    batch_size: int
    future: asyncio.Future

    def key(self):
        # Only requests whose inputs agree beyond axis 0 can be concatenated.
        return tuple(
            (name, value.shape[1:], value.dtype)
            for name, value in sorted(self.inputs.items())
        )


class Batcher:
    """Batches the requests to one signature, as TensorFlow Serving does.

    The first waiting request opens a batch; requests arriving within
    ``batch_timeout_s`` join it while the batch holds at most
    ``max_batch_size`` instances. The batch is concatenated on axis 0, run
    in ``executor`` with one call of ``run`` and the outputs split back, so
    every request gets exactly the rows of its own instances. At most
    ``max_concurrent_batches`` batches run at a time (TensorFlow Serving's
    ``num_batch_threads``); requests arriving meanwhile form the next. When
    a batched call fails, each of its requests is run alone so that only
    the faulty one gets the error.

    Args:
        run: function mapping a dict of input arrays to a dict of output
            arrays, batch on axis 0 of both.
        max_batch_size: the largest number of instances in one call.
        batch_timeout_s: how long the first request of a batch waits for
            others, in seconds.
        executor: the `concurrent.futures.Executor` running ``run``.
        max_concurrent_batches: how many batches may run at once.
    """

    def __init__(
        self, run, max_batch_size, batch_timeout_s, executor, max_concurrent_batches=1
    ):
        self._run = run
        self._max_batch_size = max_batch_size
        self._batch_timeout_s = batch_timeout_s
        self._executor = executor
        self._queue = None
        self._worker = None
        self._deferred = []
        self._max_concurrent_batches = max_concurrent_batches
        self._running = set()

    async def submit(self, inputs, batch_size):
        """Queues one request and waits for its outputs.

        Args:
            inputs: dict of input name to array with ``batch_size`` rows.
            batch_size: the number of instances of the request.

        Returns:
            The dict of output arrays for this request's rows.
        """
        loop = asyncio.get_running_loop()
        if self._worker is None:
            self._queue = asyncio.Queue()
            self._worker = loop.create_task(self._serve())
        task = _Task(inputs, batch_size, loop.create_future())
        self._queue.put_nowait(task)
        return await task.future

    async def close(self):
        """Stops the worker; call once no request is in flight."""
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
            self._worker = None

    async def _next_task(self, timeout_s):
        if self._deferred:
            return self._deferred.pop(0)
        if timeout_s is None:
            return await self._queue.get()
        if timeout_s <= 0:
            return self._queue.get_nowait() if not self._queue.empty() else None
        try:
            return await asyncio.wait_for(self._queue.get(), timeout_s)
        except asyncio.TimeoutError:
            return None

    async def _serve(self):
        loop = asyncio.get_running_loop()
        slots = asyncio.Semaphore(self._max_concurrent_batches)
        while True:
            # Collect the next batch only once it can run, so that requests
            # arriving while all slots are busy make larger batches.
            await slots.acquire()
            first = await self._next_task(None)
            batch = [first]
            size = first.batch_size
            deadline = loop.time() + self._batch_timeout_s
            deferred = []
            while size < self._max_batch_size:
                task = await self._next_task(deadline - loop.time())
                if task is None:
                    break
                if (
                    task.key() != first.key()
                    or size + task.batch_size > self._max_batch_size
                ):
                    deferred.append(task)
                    # A full batch goes now; an incompatible request waits.
                    if task.key() == first.key():
                        break
                    continue
                batch.append(task)
                size += task.batch_size
            self._deferred = deferred + self._deferred
            running = loop.create_task(self._run_batch(batch))
            self._running.add(running)
            running.add_done_callback(self._running.discard)
            running.add_done_callback(lambda _: slots.release())

    async def _run_batch(self, batch):
        loop = asyncio.get_running_loop()
        batch = [task for task in batch if not task.future.done()]
        if not batch:
            return
        if len(batch) == 1:
            await self._run_alone(batch[0])
            return
        merged = {
            name: np.concatenate([task.inputs[name] for task in batch])
            for name in batch[0].inputs
        }
        try:
            outputs = await loop.run_in_executor(self._executor, self._run, merged)
        except Exception:
            logger.debug("Batched call failed; running its requests alone.")
            for task in batch:
                await self._run_alone(task)
            return
        start = 0
        for task in batch:
            stop = start + task.batch_size
            if not task.future.done():
                task.future.set_result(
                    {name: value[start:stop] for name, value in outputs.items()}
                )
            start = stop

    async def _run_alone(self, task):
        loop = asyncio.get_running_loop()
        try:
            outputs = await loop.run_in_executor(
                self._executor, self._run, task.inputs
            )
        except Exception as error:
            if not task.future.done():
                task.future.set_exception(error)
            return
        if not task.future.done():
            task.future.set_result(outputs)
