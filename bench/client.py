"""The web client's suggestion latency, in the browser, over loopback: from the first touch of a
box drag to the suggestion painted on the canvas, on the device (onnxruntime-web's wasm in a Web
Worker, on up to four threads) and from the server (the game socket's ``suggest``), side by side.

Starts daphne on the embedded default with the quickstart's model (``var/models/litemedsam``,
exported on first use), a player in a campaign over one MNI slice (233 x 197), and Debian's
chromium (``CROWDSEG_CHROMIUM``, default ``/usr/bin/chromium``) with a phone profile (360 x 640,
touch). Each drag is a real touch (Chrome DevTools' ``Input.dispatchTouchEvent``): a touch start
at one corner, one move to the other, wait for the page to report the suggestion painted (the
animation frame after the mask was drawn), lift. The page measures from the touch start event's
timestamp. Blocks of drags alternate between the two paths so both see the same machine.

    .venv/bin/python bench/client.py [--quick]

Prints p50/p95 of each path and their ratio; the last line is JSON with ``device_p50_ms``,
``device_p95_ms``, ``server_p50_ms``, ``server_p95_ms``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._server import Server, percentile  # noqa: E402

SETUP = """
import io, json
from PIL import Image as P
from accounts.services import user_ensure
from annotations import services as a
from annotations.io.samples import sample_images
from annotations.models import Dataset
from gamification import services as game
from inference import services as inference
owner, _ = user_ensure(username="bench", password="bench-password-123", role="researcher")
for name in ("phone-device", "phone-server"):  # one open round each
    user_ensure(username=name, password="bench-password-123", role="volunteer")
dataset = a.dataset_create(name="bench", owner=owner, label_classes=["brain"])
buf = io.BytesIO()
P.fromarray(sample_images()[0]).save(buf, format="PNG")
image = a.images_import(dataset=dataset, sources=[a.BytesSource("brain.png", buf.getvalue())]).created[0]
inference.embedding_compute(embedding_id=inference.embedding_request(image=image).pk)
game.campaign_create(owner=owner, dataset=dataset, name="bench", label_classes=list(dataset.label_classes.all()),
                     round_size=1, suggestion_withheld_share=0)
print("SETUP ok")
"""

PHONE = {
    "viewport": {"width": 360, "height": 640},
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
}


class Phone:
    """One page of the client, signed in, on its round's first task."""

    def __init__(self, browser, base: str, token: str, decoder: str) -> None:
        """``decoder``: "device" or "server"; ``token``: a player's session token."""
        self.context = browser.new_context(**PHONE)
        self.page = self.context.new_page()
        self.page.set_default_timeout(60_000)
        self.page.on("pageerror", lambda error: print(f"{decoder} page error: {error}", file=sys.stderr))
        self.page.on("response", lambda r: r.status >= 400 and print(f"{decoder}: {r.status} {r.url}", file=sys.stderr))
        self.page.goto(f"{base}/play/?sw=off&decoder={decoder}")
        self.page.evaluate("token => localStorage.setItem('crowdseg.token', token)", token)
        self.page.goto(f"{base}/play/?sw=off&decoder={decoder}")
        self.page.click("[data-campaign]")
        self.page.wait_for_selector("#board")
        if decoder == "device":
            self.page.wait_for_function("window.crowdseg.decoder === 'device'")
        else:
            self.page.wait_for_function("window.crowdseg.socketOpen()")
        self.cdp = self.context.new_cdp_session(self.page)
        self.board = self.page.locator("#board").bounding_box()

    def touch(self, kind: str, points) -> None:
        self.cdp.send(
            "Input.dispatchTouchEvent",
            {"type": kind, "touchPoints": [{"x": x, "y": y, "id": i} for i, (x, y) in enumerate(points)]},
        )

    def drag(self, box) -> float:
        """One box drag over the board (``box`` as fractions of it); the page's milliseconds from
        the touch start to the suggestion painted."""
        b = self.board
        x0, y0, x1, y1 = (b["x"] + b["width"] * box[0], b["y"] + b["height"] * box[1],
                          b["x"] + b["width"] * box[2], b["y"] + b["height"] * box[3])  # fmt: skip
        count = self.page.evaluate("window.crowdseg.timings.length")
        self.touch("touchStart", [(x0, y0)])
        self.touch("touchMove", [(x1, y1)])
        self.page.wait_for_function(f"window.crowdseg.timings.length > {count}", polling="raf")
        self.touch("touchEnd", [])
        self.page.wait_for_timeout(60)  # a person's pause; keeps the socket under its 20 a second
        return self.page.evaluate(f"window.crowdseg.timings[{count}].ms")


def boxes(count: int, seed: int = 0) -> list[list[float]]:
    """Boxes of many sizes over the board, as fractions of it."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        w, h = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.7)
        x, y = rng.uniform(0.05, 0.95 - w), rng.uniform(0.1, 0.9 - h)
        out.append([x, y, x + w, y + h])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="40 drags a path instead of 200 (under a minute)")
    args = parser.parse_args()
    drags = 40 if args.quick else 200
    chromium = os.environ.get("CROWDSEG_CHROMIUM") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        sys.exit(f"chromium not found at {chromium}: apt-get install chromium, or set CROWDSEG_CHROMIUM")

    from playwright.sync_api import sync_playwright

    server = Server()
    server.manage("export_medsam")  # once per machine; reused afterwards
    server.manage("migrate", "--no-input")
    server.manage("collectstatic", "--no-input", "--verbosity", "0")  # the client, served by WhiteNoise
    if "SETUP ok" not in server.manage("shell", "-c", SETUP):
        sys.exit("setup failed")
    server.start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            phones = {
                path: Phone(browser, base, server.login(f"phone-{path}", "bench-password-123"), path)
                for path in ("device", "server")
            }
            for phone in phones.values():  # warm up: the first decode loads the sessions' caches
                for box in boxes(5, seed=99):
                    phone.drag(box)
            times: dict[str, list[float]] = {"device": [], "server": []}
            plan = boxes(drags)
            block = 20
            for start in range(0, drags, block):
                for path, phone in phones.items():
                    times[path] += [phone.drag(box) for box in plan[start : start + block]]
                print(f"{start + block} of {drags} drags a path", file=sys.stderr, flush=True)
            decode_ms = phones["device"].page.evaluate("window.crowdseg.decodeMs")
            browser.close()
    finally:
        server.stop()

    figures = {}
    for path, values in times.items():
        figures[f"{path}_p50_ms"] = round(percentile(values, 50), 2)
        figures[f"{path}_p95_ms"] = round(percentile(values, 95), 2)
        print(
            f"{path:6s}: p50 {figures[f'{path}_p50_ms']:6.2f} ms  p95 {figures[f'{path}_p95_ms']:6.2f} ms  "
            f"mean {statistics.fmean(values):6.2f} ms  ({len(values)} drags)"
        )
    print(f"of which the worker's decode (graph + mask): p50 {percentile(decode_ms, 50):.2f} ms")
    ratio = figures["server_p50_ms"] / figures["device_p50_ms"]
    print(f"server / device p50: {ratio:.2f}x; bar: device p95 <= 50 ms "
          f"({'met' if figures['device_p95_ms'] <= 50 else 'missed'})")  # fmt: skip
    print(json.dumps({**figures, "drags": drags, "server_over_device_p50": round(ratio, 2)}))


if __name__ == "__main__":
    main()
