"""Events of a real event framework (FastStream, on aiokafka), traced with default settings.

FastStream writes its own headers (`correlation_id`, a UUID it generates,
carried from a handler's input to its output; `content-type`) and its
subscribers commit as their own consumer group. Nothing here is configured
for lagdeck: `lagdeck trace <that correlation id>` must follow the order
across both topics and mark the group's processed / pending events right.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from console.cli import main
from tests.conftest import create_topics

integration = pytest.mark.integration


async def _pipeline(bootstrap: str, orders: str, stock: str, group: str) -> str:
    from faststream.kafka import KafkaBroker, KafkaMessage

    broker = KafkaBroker(bootstrap, logger=None)
    seen: list[str] = []
    handled = asyncio.Event()

    @broker.subscriber(orders, group_id=group, auto_offset_reset="earliest",
                       session_timeout_ms=6000, heartbeat_interval_ms=500)
    @broker.publisher(stock)
    async def reserve(body: dict, message: KafkaMessage) -> dict:
        seen.append(message.correlation_id)
        handled.set()
        return {"event": "StockReserved", "orderId": body["orderId"]}

    await broker.start()
    try:
        await broker.publish({"event": "OrderPlaced", "orderId": "ord_fs"}, orders)
        await asyncio.wait_for(handled.wait(), 60)
        await asyncio.sleep(0)  # let the handler's publish go out
    finally:
        await broker.stop()  # commits the group's offsets
    # The service is down; a retry of the same order arrives and waits for it.
    late = KafkaBroker(bootstrap, logger=None)
    await late.start()
    try:
        await late.publish({"event": "OrderRetried", "orderId": "ord_fs"}, orders,
                           correlation_id=seen[0])
    finally:
        await late.stop()
    return seen[0]


@integration
def test_trace_follows_faststream_events_with_default_settings(bootstrap, names,
                                                               capsys) -> None:
    orders, stock, group = names("fs-orders"), names("fs-stock"), names("fs-inventory")
    create_topics(bootstrap, orders, stock)
    correlation = asyncio.run(_pipeline(bootstrap, orders, stock, group))
    capsys.readouterr()
    code = main(["-b", bootstrap, "trace", correlation, "--topics", f"^({orders}|{stock})$",
                 "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    events = json.loads(out)["events"]
    got = [(e["topic"], e["offset"], e["correlation_id"], e["consumers"]) for e in events]
    assert got == [
        (orders, 0, correlation, {group: "processed"}),
        (stock, 0, correlation, {}),
        (orders, 1, correlation, {group: "pending"}),
    ]
    assert events[0]["value"] == {"event": "OrderPlaced", "orderId": "ord_fs"}
    assert "found_in" not in events[0]  # a default header name, indexed
