import assert from "node:assert/strict";
import { test } from "node:test";

import { boxFrom, fitView, loupePosition, paintStroke, pinch, toImage, toScreen } from "../src/geometry.js";

test("the fitted view centres the image and maps points both ways", () => {
  const view = fitView(200, 100, 400, 400);
  assert.equal(view.scale, 2);
  assert.deepEqual(toScreen(view, { x: 0, y: 0 }), { x: 0, y: 100 });
  assert.deepEqual(toImage(view, toScreen(view, { x: 37, y: 12 })), { x: 37, y: 12 });
});

test("a pinch zooms about the fingers and a two-finger drag pans", () => {
  const view = fitView(100, 100, 100, 100);
  const zoomed = pinch(view, { x: 40, y: 50 }, { x: 60, y: 50 }, { x: 30, y: 50 }, { x: 70, y: 50 });
  assert.equal(zoomed.scale, 2);
  assert.deepEqual(toImage(zoomed, { x: 50, y: 50 }), { x: 50, y: 50 }); // the midpoint stays put
  const panned = pinch(view, { x: 40, y: 50 }, { x: 60, y: 50 }, { x: 50, y: 60 }, { x: 70, y: 60 });
  assert.equal(panned.scale, 1);
  assert.deepEqual([panned.x, panned.y], [10, 10]);
});

test("zoom stays within its limits", () => {
  const view = fitView(100, 100, 100, 100);
  const far = pinch(view, { x: 49, y: 50 }, { x: 51, y: 50 }, { x: 0, y: 50 }, { x: 100, y: 50 });
  assert.equal(far.scale, 12);
});

test("a box is ordered, clipped to the image, on pixel edges, and null without area", () => {
  assert.deepEqual(boxFrom({ x: 50.5, y: 40.2 }, { x: -3, y: 10.7 }, 100, 80), [0, 10, 51, 41]);
  assert.equal(boxFrom({ x: 5, y: 5 }, { x: 5, y: 9 }, 100, 80), null);
});

test("the loupe sits above the finger, or below it at the top edge", () => {
  assert.deepEqual(loupePosition({ x: 100, y: 300 }, 120, 360), { x: 40, y: 156 });
  assert.deepEqual(loupePosition({ x: 10, y: 50 }, 120, 360), { x: 0, y: 74 });
});

test("a brush stroke sets a disk along its path and the eraser clears it", () => {
  const mask = new Uint8Array(10 * 10);
  paintStroke(mask, 10, 10, { x: 2, y: 5 }, { x: 8, y: 5 }, 1, 1);
  assert.equal(mask[5 * 10 + 5], 1);
  assert.equal(mask[0], 0);
  paintStroke(mask, 10, 10, { x: 5, y: 5 }, { x: 5, y: 5 }, 2, 0);
  assert.equal(mask[5 * 10 + 5], 0);
  assert.equal(mask[5 * 10 + 8], 1);
});
