// crowdseg's reference web client: sign in or play as a guest, join a campaign, play a round
// (box -> suggestion on the device or from the server, brush and eraser, undo, submit), see the
// points, level, streak, badges and leaderboard, with live events from the game's socket.
// Submissions that cannot go out wait in IndexedDB and go through the batch endpoint later.

import { Api, ApiError } from "./api.js";
import { boxFrom, fitView, loupePosition, paintStroke, pinch, toImage, toScreen } from "./geometry.js";
import { IdbStore, MemoryStore, Outbox, newKey } from "./queue.js";
import { decode as decodeRle, encode as encodeRle } from "./rle.js";

const params = new URLSearchParams(location.search);
const STATIC = document.querySelector("script[data-static]").dataset.static;
const api = new Api("");
const screen = document.getElementById("screen");
const LOUPE_SIZE = 112;
const LOUPE_ZOOM = 3;
const BRUSH_CSS_PX = 8;

// What tests and the benchmark read (window.crowdseg): never anything the server did not send.
const debug = { timings: [], decodeMs: [], events: [], decoder: "starting", lastSuggestion: null, screen: null, pointerTypes: [], asks: [] };
debug.view = () => play && { scale: play.view.scale, x: play.view.x, y: play.view.y, area: play.mask.reduce((n, v) => n + v, 0) };
debug.outbox = () => outbox.store.all();
debug.socketOpen = () => Boolean(socket && socket.readyState === 1);
debug.decodesOnDevice = () => Boolean(play && decodesOnDevice()); // the worker holds this task's image
window.crowdseg = debug;

const outbox = new Outbox({
  store: "indexedDB" in globalThis ? new IdbStore() : new MemoryStore(),
  sendBatch: (items) => api.batch(items),
  onResult: (item, result) => {
    if (result.status >= 400) toast(`A kept submission was refused: ${(result.error && result.error.message) || result.status}`);
  },
});

// ---------------------------------------------------------------- small DOM helpers

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, "");
    else if (v !== false && v != null) el.setAttribute(k, v);
  }
  for (const c of children.flat()) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

function show(name, ...content) {
  debug.screen = name;
  screen.replaceChildren(...content.flat(Infinity));
  screen.dataset.screen = name;
}

function toast(text) {
  const el = h("div", { class: "toast" }, text);
  document.getElementById("toasts").append(el);
  const shown = document.querySelectorAll(".toast");
  if (shown.length >= 3) shown[0].remove();
  setTimeout(() => el.remove(), 3500);
}

function failure(error) {
  if (error instanceof ApiError && error.status === 401) {
    api.setToken(null);
    return signIn();
  }
  toast(error instanceof TypeError ? "No connection" : error.message);
}

async function updateBadges() {
  document.getElementById("net").hidden = navigator.onLine;
  const waiting = await outbox.size();
  const pill = document.getElementById("outbox");
  pill.hidden = waiting === 0;
  pill.textContent = `${waiting} to send`;
}

async function flushOutbox() {
  if (!api.token || !navigator.onLine || (await outbox.size()) === 0) return updateBadges();
  try {
    const sent = await outbox.flush();
    if (sent) toast(`${sent} kept submission${sent > 1 ? "s" : ""} sent`);
  } catch {
    // still offline, or the server is down: they stay kept
  }
  updateBadges();
}

// ---------------------------------------------------------------- the game socket

let socket = null;
let socketRetry = 1000;
const pendingSuggestions = new Map();

function connectSocket() {
  if (!api.token || (socket && socket.readyState <= 1)) return;
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws/v1/play`;
  socket = new WebSocket(url, ["crowdseg.v1", `crowdseg.token.${api.token}`]);
  socket.onopen = () => (socketRetry = 1000);
  socket.onclose = () => {
    socket = null;
    if (api.token) setTimeout(connectSocket, (socketRetry = Math.min(30000, socketRetry * 2)));
  };
  socket.onmessage = ({ data }) => {
    const message = JSON.parse(data);
    if (message.type === "suggestion" || message.type === "error") {
      const waiting = pendingSuggestions.get(message.id);
      pendingSuggestions.delete(message.id);
      if (waiting) return message.type === "error" ? waiting.reject(new Error(message.error.message)) : waiting.resolve(message);
      return;
    }
    debug.events.push(message);
    const words = {
      "score.settled": () => `Settled: ${message.points} points`,
      "badge.earned": () => `Badge earned: ${message.name || message.badge || message.code}`,
      "round.settled": () => "Your round is settled",
      "round.expiring": () => "A minute left in this round",
      "leaderboard.changed": () => null,
    };
    const text = (words[message.type] || (() => null))();
    if (text) toast(text);
    if (debug.screen === "results" && current.round) results(current.round.id, true);
  };
}

let suggestionIds = 0;
function serverSuggest(task, box) {
  if (socket && socket.readyState === 1) {
    const id = `s${++suggestionIds}`;
    return new Promise((resolve, reject) => {
      pendingSuggestions.set(id, { resolve, reject });
      socket.send(JSON.stringify({ type: "suggest", id, task, box }));
    });
  }
  return api.suggest(task, box);
}

// ---------------------------------------------------------------- the on-device decoder

let worker = null;
let workerReadyTask = null;
let workerIds = 0;
const workerWaiters = new Map();

function startWorker() {
  if (worker || params.get("decoder") === "server" || typeof Worker === "undefined") return;
  try {
    worker = new Worker(`${STATIC}decoder-worker.js`, { type: "module" });
  } catch {
    debug.decoder = "unavailable";
    return;
  }
  worker.postMessage({ type: "init", token: api.token, origin: location.origin, encoding: params.get("embedding") || "int8" });
  worker.onmessage = ({ data }) => {
    if (data.type === "ready") {
      workerReadyTask = data.task;
      debug.decoder = "device";
      debug.decoderThreads = data.threads;
    } else if (data.type === "mask") {
      const waiter = workerWaiters.get(data.id);
      workerWaiters.delete(data.id);
      if (waiter) waiter(data);
      debug.decodeMs.push(data.ms);
      onSuggestion({ task: data.task, box: data.box, mask: data.mask, source: "device", ms: data.ms });
    } else if (data.type === "error") {
      debug.decoder = "server"; // the server's suggest takes over
      debug.decoderError = data.message;
    }
  };
  worker.onerror = () => {
    debug.decoder = "server";
    worker = null;
  };
}

// ---------------------------------------------------------------- screens

function signIn() {
  const form = h(
    "form",
    {
      class: "card",
      onsubmit: async (event) => {
        event.preventDefault();
        try {
          await api.login(form.username.value, form.password.value);
          afterSignIn();
        } catch (error) {
          failure(error);
        }
      },
    },
    h("label", {}, "Username", h("input", { name: "username", autocomplete: "username", required: true })),
    h("label", {}, "Password", h("input", { name: "password", type: "password", autocomplete: "current-password", required: true })),
    h("button", { type: "submit" }, "Sign in"),
  );
  show(
    "signin",
    h("section", { class: "hero" }, h("h1", {}, "Label brains, earn points"), h("p", {}, "Draw a box, let the AI suggest the outline, fix it with your finger.")),
    h("button", { class: "primary", id: "guest", onclick: () => api.guest().then(afterSignIn, failure) }, "Play as guest"),
    h("p", { class: "or" }, "or"),
    form,
  );
}

async function afterSignIn() {
  connectSocket();
  startWorker();
  if (worker) worker.postMessage({ type: "init", token: api.token, origin: location.origin, encoding: params.get("embedding") || "int8" });
  flushOutbox();
  campaigns();
}

async function campaigns() {
  let list, game;
  try {
    [list, game] = await Promise.all([api.campaigns(), api.game()]);
  } catch (error) {
    return failure(error);
  }
  document.getElementById("who").textContent = `${game.pseudonym} · level ${game.level}`;
  show(
    "campaigns",
    h("h2", {}, "Campaigns"),
    list.length ? "" : h("p", {}, "No campaign is open to you yet."),
    list.map((c) =>
      h(
        "article",
        { class: "card campaign" },
        h("h3", {}, c.name),
        h("p", {}, c.description || ""),
        h("p", { class: "meta" }, `${c.round_size} images a round · ${c.player_count} players`),
        h("button", { class: "primary", "data-campaign": c.id, onclick: () => startRound(c) }, c.joined ? "Play" : "Join and play"),
      ),
    ),
  );
}

const current = { campaign: null, round: null, index: 0, images: new Map() };

async function startRound(campaign) {
  try {
    if (!campaign.joined) await api.join(campaign.id);
    current.campaign = campaign;
    current.round = await api.newRound(campaign.id);
    current.index = 0;
  } catch (error) {
    return failure(error);
  }
  // Fetch every image now (the service worker keeps them), so the round plays on offline.
  const loading = current.round.tasks.map(async (task) => {
    current.images.set(task.id, await createImageBitmap(await api.blob(task.image.url)));
    if (task.suggest_url && worker) fetch(`/api/v1/tasks/${task.id}/embedding?encoding=${params.get("embedding") || "int8"}`, { headers: api.headers() }).catch(() => {});
  });
  await Promise.all(loading).catch(failure);
  playTask();
}

// ---------------------------------------------------------------- playing a task

let play = null; // the task being played

function playTask() {
  const task = current.round.tasks[current.index];
  const bitmap = current.images.get(task.id);
  const { width, height } = task.image;
  const canvas = h("canvas", { id: "board", "aria-label": "image to label" });
  const loupe = h("canvas", { id: "loupe", width: LOUPE_SIZE, height: LOUPE_SIZE, hidden: true });
  const tools = ["box", "brush", "eraser"].map((tool) =>
    h("button", { class: "tool", "data-tool": tool, onclick: () => setTool(tool) }, { box: "▭ Box", brush: "✎ Brush", eraser: "⌫ Erase" }[tool]),
  );
  const status = h("span", { id: "status" }, "");
  show(
    "play",
    h("div", { class: "task-head" }, h("b", {}, `${current.index + 1} / ${current.round.tasks.length}`), ` ${task.label_class.name}`, status),
    h("p", { class: "instructions" }, task.instructions || `Outline the ${task.label_class.name}.`),
    h("div", { class: "stage" }, canvas, loupe),
    h(
      "nav",
      { class: "tools" },
      tools,
      h("button", { class: "tool", id: "undo", onclick: () => undo() }, "↶ Undo"),
      h("button", { class: "primary", id: "submit", onclick: () => submit() }, "Submit"),
    ),
  );
  play = {
    task,
    bitmap,
    width,
    height,
    canvas,
    loupe,
    status,
    tools,
    mask: new Uint8Array(width * height),
    history: [],
    tool: task.suggest_url ? "box" : "brush",
    pointers: new Map(),
    gesture: null,
    drag: null,
    suggestion: null, // the last suggestion taken: {mask, box}
    edited: false,
    started: performance.now(),
    overlay: document.createElement("canvas"),
    color: task.label_class.color || "#3fd0a4",
  };
  play.overlay.width = width;
  play.overlay.height = height;
  if (!task.suggest_url) tools[0].disabled = true;
  setTool(play.tool);
  resize();
  attachPointers(canvas);
  if (task.suggest_url && worker) worker.postMessage({ type: "image", task: task.id, size: [height, width] });
  if (task.initial_mask_url) {
    api.initialMask(task.initial_mask_url).then(
      (data) => {
        if (data && play && play.task === task && !play.history.length) {
          play.mask = decodeRle(data.rle);
          redrawOverlay();
        }
      },
      () => {},
    );
  }
}

function setTool(tool) {
  play.tool = tool;
  for (const b of play.tools) b.classList.toggle("active", b.dataset.tool === tool);
}

function resize() {
  const stage = play.canvas.parentElement;
  const cssWidth = stage.clientWidth;
  const cssHeight = Math.max(200, Math.min(stage.clientHeight || cssWidth, cssWidth * 1.25));
  const dpr = window.devicePixelRatio || 1;
  play.canvas.style.width = `${cssWidth}px`;
  play.canvas.style.height = `${cssHeight}px`;
  play.canvas.width = Math.round(cssWidth * dpr);
  play.canvas.height = Math.round(cssHeight * dpr);
  play.dpr = dpr;
  play.view = fitView(play.width, play.height, cssWidth, cssHeight);
  redrawOverlay();
}
addEventListener("resize", () => play && debug.screen === "play" && resize());

function redrawOverlay() {
  const { width, height, mask } = play;
  const ctx = play.overlay.getContext("2d");
  const image = ctx.createImageData(width, height);
  const [r, g, b] = hexColor(play.color);
  for (let i = 0; i < mask.length; i++) {
    if (!mask[i]) continue;
    image.data.set([r, g, b, 110], 4 * i);
  }
  ctx.putImageData(image, 0, 0);
  draw();
}

function hexColor(hex) {
  const v = parseInt(hex.replace("#", "").slice(0, 6), 16);
  return [(v >> 16) & 255, (v >> 8) & 255, v & 255];
}

function draw() {
  const { canvas, view, dpr } = play;
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.imageSmoothingEnabled = false;
  ctx.setTransform(dpr * view.scale, 0, 0, dpr * view.scale, dpr * view.x, dpr * view.y);
  ctx.drawImage(play.bitmap, 0, 0);
  ctx.drawImage(play.overlay, 0, 0);
  const box = play.drag && play.drag.box;
  if (box) {
    ctx.strokeStyle = "#ffd35c";
    ctx.lineWidth = 2 / view.scale;
    ctx.setLineDash([6 / view.scale, 4 / view.scale]);
    ctx.strokeRect(box[0], box[1], box[2] - box[0], box[3] - box[1]);
    ctx.setLineDash([]);
  }
}

function drawLoupe(screenPoint) {
  const { loupe, view } = play;
  const at = toImage(view, screenPoint);
  const ctx = loupe.getContext("2d");
  const span = LOUPE_SIZE / (LOUPE_ZOOM * view.scale); // image pixels across the loupe
  ctx.imageSmoothingEnabled = false;
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, LOUPE_SIZE, LOUPE_SIZE);
  const sx = at.x - span / 2;
  const sy = at.y - span / 2;
  ctx.drawImage(play.bitmap, sx, sy, span, span, 0, 0, LOUPE_SIZE, LOUPE_SIZE);
  ctx.drawImage(play.overlay, sx, sy, span, span, 0, 0, LOUPE_SIZE, LOUPE_SIZE);
  ctx.strokeStyle = "#ffd35c";
  ctx.lineWidth = 1;
  ctx.beginPath();
  ctx.moveTo(LOUPE_SIZE / 2, 0);
  ctx.lineTo(LOUPE_SIZE / 2, LOUPE_SIZE);
  ctx.moveTo(0, LOUPE_SIZE / 2);
  ctx.lineTo(LOUPE_SIZE, LOUPE_SIZE / 2);
  ctx.stroke();
  const place = loupePosition(screenPoint, LOUPE_SIZE, play.canvas.clientWidth);
  loupe.style.left = `${place.x}px`;
  loupe.style.top = `${place.y}px`;
  loupe.hidden = false;
}

function attachPointers(canvas) {
  const local = (event) => {
    const rect = canvas.getBoundingClientRect();
    return { x: event.clientX - rect.left, y: event.clientY - rect.top };
  };
  canvas.addEventListener("pointerdown", (event) => {
    event.preventDefault();
    canvas.setPointerCapture(event.pointerId);
    debug.pointerTypes.push(event.pointerType);
    play.pointers.set(event.pointerId, local(event));
    if (play.pointers.size === 2) {
      // A second finger: pan and zoom, and whatever the first finger began is undone.
      cancelDrag();
      const [a, b] = play.pointers.values();
      play.gesture = { a, b, view: play.view };
      play.loupe.hidden = true;
    } else if (play.pointers.size === 1) {
      beginDrag(local(event), event.timeStamp);
    }
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!play.pointers.has(event.pointerId)) return;
    const point = local(event);
    play.pointers.set(event.pointerId, point);
    if (play.gesture) {
      const [a, b] = play.pointers.values();
      play.view = pinch(play.gesture.view, play.gesture.a, play.gesture.b, a, b);
      draw();
    } else if (play.drag) {
      moveDrag(point);
    }
  });
  // pointermove waits for the next frame; pointerrawupdate comes as soon as the finger moves
  // (where the browser has it: a secure context). A box drag asks the device's decoder there, so
  // it starts a frame or two sooner; the drawing still follows pointermove. (Asked this early,
  // a tenth of the server's answers took 150 ms rather than 65 in bench/client.py, so the
  // server is asked on pointermove.)
  canvas.addEventListener("pointerrawupdate", (event) => {
    const drag = play.drag;
    if (!drag || drag.tool !== "box" || play.gesture || !play.pointers.has(event.pointerId)) return;
    if (!decodesOnDevice()) return;
    const box = boxFrom(drag.start, toImage(play.view, local(event)), play.width, play.height);
    if (!box) return;
    drag.box = box; // before the answer can arrive: onSuggestion takes answers for the drag's box
    askForBox(drag, box, "pointerrawupdate");
  });
  const end = (event) => {
    if (!play.pointers.delete(event.pointerId)) return;
    if (play.gesture) {
      if (play.pointers.size === 0) play.gesture = null;
      return;
    }
    if (play.drag) endDrag();
  };
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointercancel", end);
}

function beginDrag(point, timeStamp) {
  const at = toImage(play.view, point);
  play.drag = { tool: play.tool, start: at, last: at, before: play.mask.slice(), box: null, began: timeStamp, painted: false };
  if (play.drag.tool !== "box") stroke(at);
  drawLoupe(point);
}

function moveDrag(point) {
  const at = toImage(play.view, point);
  const drag = play.drag;
  if (drag.tool === "box") {
    drag.box = boxFrom(drag.start, at, play.width, play.height);
    if (drag.box) askForBox(drag, drag.box, "pointermove");
  } else {
    stroke(at);
  }
  drag.last = at;
  draw();
  drawLoupe(point);
}

function stroke(at) {
  const drag = play.drag;
  const radius = BRUSH_CSS_PX / play.view.scale;
  paintStroke(play.mask, play.width, play.height, drag.last, at, radius, drag.tool === "brush" ? 1 : 0);
  play.edited = true;
  redrawOverlay();
}

function endDrag() {
  const drag = play.drag;
  play.loupe.hidden = true;
  if (drag.tool === "box" && drag.box) askForBox(drag, drag.box, "pointerup");
  if (drag.tool !== "box" || drag.box) play.history.push(drag.before);
  if (drag.tool === "box") play.boxDone = drag;
  play.drag = null;
  draw();
}

function cancelDrag() {
  if (!play.drag) return;
  play.mask = play.drag.before;
  play.drag = null;
  redrawOverlay();
}

function undo() {
  if (!play.history.length) return;
  play.mask = play.history.pop();
  play.suggestion = null;
  redrawOverlay();
}

/** Ask once for each box a drag passes through: pointerrawupdate, pointermove and the lift
 *  report the same box, and a second decode of it would only delay the next one. ``via``: the
 *  event that asked (window.crowdseg.asks keeps the last 50, for the tests). */
function askForBox(drag, box, via) {
  const key = box.join();
  if (drag.asked === key) return;
  drag.asked = key;
  debug.asks = [...debug.asks.slice(-49), via];
  requestSuggestion(box);
}

// A suggestion for the current box: on the device when its decoder holds this image, else from
// the server (one request at a time; the newest box waits, older ones are dropped).
let serverBusy = false;
let serverNext = null;

function decodesOnDevice() {
  return Boolean(worker && workerReadyTask === play.task.id && debug.decoder === "device");
}

function requestSuggestion(box) {
  const task = play.task.id;
  if (decodesOnDevice()) {
    worker.postMessage({ type: "decode", id: ++workerIds, box });
    return;
  }
  serverNext = { task, box };
  if (!serverBusy) pumpServer();
}

async function pumpServer() {
  serverBusy = true;
  while (serverNext) {
    const { task, box } = serverNext;
    serverNext = null;
    try {
      const answer = await serverSuggest(task, box);
      onSuggestion({ task, box, mask: decodeRle(answer.rle), source: "server", ms: answer.server_ms });
    } catch (error) {
      if (!(error instanceof TypeError)) play.status.textContent = error.message;
    }
  }
  serverBusy = false;
}

function onSuggestion({ task, box, mask, source }) {
  if (!play || play.task.id !== task) return;
  const drag = play.drag || play.boxDone;
  if (!drag || drag.tool !== "box" || !drag.box) return;
  const latest = drag.box;
  play.mask = mask;
  play.suggestion = { box, mask: mask.slice() };
  play.edited = false;
  play.status.textContent = source === "device" ? " · on device" : " · server";
  debug.lastSuggestion = { task, box, source, latest: latest.join() === box.join(), rle: encodeRle(mask, play.height, play.width) };
  redrawOverlay();
  if (!drag.painted) {
    drag.painted = true;
    const began = drag.began;
    requestAnimationFrame(() => debug.timings.push({ source, ms: performance.now() - began }));
  }
}

// ---------------------------------------------------------------- submitting

async function submit() {
  const { task } = play;
  const suggestionUse = !play.suggestion ? "none" : play.edited || !sameMask(play.suggestion.mask, play.mask) ? "edited" : "accepted";
  const body = {
    rle: encodeRle(play.mask, play.height, play.width),
    time_spent_ms: Math.round(performance.now() - play.started),
    suggestion_use: suggestionUse,
    ...(play.suggestion ? { prompt: { box: play.suggestion.box } } : {}),
  };
  const key = newKey();
  const item = { ...body, round: current.round.id, task: task.id, idempotency_key: key };
  const button = document.getElementById("submit");
  button.disabled = true;
  let answer = null;
  try {
    if (!navigator.onLine) throw new TypeError("offline");
    answer = await api.submit(current.round.id, task.id, body, key);
  } catch (error) {
    if (error instanceof TypeError || (error instanceof ApiError && (error.status >= 500 || error.status === 429))) {
      await outbox.add(item); // kept with its key: sent once, whenever the connection returns
      toast("Kept on the phone; it goes out when you are back online");
    } else {
      button.disabled = false;
      return failure(error);
    }
  }
  task.submitted = true;
  task.points = answer ? answer.points : null;
  if (answer) toast(`+${answer.points} points (provisional)`);
  updateBadges();
  current.index += 1;
  if (current.index < current.round.tasks.length) playTask();
  else results(current.round.id);
}

function sameMask(a, b) {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

async function results(roundId, quiet = false) {
  await flushOutbox();
  let round, game, board;
  try {
    [round, game, board] = await Promise.all([api.round(roundId), api.game(), api.leaderboard(current.campaign && current.campaign.id)]);
  } catch (error) {
    if (quiet) return;
    show("results", h("h2", {}, "Round done"), h("p", {}, "Your answers are kept on the phone and go out when you are back online."), again());
    return;
  }
  document.getElementById("who").textContent = `${game.pseudonym} · level ${game.level}`;
  const total = round.tasks.reduce((sum, t) => sum + (t.points || 0), 0);
  const settled = round.tasks.every((t) => t.status === "settled");
  show(
    "results",
    h("h2", {}, round.settled ? "Round settled" : "Round done"),
    h("p", { class: "total", id: "total" }, `${total} points`, h("small", {}, settled ? " settled" : " provisional")),
    h(
      "ol",
      { class: "tasks" },
      round.tasks.map((t) => h("li", { "data-status": t.status || "none" }, `${t.label_class.name}: `, t.points == null ? "—" : `${t.points}`, h("small", {}, ` ${t.status || "not sent"}`))),
    ),
    h(
      "section",
      { class: "card stats" },
      h("div", {}, h("b", { id: "level" }, `Level ${game.level}`), ` · ${game.xp} XP (next at ${game.xp_for_next_level})`),
      h("div", {}, `Streak ${game.streak} day${game.streak === 1 ? "" : "s"} · best ${game.best_streak}`),
      h("div", { class: "badges" }, game.badges.map((b) => h("span", { class: b.earned_at ? "badge earned" : "badge", title: b.description }, b.name))),
    ),
    h(
      "section",
      { class: "card" },
      h("h3", {}, "Leaderboard"),
      board.top.length ? "" : h("p", { class: "meta" }, "No settled points yet: the board fills as rounds settle."),
      h(
        "ol",
        { class: "board" },
        board.top.map((row) => h("li", { class: row.is_me ? "me" : "" }, h("span", {}, `${row.rank}. ${row.pseudonym}`), h("span", {}, row.points))),
      ),
      board.me ? h("p", { class: "meta" }, `You: #${board.me.rank} with ${board.me.points}`) : "",
    ),
    again(),
  );
}

function again() {
  return h(
    "div",
    { class: "row" },
    h("button", { class: "primary", id: "next-round", onclick: () => startRound({ ...current.campaign, joined: true }) }, "Next round"),
    h("button", { onclick: () => campaigns() }, "Campaigns"),
  );
}

// ---------------------------------------------------------------- start

addEventListener("online", () => {
  connectSocket();
  flushOutbox();
});
addEventListener("offline", updateBadges);
setInterval(flushOutbox, 5000);

if ("serviceWorker" in navigator && params.get("sw") !== "off") {
  navigator.serviceWorker.register("sw.js", { scope: "./" }).catch(() => {});
}
updateBadges();
if (api.token) afterSignIn();
else signIn();
