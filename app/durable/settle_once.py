"""Settling a promise, and learning whether this call is the one that settled it.

Resonate's settle is first write wins, and it answers a settle that found the promise
settled just as it answers the one that settled it: with the stored record. Its settle
request takes no idempotency key. So two callbacks racing with the same value get the
same answer, and each would tell its caller that it recorded the value.

Each settle here therefore writes a key of its own into the value's headers: the
protocol stores a value's headers with its data and returns them with the record (the
in-process server and resonate-pg do, tests/test_callback_settle.py races them), and
the SDK does not read them when it decodes a value.
The call whose key comes back is the one whose write was kept; any other found the
promise already settled, by another call or by anything that writes no key. The settle
goes through the SDK's own sender and codec (``Promises.resolve`` drops headers);
tests/test_resonate_adapter.py fails if the SDK stops carrying them.
"""

from __future__ import annotations

import uuid
from typing import Any, NamedTuple

from resonate.core import SettleState
from resonate.promises import Promises
from resonate.types import PromiseRecord, PromiseSettleReq, Value

#: The value header naming the settle call whose write is stored.
SETTLED_BY = "dara:settled-by"


class Settled(NamedTuple):
    """The promise as the settle left it (its value decoded), and whether this call wrote it."""

    record: PromiseRecord
    won: bool


async def settle_once(promises: Promises, promise_id: str, state: SettleState, data: Any) -> Settled:
    """Settle ``promise_id`` as ``state`` with ``data``, as ``promises.resolve`` or
    ``reject`` would, and say whether this call's write is the one Resonate kept."""
    key = uuid.uuid4().hex
    value = Value(headers={SETTLED_BY: key}, data=promises.codec.encode(data).data)
    stored = await promises.sender.promise_settle(PromiseSettleReq(id=promise_id, state=state, value=value))
    record = promises.codec.decode_promise(stored)
    return Settled(record, (record.value.headers or {}).get(SETTLED_BY) == key)
