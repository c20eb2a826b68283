"""Several requests decoding at once on one multi-sequence engine (continuous batching).

    plan.py       one step's prompt chunks within a token budget, as data (pure)
    goodput.py    how many draft tokens each slot verifies, for the whole batch (pure)
    scheduler.py  the slots, admission, one batched evaluation per step, and delivery
    stats.py      what the steps did, as data (rounds, drafts offered and kept, batch cost)

The room between the API and the backends: the core keeps the halves of a round
(`core.decode.Decoding`: propose, commit); the scheduler runs every active request's round as
one batch (`MultiSequence.eval_many`), admits waiting requests between steps and frees the
finished. Callers (the API's batch call, the server) submit `Request`s and receive `Step`s;
they never touch the engine. Threads are the caller's: the scheduler is driven by whoever
calls `step()`.
"""

from .plan import DEFAULT_TOKEN_BUDGET, MIN_PREFILL_ROWS, prefill_plan
from .scheduler import Handle, Request, Scheduler, decode_steps
from .stats import BatchStats

__all__ = ["DEFAULT_TOKEN_BUDGET", "MIN_PREFILL_ROWS", "BatchStats", "Handle", "Request",
           "Scheduler", "decode_steps", "prefill_plan"]
