"""Small asyncio helpers shared by the components that run background tasks."""
from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def cancel_and_wait(*tasks: "asyncio.Task[Any] | None") -> None:
    """Cancel background tasks and wait until each has unwound (its finally blocks ran).
    All are cancelled first, so they unwind together."""
    running = [t for t in tasks if t is not None]
    for task in running:
        task.cancel()
    for task in running:
        with contextlib.suppress(asyncio.CancelledError):
            await task
