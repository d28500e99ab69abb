"""The reference web client (``client/``), served at ``/play/``.

The page is the app shell: the client's modules are static files (``/static/client/``, served by
WhiteNoise, with onnxruntime-web's wasm build under ``/static/client/ort/``, copied there from
``client/node_modules`` by ``scripts/bootstrap``). The service worker must be served from
``/play/`` itself to control the pages under it (a worker's scope is the folder of its URL), so
it is answered here, with the list of shell files it caches and a version that changes whenever
any of them does (a new version replaces the old cache). The page and the client's files are
cross-origin isolated (COOP/COEP), so the on-device decoder runs on several wasm threads.
"""

from __future__ import annotations

import functools
import hashlib
import json

from django.conf import settings
from django.http import HttpResponse
from django.shortcuts import render
from django.templatetags.static import static
from django.views.decorators.http import require_safe

CLIENT_SOURCES = settings.BASE_DIR / "client" / "src"
CLIENT_VENDOR = settings.BASE_DIR / "client" / "vendor"
ORT_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")


@functools.cache
def shell() -> tuple[str, list[str]]:
    """(version, static URLs of the app shell): every client module, the page's assets and the
    decoder runtime. The version hashes their contents."""
    digest = hashlib.sha256()
    urls = []
    for path in sorted(p for p in CLIENT_SOURCES.rglob("*") if p.is_file() and p.name != "sw.js"):
        name = path.relative_to(CLIENT_SOURCES).as_posix()
        digest.update(name.encode() + b"\0" + path.read_bytes())
        urls.append(static(f"client/{name}"))
    for name in ORT_FILES:
        path = CLIENT_VENDOR / "ort" / name
        if path.exists():  # without npm there is no runtime to cache: suggestions come from the server
            digest.update(name.encode() + b"\0" + str(path.stat().st_size).encode())
            urls.append(static(f"client/ort/{name}"))
    digest.update((CLIENT_SOURCES / "sw.js").read_bytes())
    digest.update((CLIENT_SOURCES.parent / "package-lock.json").read_bytes())  # a new onnxruntime-web
    return digest.hexdigest()[:16], urls


@require_safe
def play(request):
    """The client's page (no data of anyone's: the app signs in and fetches the rest)."""
    version, _ = shell()
    response = render(request, "play/index.html", {"version": version})
    # Cross-origin isolation: the decoder's wasm may then use threads (SharedArrayBuffer). The page
    # loads nothing from another origin, so it gives nothing up.
    response["Cross-Origin-Opener-Policy"] = "same-origin"
    response["Cross-Origin-Embedder-Policy"] = "require-corp"
    return response


@require_safe
def service_worker(request):
    """The client's service worker, told what to cache (``SHELL``) under which name (``VERSION``)."""
    version, urls = shell()
    play_url = request.path.rsplit("/", 1)[0] + "/"
    preamble = f"const VERSION = {json.dumps(version)};\nconst SHELL = {json.dumps([play_url, *urls])};\n"
    body = preamble + (CLIENT_SOURCES / "sw.js").read_text()
    response = HttpResponse(body, content_type="text/javascript; charset=utf-8")
    response["Cache-Control"] = "no-cache"  # the browser checks for a new client on every visit
    return response
