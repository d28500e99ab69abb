import assert from "node:assert/strict";
import { test } from "node:test";

import { bilinear, boxPrompt, cropTokens, decodedTokens, float16, maskFromLowRes, parseEmbedding, resizedSize } from "../src/medsam.js";

const LITE = { input_size: 256, mode: "longest_side" };

test("resized size keeps the aspect ratio and rounds half up, like the server", () => {
  assert.deepEqual(resizedSize([233, 197], LITE), [256, 216]);
  assert.deepEqual(resizedSize([128, 128], LITE), [256, 256]);
  assert.deepEqual(resizedSize([3, 2000], LITE), [1, 256]);
  assert.deepEqual(resizedSize([10, 20], { input_size: 1024, mode: "stretch" }), [1024, 1024]);
});

test("a box maps to the input frame with labels 2 and 3", () => {
  const { coords, labels } = boxPrompt([10, 20, 100, 200], [233, 197], LITE);
  const s = 256 / 233;
  assert.deepEqual([...coords], [10 * s, 20 * s, 100 * s, 200 * s].map(Math.fround));
  assert.deepEqual([...labels], [2, 3]);
});

test("decoded tokens cover the image and one more token only when the logits are upscaled", () => {
  assert.deepEqual(decodedTokens([233, 197], LITE, [64, 64], 256), [64, 54]);
  assert.deepEqual(decodedTokens([233, 197], LITE, [64, 64], 128), [64, 55]);
});

test("cropping tokens keeps the top left tokens with all their channels", () => {
  // (1, 3 rows, 4 columns, 2 channels)
  const grid = Float32Array.from({ length: 3 * 4 * 2 }, (_, i) => i);
  assert.deepEqual([...cropTokens(grid, [1, 3, 4, 2], 2, 2)], [0, 1, 2, 3, 8, 9, 10, 11]);
  assert.throws(() => cropTokens(grid, [1, 3, 4, 2], 4, 2), /cannot crop/);
});

test("bilinear resize has torch's align_corners=False semantics", () => {
  // torch.nn.functional.interpolate(tensor([[[[0., 1.], [2., 3.]]]]), (4, 4), mode="bilinear")
  const out = bilinear(Float32Array.from([0, 1, 2, 3]), 2, 2, 4, 4);
  const expected = [0, 0.25, 0.75, 1, 0.5, 0.75, 1.25, 1.5, 1.5, 1.75, 2.25, 2.5, 2, 2.25, 2.75, 3];
  assert.deepEqual([...out], expected);
});

test("a mask is the positive logits, cropped to the image and resized", () => {
  // 4 x 4 logits for a 2 x 1 image in a longest-side frame of 4: the image is the left half (4 x 2).
  const logits = Float32Array.from([1, 1, -1, -1, 1, 1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1]);
  const mask = maskFromLowRes(logits, 4, [2, 1], { input_size: 4, mode: "longest_side" });
  assert.deepEqual([...mask], [1, 0]);
});

test("the embedding payload decodes int8 with per-channel scales and float16 exactly", () => {
  const header = (format) => {
    const b = new ArrayBuffer(20);
    new Uint8Array(b).set([..."CSEMB1"].map((c) => c.charCodeAt(0)).concat([format, 0]));
    new DataView(b).setUint32(8, 2, true);
    new DataView(b).setUint32(12, 1, true);
    new DataView(b).setUint32(16, 2, true);
    return new Uint8Array(b);
  };
  const int8 = new Uint8Array(20 + 8 + 4);
  int8.set(header(1));
  new DataView(int8.buffer).setFloat32(20, 0.5, true);
  new DataView(int8.buffer).setFloat32(24, 2, true);
  int8.set(Int8Array.from([1, -2, 127, -127]).map((v) => v & 0xff), 28);
  const a = parseEmbedding(int8.buffer);
  assert.deepEqual(a.shape, [2, 1, 2]);
  assert.deepEqual([...a.data], [0.5, -1, 254, -254]);

  const half = new Uint8Array(20 + 8);
  half.set(header(2));
  [0x3c00, 0xc000, 0x3555, 0x0001].forEach((bits, i) => new DataView(half.buffer).setUint16(20 + 2 * i, bits, true));
  assert.deepEqual([...parseEmbedding(half.buffer).data], [1, -2, Math.fround(float16(0x3555)), Math.fround(2 ** -24)]);
  assert.equal(float16(0x3555), 0.333251953125);
  assert.throws(() => parseEmbedding(new ArrayBuffer(20)), /not a crowdseg embedding/);
});
