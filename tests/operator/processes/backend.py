"""A scripted TGI-compatible backend, run as its own process by the handover test: it plays
either the unified model's inference server or an old per-task service.

    python tests/operator/processes/backend.py

It answers /generate and / with the label whose keyword the input holds (the keywords of the
test data: great -> positive, deliver -> shipping, ...). Once told to (POST /control/disagree),
it answers another label for every other request: an old service that disagrees with the
unified model on a controlled half of the traffic. Prints its port, then serves.
"""

from __future__ import annotations

import argparse
import asyncio

from aiohttp import web

KEYWORDS = {"great": "positive", "awful": "negative", "refund": "refund",
            "deliver": "shipping", "login": "account"}
OTHER = {"positive": "negative", "negative": "positive", "refund": "shipping",
         "shipping": "account", "account": "refund"}


def main() -> None:
    argparse.ArgumentParser().parse_args()
    seen, disagree = 0, False

    async def generate(request: web.Request) -> web.Response:
        nonlocal seen
        seen += 1
        text = str((await request.json()).get("inputs", ""))
        label = next((v for k, v in KEYWORDS.items() if k in text), "positive")
        if disagree and seen % 2 == 0:
            label = OTHER[label]
        return web.json_response({"generated_text": label})

    async def ok(request: web.Request) -> web.Response:
        return web.json_response({})

    async def start_disagreeing(request: web.Request) -> web.Response:
        nonlocal disagree
        disagree = True
        return web.json_response({})

    async def serve() -> None:
        app = web.Application()
        app.add_routes([web.post("/generate", generate), web.post("/", generate),
                        web.get("/health", ok), web.get("/info", ok),
                        web.post("/control/disagree", start_disagreeing)])
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        print(runner.addresses[0][1], flush=True)
        await asyncio.Event().wait()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
