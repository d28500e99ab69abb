// The canvas's view of the image: a scale and an offset, changed by two-finger pan and zoom.
// Screen points are CSS pixels relative to the canvas; image points are image pixels (x = column).

export const MIN_SCALE_FACTOR = 0.5; // of the fitted scale
export const MAX_SCALE_FACTOR = 12;

/** The view that fits an image of (width, height) in a (viewWidth, viewHeight) canvas, centred. */
export function fitView(width, height, viewWidth, viewHeight) {
  const scale = Math.min(viewWidth / width, viewHeight / height);
  return { scale, fit: scale, x: (viewWidth - width * scale) / 2, y: (viewHeight - height * scale) / 2 };
}

export function toImage(view, point) {
  return { x: (point.x - view.x) / view.scale, y: (point.y - view.y) / view.scale };
}

export function toScreen(view, point) {
  return { x: point.x * view.scale + view.x, y: point.y * view.scale + view.y };
}

/** The view after two fingers moved from (a0, b0) to (a1, b1) (screen points): the image point
 *  under the fingers' midpoint stays under it, scaled by the change of their distance. */
export function pinch(view, a0, b0, a1, b1) {
  const d0 = Math.hypot(b0.x - a0.x, b0.y - a0.y) || 1;
  const d1 = Math.hypot(b1.x - a1.x, b1.y - a1.y) || 1;
  const lo = view.fit * MIN_SCALE_FACTOR;
  const hi = view.fit * MAX_SCALE_FACTOR;
  const scale = Math.min(hi, Math.max(lo, (view.scale * d1) / d0));
  const m0 = { x: (a0.x + b0.x) / 2, y: (a0.y + b0.y) / 2 };
  const m1 = { x: (a1.x + b1.x) / 2, y: (a1.y + b1.y) / 2 };
  const anchor = toImage(view, m0);
  return { ...view, scale, x: m1.x - anchor.x * scale, y: m1.y - anchor.y * scale };
}

/** The box [x0, y0, x1, y1] spanned by two image points, clipped to the image, in whole pixels
 *  (pixel edges), or null when it has no area. */
export function boxFrom(p, q, width, height) {
  const clip = (v, hi) => Math.min(hi, Math.max(0, v));
  const x0 = clip(Math.floor(Math.min(p.x, q.x)), width);
  const y0 = clip(Math.floor(Math.min(p.y, q.y)), height);
  const x1 = clip(Math.ceil(Math.max(p.x, q.x)), width);
  const y1 = clip(Math.ceil(Math.max(p.y, q.y)), height);
  return x1 > x0 && y1 > y0 ? [x0, y0, x1, y1] : null;
}

/** Where the loupe goes: above the finger (a finger hides what is under it), below near the top. */
export function loupePosition(point, size, viewWidth, offset = 24) {
  const x = Math.min(viewWidth - size, Math.max(0, point.x - size / 2));
  const above = point.y - offset - size;
  return { x, y: above >= 0 ? above : point.y + offset };
}

/** Set (value 1) or clear (0) the disk of `radius` image pixels around the segment p -> q. */
export function paintStroke(mask, width, height, p, q, radius, value) {
  const steps = Math.max(1, Math.ceil(Math.hypot(q.x - p.x, q.y - p.y) / Math.max(0.5, radius / 2)));
  const r2 = radius * radius;
  for (let s = 0; s <= steps; s++) {
    const cx = p.x + ((q.x - p.x) * s) / steps;
    const cy = p.y + ((q.y - p.y) * s) / steps;
    const yLo = Math.max(0, Math.floor(cy - radius));
    const yHi = Math.min(height - 1, Math.ceil(cy + radius));
    const xLo = Math.max(0, Math.floor(cx - radius));
    const xHi = Math.min(width - 1, Math.ceil(cx + radius));
    for (let y = yLo; y <= yHi; y++) {
      for (let x = xLo; x <= xHi; x++) {
        const dx = x + 0.5 - cx;
        const dy = y + 0.5 - cy;
        if (dx * dx + dy * dy <= r2) mask[y * width + x] = value;
      }
    }
  }
}
