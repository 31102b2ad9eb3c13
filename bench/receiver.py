"""A minimal webhook receiver for bench.run_webhooks: answers 204 and writes each webhook-id
to the file named by CX_RECEIVER_LOG (one per line)."""

from __future__ import annotations

import os
from typing import Any

LOG = open(os.environ["CX_RECEIVER_LOG"], "a", buffering=1)  # noqa: SIM115 (lives with the process)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    for name, value in scope["headers"]:
        if name == b"webhook-id":
            LOG.write(value.decode() + "\n")
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})
