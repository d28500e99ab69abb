import assert from "node:assert/strict";
import { test } from "node:test";

import { area, countsFromString, decode, encode, iou } from "../src/rle.js";

test("encode walks columns and starts with background, as COCO does", () => {
  // 2 x 3 mask, row-major: [[0, 1, 1], [0, 1, 0]] -> column order 0 0 | 1 1 | 1 0
  const mask = Uint8Array.from([0, 1, 1, 0, 1, 0]);
  assert.deepEqual(encode(mask, 2, 3), { size: [2, 3], counts: [2, 3, 1] });
  const full = Uint8Array.from([1, 1]);
  assert.deepEqual(encode(full, 1, 2).counts, [0, 2]);
});

test("decode inverts encode", () => {
  const h = 7;
  const w = 5;
  const mask = new Uint8Array(h * w).map((_, i) => ((i * 2654435761) >>> 7) & 1);
  assert.deepEqual(decode(encode(mask, h, w)), mask);
  assert.equal(area(mask), [...mask].filter(Boolean).length);
});

test("compressed counts decode as pycocotools writes them", () => {
  // pycocotools.mask.encode of the 2 x 3 mask above gives counts b"231" (runs 2, 3, 1).
  assert.deepEqual(countsFromString("231"), [2, 3, 1]);
  const mask = decode({ size: [2, 3], counts: "231" });
  assert.deepEqual([...mask], [0, 1, 1, 0, 1, 0]);
});

test("decode refuses counts that do not cover the mask", () => {
  assert.throws(() => decode({ size: [2, 2], counts: [1, 1] }), /covers 2 pixels, not 4/);
});

test("iou counts intersection over union", () => {
  assert.equal(iou(Uint8Array.from([1, 1, 0, 0]), Uint8Array.from([0, 1, 1, 0])), 1 / 3);
  assert.equal(iou(new Uint8Array(3), new Uint8Array(3)), 1);
});
