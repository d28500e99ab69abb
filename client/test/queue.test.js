import assert from "node:assert/strict";
import { test } from "node:test";

import { MemoryStore, Outbox, newKey } from "../src/queue.js";

const item = (n) => ({ round: "r", task: `t${n}`, idempotency_key: newKey(), rle: { size: [1, 1], counts: [1] } });

test("a failed flush keeps everything; a successful one forgets what the server answered", async () => {
  let online = false;
  const sent = [];
  const outbox = new Outbox({
    store: new MemoryStore(),
    sendBatch: async (items) => {
      if (!online) throw new TypeError("Failed to fetch");
      sent.push(...items.map((i) => i.idempotency_key));
      return items.map((i) => (i.task === "t2" ? { status: 503 } : { status: 201 }));
    },
  });
  await outbox.add(item(1));
  await outbox.add(item(2));
  await assert.rejects(outbox.flush(), /Failed to fetch/);
  assert.equal(await outbox.size(), 2);
  online = true;
  assert.equal(await outbox.flush(), 1);
  assert.equal(await outbox.size(), 1); // the 503 stays for later
  assert.equal(sent.length, 2);
});

test("a refused item is reported and not sent again", async () => {
  const reported = [];
  const outbox = new Outbox({
    store: new MemoryStore(),
    sendBatch: async (items) => items.map(() => ({ status: 400, error: { code: "invalid_mask" } })),
    onResult: (i, r) => reported.push(r.status),
  });
  await outbox.add(item(1));
  await outbox.flush();
  assert.deepEqual(reported, [400]);
  assert.equal(await outbox.size(), 0);
});

test("concurrent flushes send once and batches hold at most 100", async () => {
  const batches = [];
  const outbox = new Outbox({
    store: new MemoryStore(),
    sendBatch: async (items) => {
      batches.push(items.length);
      return items.map(() => ({ status: 201 }));
    },
  });
  for (let i = 0; i < 150; i++) await outbox.add(item(i));
  await Promise.all([outbox.flush(), outbox.flush()]);
  assert.deepEqual(batches, [100, 50]);
});

test("an item without its key is refused", async () => {
  const outbox = new Outbox({ store: new MemoryStore(), sendBatch: async () => [] });
  await assert.rejects(outbox.add({ round: "r", task: "t" }), /idempotency_key/);
});
