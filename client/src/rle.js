// Binary masks as COCO run-length encoding, the API's wire format (inference/engine/rle.py).
// A mask here is a Uint8Array of H * W bytes in row-major order (index = y * W + x), 1 = inside.
// COCO walks the mask column by column (Fortran order) and starts with a background run.

/** Decode {"size": [H, W], "counts": string | number[]} to a row-major Uint8Array. */
export function decode(rle) {
  const [height, width] = rle.size;
  const counts = typeof rle.counts === "string" ? countsFromString(rle.counts) : rle.counts;
  const mask = new Uint8Array(height * width);
  let position = 0;
  let value = 0;
  for (const run of counts) {
    if (value) {
      for (let i = position; i < position + run; i++) {
        const x = Math.floor(i / height);
        mask[(i - x * height) * width + x] = 1;
      }
    }
    position += run;
    value ^= 1;
  }
  if (position !== height * width) throw new Error(`RLE covers ${position} pixels, not ${height * width}`);
  return mask;
}

/** Encode a row-major mask of (height, width) as COCO RLE with uncompressed counts. */
export function encode(mask, height, width) {
  if (mask.length !== height * width) throw new Error(`mask has ${mask.length} pixels, not ${height * width}`);
  const counts = [];
  let value = 0;
  let run = 0;
  for (let x = 0; x < width; x++) {
    for (let y = 0; y < height; y++) {
      const v = mask[y * width + x] ? 1 : 0;
      if (v !== value) {
        counts.push(run);
        run = 0;
        value = v;
      }
      run++;
    }
  }
  counts.push(run);
  return { size: [height, width], counts };
}

/** COCO's compressed counts (6 bits a character, delta-coded two runs back) to run lengths. */
export function countsFromString(text) {
  const counts = [];
  let p = 0;
  while (p < text.length) {
    let x = 0;
    let k = 0;
    let more = 1;
    while (more) {
      const c = text.charCodeAt(p) - 48;
      x |= (c & 0x1f) << (5 * k);
      more = c & 0x20;
      p++;
      k++;
      if (!more && c & 0x10) x |= -1 << (5 * k);
    }
    if (counts.length > 2) x += counts[counts.length - 2];
    counts.push(x);
  }
  return counts;
}

/** Pixels set in a mask. */
export function area(mask) {
  let n = 0;
  for (let i = 0; i < mask.length; i++) n += mask[i] ? 1 : 0;
  return n;
}

/** Intersection over union of two masks of the same size (1 when both are empty). */
export function iou(a, b) {
  let inter = 0;
  let union = 0;
  for (let i = 0; i < a.length; i++) {
    inter += a[i] && b[i] ? 1 : 0;
    union += a[i] || b[i] ? 1 : 0;
  }
  return union ? inter / union : 1;
}
