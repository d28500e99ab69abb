// The crowdseg API as an app uses it: the session token in X-Session-Token, never cookies.

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error && body.error.message) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

export class Api {
  constructor(base = "", storage = globalThis.localStorage) {
    this.base = base;
    this.storage = storage;
    this.token = storage ? storage.getItem("crowdseg.token") : null;
  }

  setToken(token) {
    this.token = token;
    if (!this.storage) return;
    if (token) this.storage.setItem("crowdseg.token", token);
    else this.storage.removeItem("crowdseg.token");
  }

  headers(extra = {}) {
    return { ...(this.token ? { "X-Session-Token": this.token } : {}), ...extra };
  }

  /** fetch with the token; JSON in and out. A network failure rejects with a TypeError. */
  async request(method, path, body, extraHeaders = {}) {
    const response = await fetch(this.base + path, {
      method,
      credentials: "omit",
      headers: this.headers(body === undefined ? extraHeaders : { "Content-Type": "application/json", ...extraHeaders }),
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    const data = text ? JSON.parse(text) : null;
    if (!response.ok) throw new ApiError(response.status, data);
    return data;
  }

  async guest() {
    const data = await this.request("POST", "/api/v1/accounts/guest", { client: "app" });
    this.setToken(data.session_token);
    return data.user;
  }

  async login(username, password) {
    const response = await fetch(this.base + "/_allauth/app/v1/auth/login", {
      method: "POST",
      credentials: "omit",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ username, password }),
    });
    const data = await response.json();
    if (response.status !== 200) throw new ApiError(response.status, { error: { message: "wrong username or password" } });
    this.setToken(data.meta.session_token);
    return data.data.user;
  }

  me() {
    return this.request("GET", "/api/v1/accounts/me");
  }

  async campaigns() {
    const data = await this.request("GET", "/api/v1/campaigns");
    return Array.isArray(data) ? data : data.results;
  }

  join(campaignId, inviteCode) {
    return this.request("POST", `/api/v1/campaigns/${campaignId}/join`, inviteCode ? { invite_code: inviteCode } : {});
  }

  newRound(campaignId) {
    return this.request("POST", `/api/v1/campaigns/${campaignId}/rounds`);
  }

  round(roundId) {
    return this.request("GET", `/api/v1/rounds/${roundId}`);
  }

  submit(roundId, taskId, body, key) {
    return this.request("POST", `/api/v1/rounds/${roundId}/tasks/${taskId}/submit`, body, { "Idempotency-Key": key });
  }

  async batch(items) {
    return (await this.request("POST", "/api/v1/submissions/batch", { submissions: items })).results;
  }

  suggest(taskId, box) {
    return this.request("POST", `/api/v1/tasks/${taskId}/suggest`, { box });
  }

  initialMask(url) {
    return this.request("GET", new URL(url).pathname);
  }

  game() {
    return this.request("GET", "/api/v1/me/game");
  }

  leaderboard(campaignId) {
    return this.request("GET", campaignId ? `/api/v1/campaigns/${campaignId}/leaderboard` : "/api/v1/leaderboard");
  }

  /** An image (or any file) the API names, as a Blob, with the token (display images are private). */
  async blob(url) {
    const response = await fetch(url, { credentials: "omit", headers: this.headers() });
    if (!response.ok) throw new ApiError(response.status, null);
    return response.blob();
  }
}
