// MedSAM's geometry on the device: the same arithmetic as inference/engine/transforms.py and
// medsam.py (prompt_arrays, decoded_tokens, mask_from_low_res), in float32 where the server
// computes in float32 (Math.fround after every operation), so the same logits give the same mask.
// Sizes are [H, W]; coordinates (x, y) = (column, row) in image pixels; boxes [x0, y0, x1, y1].

const f32 = Math.fround;

/** [h, w] of the image inside the S x S model input (transforms.resized_size). */
export function resizedSize([height, width], { input_size: size, mode }) {
  if (mode === "stretch") return [size, size];
  const scale = (size * 1.0) / Math.max(height, width);
  // Python's int(x + 0.5) truncates; the values are positive, so Math.floor is the same.
  return [Math.max(1, Math.floor(height * scale + 0.5)), Math.max(1, Math.floor(width * scale + 0.5))];
}

/** The decoder's point_coords (1, N, 2) and point_labels (1, N) for a box, as Float32Arrays. */
export function boxPrompt(box, [height, width], { input_size: size, mode }) {
  const sx = mode === "stretch" ? size / width : size / Math.max(height, width);
  const sy = mode === "stretch" ? size / height : sx;
  const [x0, y0, x1, y1] = box;
  // Box corners carry labels 2 (top left) and 3 (bottom right), as segment-anything numbers them.
  return {
    coords: Float32Array.from([x0 * sx, y0 * sy, x1 * sx, y1 * sy]),
    labels: Float32Array.from([2, 3]),
  };
}

/** Rows and columns of the token grid the image's mask reads (medsam.decoded_tokens).
 *  lowRes: side of the decoder's low-res logits; grid: [rows, columns] of the embedding. */
export function decodedTokens(imageSize, spec, grid, lowRes) {
  const margin = lowRes === spec.input_size ? 0 : 1;
  const [h, w] = resizedSize(imageSize, spec);
  return [
    Math.min(grid[0], Math.ceil((h * grid[0]) / spec.input_size) + margin),
    Math.min(grid[1], Math.ceil((w * grid[1]) / spec.input_size) + margin),
  ];
}

/** Crop the context's upscale_tokens, a (1, R, K, C) float32 token grid (channels last), to its
 *  first keepRows x keepColumns tokens: (1, keepRows, keepColumns, C). */
export function cropTokens(data, [, rows, columns, channels], keepRows, keepColumns) {
  if (keepRows > rows || keepColumns > columns) throw new Error(`cannot crop a ${rows} x ${columns} grid to ${keepRows} x ${keepColumns}`);
  const out = new Float32Array(keepRows * keepColumns * channels);
  for (let r = 0; r < keepRows; r++) {
    const from = r * columns * channels;
    out.set(data.subarray(from, from + keepColumns * channels), r * keepColumns * channels);
  }
  return out;
}

/** torch's align_corners=False source positions for a resize of nIn to nOut samples. */
function sourceIndex(nIn, nOut) {
  const scale = f32(nIn / nOut);
  const lo = new Int32Array(nOut);
  const hi = new Int32Array(nOut);
  const weight = new Float32Array(nOut);
  for (let i = 0; i < nOut; i++) {
    const src = Math.max(f32(f32(f32(i) + 0.5) * scale) - 0.5, 0);
    const s = f32(src);
    lo[i] = Math.min(Math.floor(s), nIn - 1);
    hi[i] = Math.min(lo[i] + 1, nIn - 1);
    weight[i] = f32(s - lo[i]);
  }
  return { lo, hi, weight };
}

/** Bilinear resize (torch semantics, along x then y, float32 like the server) of a row-major
 *  (rows, columns) Float32Array to (outRows, outColumns). */
export function bilinear(values, rows, columns, outRows, outColumns) {
  const r = sourceIndex(rows, outRows);
  const c = sourceIndex(columns, outColumns);
  const across = new Float32Array(rows * outColumns);
  for (let y = 0; y < rows; y++) {
    for (let x = 0; x < outColumns; x++) {
      const a = f32(values[y * columns + c.lo[x]] * f32(1 - c.weight[x]));
      across[y * outColumns + x] = f32(a + f32(values[y * columns + c.hi[x]] * c.weight[x]));
    }
  }
  const out = new Float32Array(outRows * outColumns);
  for (let y = 0; y < outRows; y++) {
    const wLo = f32(1 - r.weight[y]);
    const wHi = r.weight[y];
    const lo = r.lo[y] * outColumns;
    const hi = r.hi[y] * outColumns;
    for (let x = 0; x < outColumns; x++) {
      out[y * outColumns + x] = f32(f32(across[lo + x] * wLo) + f32(across[hi + x] * wHi));
    }
  }
  return out;
}

/** The decoder's low-res logits ((side, side) Float32Array) to the image's mask, a row-major
 *  Uint8Array of H * W (transforms.mask_from_low_res: logits > 0). */
export function maskFromLowRes(logits, side, [height, width], spec) {
  let values = logits;
  let rows = side;
  let columns = side;
  if (spec.mode === "longest_side") {
    const size = spec.input_size;
    if (side !== size) {
      values = bilinear(values, side, side, size, size);
      rows = columns = size;
    }
    const [rh, rw] = resizedSize([height, width], spec);
    const cropped = new Float32Array(rh * rw);
    for (let y = 0; y < rh; y++) cropped.set(values.subarray(y * columns, y * columns + rw), y * rw);
    values = cropped;
    rows = rh;
    columns = rw;
  }
  const resized = bilinear(values, rows, columns, height, width);
  const mask = new Uint8Array(height * width);
  for (let i = 0; i < mask.length; i++) mask[i] = resized[i] > 0 ? 1 : 0;
  return mask;
}

/** The (C, H, W) float32 embedding from the API's compact payload (TaskEmbeddingView):
 *  "CSEMB1", a format byte (1 int8, 2 float16), 0, C, H, W as uint32 LE, then the values. */
export function parseEmbedding(buffer) {
  const bytes = new Uint8Array(buffer);
  const magic = String.fromCharCode(...bytes.subarray(0, 6));
  if (magic !== "CSEMB1" || (bytes[6] !== 1 && bytes[6] !== 2)) throw new Error("not a crowdseg embedding");
  const view = new DataView(buffer);
  const shape = [view.getUint32(8, true), view.getUint32(12, true), view.getUint32(16, true)];
  const [channels, height, width] = shape;
  const plane = height * width;
  const data = new Float32Array(channels * plane);
  if (bytes[6] === 2) {
    for (let i = 0; i < data.length; i++) data[i] = float16(view.getUint16(20 + 2 * i, true));
  } else {
    const values = new Int8Array(buffer, 20 + 4 * channels, channels * plane);
    for (let c = 0; c < channels; c++) {
      const scale = view.getFloat32(20 + 4 * c, true);
      for (let i = c * plane; i < (c + 1) * plane; i++) data[i] = f32(values[i] * scale);
    }
  }
  return { shape, data };
}

/** An IEEE half-precision bit pattern to its (exact) number. */
export function float16(bits) {
  const exponent = (bits >> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  const sign = bits & 0x8000 ? -1 : 1;
  if (exponent === 0) return sign * fraction * 2 ** -24;
  if (exponent === 31) return fraction ? NaN : sign * Infinity;
  return sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
}
