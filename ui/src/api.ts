/**
 * The page's client of the console API: same-origin fetch with the session
 * cookie (sent by the browser) and the session's CSRF token on every state
 * change. Errors come back as ApiError with the server's code.
 */

/** An error answer of the API. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

let csrfToken: string | null = null;

/** Remembers the CSRF token of the current session. */
export function setCsrf(token: string | null): void {
  csrfToken = token;
}

/** Calls the API; resolves with the JSON body (undefined for 204). */
export async function api<T>(method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (method !== 'GET' && csrfToken) headers['x-csrf-token'] = csrfToken;
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: 'same-origin' });
  if (res.status === 204) return undefined as T;
  const data = (await res.json().catch(() => ({}))) as { error?: { code: string; message: string } };
  if (!res.ok) throw new ApiError(res.status, data.error?.code ?? 'HTTP_ERROR', data.error?.message ?? `HTTP ${res.status}`);
  return data as T;
}

/** Builds a query string from the defined values. */
export function query(params: Record<string, string | number | undefined | null>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : '';
}

/** The signed-in user. */
export interface Me {
  readonly user: { readonly id: string; readonly username: string; readonly role: 'admin' | 'customer_admin'; readonly homeGroupPath: string | null };
  readonly csrfToken: string;
}

/** A device as the API returns it. */
export interface Device {
  readonly id: string;
  readonly hostname: string;
  readonly groupId: string;
  readonly groupPath: string;
  readonly status: string;
  readonly presence: string;
  readonly ageBand: string;
  readonly connected: boolean;
  readonly lastContactAt: string | null;
  readonly address: string | null;
  readonly os: string | null;
  readonly agentVersion: string | null;
  readonly placementReason: string | null;
}

/** A group as the API returns it. */
export interface Group {
  readonly id: string;
  readonly parentId: string | null;
  readonly name: string;
  readonly kind: 'root' | 'lost_found' | 'static';
  readonly path: string;
  readonly devices: number;
}

/** A customer row. */
export interface Customer {
  readonly id: string;
  readonly groupId: string;
  readonly name: string;
  readonly groupPath: string;
  readonly status: 'not_set_up' | 'normal' | 'unlinked';
  readonly setup: string | null;
  readonly upstreamStatus: string;
  readonly devices: Readonly<Record<'online' | 'late' | 'offline' | 'never_connected' | 'total', number>>;
}

/** One item of the live feed. */
export interface FeedItem {
  readonly kind: 'connect' | 'checkin' | 'disconnect' | 'reject';
  readonly deviceId: string | null;
  readonly hostname: string | null;
  readonly groupId: string | null;
  readonly at: number;
  readonly count: number;
  readonly detail: string | null;
  readonly address: string | null;
}

/** Formats a time for tables: local date and time, or a dash. */
export function when(iso: string | number | null): string {
  if (iso === null) return '—';
  const d = new Date(iso);
  return `${d.toLocaleDateString()} ${d.toLocaleTimeString()}`;
}
