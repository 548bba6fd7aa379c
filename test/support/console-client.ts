/**
 * A console client for tests: logs in like the browser does (cookie
 * session over real TLS), keeps the cookie and the CSRF token, and calls
 * the API with them. Also opens the live feed and collects its batches.
 */
import https from 'node:https';
import { requestJson } from '../../common/https-json.js';
import type { TestServer } from './harness.js';

/** An answer of the console API. */
export interface Answer<T = unknown> {
  readonly status: number;
  readonly body: T;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
}

/** One browser-like session. */
export class ConsoleClient {
  cookie: string | null = null;
  csrf: string | null = null;

  constructor(private readonly s: TestServer) {}

  /** Sends a request with the session cookie and (unless told otherwise) the CSRF token. */
  async call<T = unknown>(
    method: 'GET' | 'POST' | 'DELETE',
    path: string,
    body?: unknown,
    opts: { csrf?: string | null; origin?: string; bearer?: string } = {},
  ): Promise<Answer<T>> {
    const headers: Record<string, string> = {};
    if (this.cookie) headers.cookie = this.cookie;
    const csrf = opts.csrf === undefined ? this.csrf : opts.csrf;
    if (csrf && method !== 'GET') headers['x-csrf-token'] = csrf;
    if (opts.origin) headers.origin = opts.origin;
    if (opts.bearer) headers.authorization = `Bearer ${opts.bearer}`;
    const res = await requestJson({ host: '127.0.0.1', port: this.s.server.consolePort, path, method, body, headers, ca: this.s.server.pki.ca.certPem });
    return { status: res.status, body: res.body as T, headers: res.headers };
  }

  /** Logs in; on success keeps the cookie and CSRF token. */
  async login(username: string, password: string): Promise<Answer<{ csrfToken: string; user: { username: string; role: string } } & { error?: { code: string } }>> {
    const res = await this.call<{ csrfToken: string; user: { username: string; role: string } } & { error?: { code: string } }>('POST', '/api/v1/session', { username, password });
    if (res.status === 200) {
      const set = String(res.headers['set-cookie'] ?? '');
      this.cookie = set.split(';')[0]!;
      this.csrf = res.body.csrfToken;
    }
    return res;
  }
}

/** An open live feed: batches as they arrive. */
export interface FeedStream {
  readonly status: number;
  readonly batches: { items: { kind: string; deviceId: string | null; groupId: string | null; count: number; detail: string | null }[]; more: number }[];
  close(): void;
}

/** Opens `GET /api/v1/feed` with a cookie or a bearer token and collects its batches. */
export function openFeed(s: TestServer, auth: { cookie?: string; bearer?: string }, query = ''): Promise<FeedStream> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { accept: 'text/event-stream' };
    if (auth.cookie) headers.cookie = auth.cookie;
    if (auth.bearer) headers.authorization = `Bearer ${auth.bearer}`;
    const req = https.request({ host: '127.0.0.1', port: s.server.consolePort, path: `/api/v1/feed${query}`, ca: s.server.pki.ca.certPem, headers, agent: false }, (res) => {
      const stream: FeedStream = { status: res.statusCode ?? 0, batches: [], close: () => req.destroy() };
      let buf = '';
      res.on('data', (c: Buffer) => {
        buf += c.toString('utf8');
        let i: number;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const chunk = buf.slice(0, i);
          buf = buf.slice(i + 2);
          for (const line of chunk.split('\n')) if (line.startsWith('data: ')) stream.batches.push(JSON.parse(line.slice(6)) as FeedStream['batches'][number]);
        }
      });
      res.on('error', () => undefined);
      resolve(stream);
    });
    req.on('error', reject);
    req.end();
  });
}
