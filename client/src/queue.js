// Submissions kept on the device until the server has them. Each carries its idempotency key
// from the moment it is made, so sending it twice (once live, once from the queue) stores it once.
// The store is IndexedDB in the browser; tests pass any object with the same four methods.

export const BATCH_LIMIT = 100; // the batch endpoint's maximum

/** An IndexedDB object store of submissions keyed by idempotency_key. */
export class IdbStore {
  constructor(name = "crowdseg", store = "outbox") {
    this.store = store;
    this.ready = new Promise((resolve, reject) => {
      const open = indexedDB.open(name, 1);
      open.onupgradeneeded = () => open.result.createObjectStore(store, { keyPath: "idempotency_key" });
      open.onsuccess = () => resolve(open.result);
      open.onerror = () => reject(open.error);
    });
  }

  async _do(mode, act) {
    const db = await this.ready;
    return new Promise((resolve, reject) => {
      const tx = db.transaction(this.store, mode);
      const request = act(tx.objectStore(this.store));
      tx.oncomplete = () => resolve(request && request.result);
      tx.onerror = () => reject(tx.error);
    });
  }

  put(item) {
    return this._do("readwrite", (s) => s.put(item));
  }

  all() {
    return this._do("readonly", (s) => s.getAll());
  }

  delete(key) {
    return this._do("readwrite", (s) => s.delete(key));
  }

  count() {
    return this._do("readonly", (s) => s.count());
  }
}

/** A store in memory, for tests and browsers without IndexedDB. */
export class MemoryStore {
  constructor() {
    this.items = new Map();
  }
  async put(item) {
    this.items.set(item.idempotency_key, structuredClone(item));
  }
  async all() {
    return [...this.items.values()];
  }
  async delete(key) {
    this.items.delete(key);
  }
  async count() {
    return this.items.size;
  }
}

/** A fresh idempotency key (a random UUID). */
export function newKey() {
  return crypto.randomUUID();
}

/**
 * The outbox: `add` keeps a submission, `flush` sends what is kept through `sendBatch(items)` (the
 * batch endpoint: a promise of one result per item, in order, or a rejection when the network is
 * down) and forgets each item the server answered for, stored or refused (a refusal will not
 * change by sending again; it is reported through `onResult`). Items the server could not take
 * now (a 5xx or 429 result) stay. One flush runs at a time.
 */
export class Outbox {
  constructor({ store, sendBatch, onResult = () => {} }) {
    this.store = store;
    this.sendBatch = sendBatch;
    this.onResult = onResult;
    this.flushing = null;
  }

  async add(item) {
    if (!item.idempotency_key || !item.round || !item.task) throw new Error("a queued submission needs round, task and idempotency_key");
    await this.store.put(item);
  }

  size() {
    return this.store.count();
  }

  flush() {
    if (!this.flushing) this.flushing = this._flush().finally(() => (this.flushing = null));
    return this.flushing;
  }

  async _flush() {
    let sent = 0;
    const items = await this.store.all();
    for (let i = 0; i < items.length; i += BATCH_LIMIT) {
      const batch = items.slice(i, i + BATCH_LIMIT);
      const results = await this.sendBatch(batch); // a network failure rejects: all stay queued
      for (let j = 0; j < batch.length; j++) {
        const result = results[j] || {};
        if (retryable(result.status)) continue;
        await this.store.delete(batch[j].idempotency_key);
        this.onResult(batch[j], result);
        sent++;
      }
    }
    return sent;
  }
}

function retryable(status) {
  return status === undefined || status === 429 || status >= 500;
}
