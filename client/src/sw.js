// The client's service worker (served at /play/sw.js, which prepends VERSION and SHELL).
// The app shell and the decoder runtime: cached on install, answered from the cache.
// A round's images, embeddings and the decoder graphs: cached as the app fetches them (their
// bytes never change under a URL), so a round started online plays on offline.
// Everything else (the API) goes to the network untouched: the app keeps what it could not send.

/* global VERSION, SHELL */
const SHELL_CACHE = `crowdseg-shell-${VERSION}`;
const DATA_CACHE = "crowdseg-data-v1";

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(SHELL_CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((names) => Promise.all(names.filter((n) => n.startsWith("crowdseg-shell-") && n !== SHELL_CACHE).map((n) => caches.delete(n))))
      .then(() => self.clients.claim()),
  );
});

function kept(url) {
  return (
    url.pathname.startsWith("/media/") ||
    url.pathname.startsWith("/api/v1/models/decoders/") ||
    /^\/api\/v1\/tasks\/[^/]+\/embedding$/.test(url.pathname)
  );
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") return;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return;
  if (SHELL.includes(url.pathname)) {
    // The shell: the cache first, the network only for what is missing.
    event.respondWith(caches.match(request, { ignoreSearch: true }).then((hit) => hit || fetch(request)));
  } else if (kept(url)) {
    event.respondWith(
      caches.open(DATA_CACHE).then(async (cache) => {
        const hit = await cache.match(request);
        if (hit) return hit;
        const response = await fetch(request);
        if (response.ok) await cache.put(request, response.clone());
        return response;
      }),
    );
  }
});
