// The session (token and role, in sessionStorage) and calls to the /v1 API with it.

const KEY = 'sluice.session';

export function session() {
  try { return JSON.parse(sessionStorage.getItem(KEY)); } catch { return null; }
}

export function signOut() { sessionStorage.removeItem(KEY); }

export function isAdmin() { return session()?.role === 'admin'; }

/// An RFC 9457 problem answered by the API.
export class ApiProblem extends Error {
  constructor(status, detail) { super(detail); this.status = status; }
}

export async function call(method, path, { token, body } = {}) {
  const t = token ?? session()?.token;
  const headers = { Accept: 'application/json' };
  if (t) headers.Authorization = `Bearer ${t}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  if (!res.ok) {
    const detail = (data && data.detail) || `${res.status} ${res.statusText}`;
    if (res.status === 401 && !token) { signOut(); location.hash = '#/signin'; }
    throw new ApiProblem(res.status, detail);
  }
  return data;
}

export const get = (path) => call('GET', path);
export const post = (path, body) => call('POST', path, { body });

/// Sign in: ask the API who the token is; keep the token only if it is valid.
export async function signIn(token) {
  const me = await call('GET', '/v1/whoami', { token });
  if (me.role === 'gateway') {
    throw new ApiProblem(403, 'gateway tokens cannot use the UI: sign in with an analyst or admin token');
  }
  sessionStorage.setItem(KEY, JSON.stringify({ token, name: me.name, role: me.role }));
  return me;
}

/// A query string from an object, leaving out empty values.
export function qs(params) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') p.set(k, v);
  const s = p.toString();
  return s ? `?${s}` : '';
}
