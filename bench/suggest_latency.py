"""Suggestion latency through the real HTTP endpoint, next to what a naive integration does.

Starts the ASGI server (daphne, embedded default) on loopback, logs in as an app client and sends
box prompts to POST /api/v1/tasks/{id}/suggest on a cached embedding. Reports server time (what
the endpoint spends, from its answer) and round-trip time, next to, in this process:
- encode per request: the encoder and the decoder for every prompt (what a naive integration does);
- torch eager decoding: the same prompt decoded by the torch modules;
- the ONNX decoder alone (from the image's kept context), the context per image, and the
  encoder per image.

    .venv/bin/python bench/suggest_latency.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._server import MODEL_DIR, Server, percentile  # noqa: E402

SETUP = """
import io, json
from PIL import Image as P
from accounts.services import user_ensure
from annotations import services as a
from annotations.io.samples import sample_images
from annotations.models import Dataset
from inference import services as inference
user, _ = user_ensure(username="bench", password="bench-password-123", role="researcher")
dataset = Dataset.objects.filter(name="bench").first()
dataset = dataset or a.dataset_create(name="bench", owner=user, label_classes=["brain"])
buf = io.BytesIO()
P.fromarray(sample_images()[0]).save(buf, format="PNG")
result = a.images_import(dataset=dataset, sources=[a.BytesSource("brain.png", buf.getvalue())])
image = (result.created or list(dataset.images.all()))[0]
embedding = inference.embedding_compute(embedding_id=inference.embedding_request(image=image).pk)
print("SETUP " + json.dumps({"task": str(image.tasks.get().pk), "height": image.height, "width": image.width,
                             "status": embedding.status}))
"""


def boxes(count: int, height: int, width: int, seed: int = 0) -> list[list[float]]:
    """Boxes of many sizes anywhere in the image, as people draw them."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        bw, bh = rng.uniform(0.15, 0.9) * width, rng.uniform(0.15, 0.9) * height
        x0, y0 = rng.uniform(0, width - bw), rng.uniform(0, height - bh)
        out.append([round(x0, 1), round(y0, 1), round(x0 + bw, 1), round(y0 + bh, 1)])
    return out


def timed(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer prompts (under a minute)")
    args = parser.parse_args()
    prompts = 100 if args.quick else 1000
    naive_prompts = 3 if args.quick else 20

    server = Server({"CROWDSEG_SUGGEST_RATE": "1000000/min"})  # measure the endpoint, not the throttle
    server.manage("export_medsam")  # once per machine; reused afterwards
    server.manage("migrate", "--no-input")
    setup = json.loads(server.manage("shell", stdin=SETUP).split("SETUP ", 1)[1])
    assert setup["status"] == "ready", setup
    server.start()
    try:
        token = server.login("bench", "bench-password-123")
        conn = server.connection()
        path = f"/api/v1/tasks/{setup['task']}/suggest"
        prompt_boxes = boxes(prompts + 20, setup["height"], setup["width"])
        for box in prompt_boxes[:20]:  # warm-up: sessions, caches, connection
            server.request("POST", path, {"box": box}, token, conn)
        server_ms, roundtrip_ms = [], []
        for box in prompt_boxes[20:]:
            started = time.perf_counter()
            status, body, _ = server.request("POST", path, {"box": box}, token, conn)
            roundtrip_ms.append((time.perf_counter() - started) * 1000)
            if status != 200:
                raise RuntimeError(f"suggest answered {status}: {body}")
            server_ms.append(body["server_ms"])
        conn.close()
    finally:
        server.stop()

    # In this process: the same model, without HTTP.
    from annotations.io.samples import sample_images
    from inference.engine.medsam import Manifest, MedSAMDecoder, MedSAMEncoder, validate_prompt
    from inference.export import TorchMedSAM

    manifest = Manifest.load(MODEL_DIR)
    encoder, decoder = MedSAMEncoder(manifest), MedSAMDecoder(manifest)
    image = sample_images()[0]
    size = image.shape[:2]
    embedding = encoder.embed(image)
    context = decoder.context(embedding, size)
    local_boxes = prompt_boxes[20 : 20 + (30 if args.quick else 200)]
    prompts_v = [validate_prompt(original_size=size, box=b) for b in local_boxes]
    decoder_ms = [t for p in prompts_v for t in timed(lambda p=p: decoder.predict(context, size, p), 1)]
    context_ms = timed(lambda: decoder.context(embedding, size), 10 if args.quick else 50)
    encoder_ms = timed(lambda: encoder.embed(image), 3 if args.quick else 10)
    naive_ms = [
        t
        for p in prompts_v[:naive_prompts]
        for t in timed(lambda p=p: decoder.predict(encoder.embed(image), size, p), 1)
    ]
    torch_model = TorchMedSAM.litemedsam()
    torch_embedding = torch_model.embed(image)
    torch_ms = [t for p in prompts_v for t in timed(lambda p=p: torch_model.predict(torch_embedding, size, p), 1)]

    figures = {
        "decoder_p50_ms": round(statistics.median(server_ms), 2),
        "decoder_p95_ms": round(percentile(server_ms, 95), 2),
        "roundtrip_p50_ms": round(statistics.median(roundtrip_ms), 2),
        "roundtrip_p95_ms": round(percentile(roundtrip_ms, 95), 2),
        "speedup_vs_encode_per_request": round(statistics.median(naive_ms) / statistics.median(server_ms), 1),
        "encoder_s_per_image": round(statistics.median(encoder_ms) / 1000, 3),
        "torch_eager_decode_p50_ms": round(statistics.median(torch_ms), 2),
        "onnx_decode_in_process_p50_ms": round(statistics.median(decoder_ms), 2),
        "context_per_image_p50_ms": round(statistics.median(context_ms), 2),
        "encode_per_request_p50_ms": round(statistics.median(naive_ms), 1),
        "prompts": prompts,
        "model_version": manifest.version,
    }
    print(f"{prompts} box prompts over HTTP (keep-alive, loopback), model {manifest.version}")
    print(f"{'what':<42}{'p50 ms':>10}{'p95 ms':>10}")
    rows = [
        ("suggest endpoint, server time", server_ms),
        ("suggest endpoint, round trip", roundtrip_ms),
        ("ONNX decoder alone (in process)", decoder_ms),
        ("decoder context, once per image", context_ms),
        ("torch eager decoding (in process)", torch_ms),
        ("encode per request + decode (naive)", naive_ms),
        ("encoder per image", encoder_ms),
    ]
    for name, values in rows:
        print(f"{name:<42}{statistics.median(values):10.2f}{percentile(values, 95):10.2f}")
    print(
        f"server time is {figures['speedup_vs_encode_per_request']}x faster than encoding per request; "
        f"torch eager decoding is {figures['torch_eager_decode_p50_ms'] / figures['decoder_p50_ms']:.1f}x the "
        "server time"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
