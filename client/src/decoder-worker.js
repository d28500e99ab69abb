// On-device MedSAM decoding in a Web Worker: onnxruntime-web (wasm, threaded when isolated) runs the
// server's two decoder graphs on the task's embedding, so a dragging finger gets its mask without
// a round trip. Messages in: {type: "init", token, origin}, {type: "image", task, size},
// {type: "decode", id, box}; out: {type: "ready", task, threads}, {type: "mask", id, task, mask, ms}, {type: "error"}.
// A decode that arrives while one runs replaces any waiting one: only the newest box matters.

import * as ort from "./ort/ort.wasm.min.mjs";
import { boxPrompt, cropTokens, decodedTokens, maskFromLowRes, parseEmbedding } from "./medsam.js";

ort.env.wasm.wasmPaths = new URL("./ort/", import.meta.url).href;
// Threads need cross-origin isolation (the /play/ page and this script send COOP/COEP); at most
// four, so a phone keeps cores for the page.
const THREADS = self.crossOriginIsolated ? Math.max(1, Math.min(4, navigator.hardwareConcurrency || 1)) : 1;
ort.env.wasm.numThreads = THREADS;

let token = null;
let origin = "";
let encoding = "int8";
let model = null; // {info, context, decoder}
let image = null; // {task, size, feeds}
let busy = false;
let waiting = null;

async function get(path) {
  const response = await fetch(new URL(path, origin), { credentials: "omit", headers: token ? { "X-Session-Token": token } : {} });
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response;
}

async function loadModel() {
  const info = await (await get("/api/v1/models/current")).json();
  const options = { executionProviders: ["wasm"], graphOptimizationLevel: "all" };
  const [context, decoder] = await Promise.all(
    [info.context_url, info.decoder_url].map(async (url) =>
      ort.InferenceSession.create(new Uint8Array(await (await get(new URL(url).pathname)).arrayBuffer()), options),
    ),
  );
  return { info, context, decoder };
}

async function loadImage(task, size) {
  model = model || (await loadModel());
  const embedding = parseEmbedding(await (await get(`/api/v1/tasks/${task}/embedding?encoding=${encoding}`)).arrayBuffer());
  const out = await model.context.run({ image_embeddings: new ort.Tensor("float32", embedding.data, [1, ...embedding.shape]) });
  const feeds = {};
  for (const name of model.context.outputNames) feeds[name] = out[name];
  // Keep only the tokens the image covers, as the server does (medsam.MedSAMDecoder.context).
  const tokens = feeds.upscale_tokens;
  const dims = tokens.dims; // (1, rows, columns, C)
  const grid = model.info.embedding_shape.slice(1);
  const [rows, columns] = decodedTokens(size, model.info.preprocess, grid, model.info.low_res_size[0]);
  if (rows !== dims[1] || columns !== dims[2]) {
    feeds.upscale_tokens = new ort.Tensor("float32", cropTokens(tokens.data, dims, rows, columns), [1, rows, columns, dims[3]]);
  }
  return { task, size, feeds };
}

async function decode({ id, box }) {
  const started = performance.now();
  const { coords, labels } = boxPrompt(box, image.size, model.info.preprocess);
  const out = await model.decoder.run({
    ...image.feeds,
    point_coords: new ort.Tensor("float32", coords, [1, 2, 2]),
    point_labels: new ort.Tensor("float32", labels, [1, 2]),
  });
  const logits = out.low_res_logits;
  const side = logits.dims[logits.dims.length - 1];
  const mask = maskFromLowRes(logits.data, side, image.size, model.info.preprocess);
  postMessage({ type: "mask", id, task: image.task, box, mask, ms: performance.now() - started }, [mask.buffer]);
}

async function pump() {
  if (busy) return;
  busy = true;
  try {
    while (waiting) {
      const next = waiting;
      waiting = null;
      if (!image) continue;
      try {
        await decode(next);
      } catch (error) {
        postMessage({ type: "error", id: next.id, message: String(error) });
      }
    }
  } finally {
    busy = false;
  }
}

onmessage = async ({ data }) => {
  if (data.type === "init") {
    ({ token, origin } = data);
    encoding = data.encoding || "int8";
  } else if (data.type === "image") {
    image = null;
    try {
      image = await loadImage(data.task, data.size);
      postMessage({ type: "ready", task: data.task, threads: THREADS });
    } catch (error) {
      postMessage({ type: "error", task: data.task, message: String(error) });
    }
  } else if (data.type === "decode") {
    waiting = data;
    pump();
  }
};
