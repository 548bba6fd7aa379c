/**
 * A stand-in for the third-party MSP portal (the model: ESET MSP
 * Administrator 2), for tests and `npm run bench -- sync` (which is why
 * tsconfig.build.json compiles this file and fake-portal-tree.ts): a real
 * HTTP server on 127.0.0.1 port 0 that answers the calls of
 * server/msp/portal-api.ts in the shapes assumed in
 * server/msp/portal-shapes.ts, with tokens that expire, counters per call,
 * and faults injected on demand.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import type { PortalCompany, PortalTree } from '../../server/msp/tree.js';
import { buildPortalTree, childrenIndex } from './fake-portal-tree.js';

export { buildPortalTree, type TreeSpec } from './fake-portal-tree.js';

/** The calls the fake answers. */
export const FAKE_CALLS = ['Token/Get', 'Token/Renew', 'User/Current', 'Company/Children', 'Company/Detail'] as const;
/** One call name. */
export type FakeCall = (typeof FAKE_CALLS)[number];
const DATA_CALLS: readonly FakeCall[] = ['User/Current', 'Company/Children', 'Company/Detail'];

/** The default API user. */
export const FAKE_USER = Object.freeze({ username: 'api@northwind.example', password: 'S3cret-Pa55word!' });

/** A clock the test moves (or the fake moves by `msPerCall`); share `now` with the client. */
export class ManualClock {
  private t = 1_000_000;
  readonly now = (): number => this.t;
  advance(ms: number): void {
    this.t += ms;
  }
}

/** A fault, applied to the next matching calls. `calls` defaults to the data calls (not Token/*). */
export type PortalFault =
  | { readonly kind: 'status'; readonly status: number; readonly times: number; readonly calls?: readonly FakeCall[]; readonly retryAfterSec?: number }
  /** Answers 200 with this text as body (not JSON, wrong shape, wrong types). */
  | { readonly kind: 'body'; readonly text: string; readonly times?: number; readonly calls?: readonly FakeCall[] }
  /** Children pages after the first report totalCount + 1. */
  | { readonly kind: 'total-count-shift' }
  /** Children pages after the first repeat the previous page's last company in first place. */
  | { readonly kind: 'duplicate-across-pages' }
  /** The next Children page has take + 1 companies. */
  | { readonly kind: 'page-too-long' }
  /** A 200 whose body never ends: `chunkBytes` of JSON whitespace every `intervalMs` (0: as fast as the socket takes). */
  | { readonly kind: 'endless'; readonly chunkBytes: number; readonly intervalMs: number; readonly calls?: readonly FakeCall[] }
  /** A 200 of `bytes` bytes, its length declared in Content-Length or not. */
  | { readonly kind: 'huge'; readonly bytes: number; readonly declareLength: boolean; readonly calls?: readonly FakeCall[] }
  /** Every matching call waits this long before answering (stays until cleared). */
  | { readonly kind: 'delay'; readonly ms: number; readonly calls?: readonly FakeCall[] };

/** Options of {@link startFakePortal}. */
export interface FakePortalOptions {
  /** Default: 1 MSP Manager, 3 managed MSPs, 250 customers. */
  readonly tree?: PortalTree;
  /** username → password; default {@link FAKE_USER}. */
  readonly users?: Readonly<Record<string, string>>;
  /** Access token lifetime on the fake's clock (default 60 s). */
  readonly accessTokenLifetimeMs?: number;
  /** The fake's clock (default real monotonic time). */
  readonly clock?: ManualClock;
  /** With `clock`: advance it by this much on every call, so time passes deterministically. */
  readonly msPerCall?: number;
}

/** A running fake portal. */
export interface FakePortal {
  /** `http://127.0.0.1:port` */
  readonly url: string;
  readonly tree: PortalTree;
  /** Requests received per call. */
  readonly calls: Record<FakeCall, number>;
  /** Answers sent per status code. */
  readonly statuses: Map<number, number>;
  /** Resolves once `call` has been received `count` times; rejects after `timeoutMs`. */
  waitForCalls(call: FakeCall, count: number, timeoutMs?: number): Promise<void>;
  /** Most requests of one call that were open at the same time. */
  peakInFlight(call: FakeCall): number;
  /** Bytes of streamed (endless / huge) bodies the socket accepted so far. */
  streamedBytes(): number;
  /** Resolves when every streamed body has stopped (client went away or stream finished). */
  streamsEnded(): Promise<void>;
  inject(fault: PortalFault): void;
  clearFaults(): void;
  /** Forgets every session and token (the next authorized call gets 401). */
  revokeAll(): void;
  close(): Promise<void>;
}

interface Armed {
  fault: PortalFault;
  left: number;
}

function wire(c: PortalCompany): Record<string, unknown> {
  return { publicId: c.id, name: c.name, type: c.type, email: c.email, status: c.status, description: '' };
}

/** Starts a fake portal; close it when done. */
export async function startFakePortal(options: FakePortalOptions = {}): Promise<FakePortal> {
  const tree = options.tree ?? buildPortalTree({ managedMsps: 3, customers: 250 });
  const users = options.users ?? { [FAKE_USER.username]: FAKE_USER.password };
  const lifetime = options.accessTokenLifetimeMs ?? 60_000;
  const now = options.clock?.now ?? ((): number => performance.now());
  const children = childrenIndex(tree);
  const byId = new Map(tree.companies.map((c) => [c.id, c]));
  byId.set(tree.account.id, tree.account);
  const access = new Map<string, number>(); // token → expiry
  const refresh = new Set<string>();
  const armed: Armed[] = [];
  const calls = Object.fromEntries(FAKE_CALLS.map((c) => [c, 0])) as Record<FakeCall, number>;
  const statuses = new Map<number, number>();
  const streams = new Set<Promise<void>>();
  let streamed = 0;
  const open = new Map<FakeCall, number>();
  const peak = new Map<FakeCall, number>();
  const waiters = new Set<() => void>();

  const take = (call: FakeCall, pick: (f: PortalFault) => boolean): PortalFault | undefined => {
    const i = armed.findIndex((a) => pick(a.fault) && ('calls' in a.fault && a.fault.calls ? a.fault.calls : DATA_CALLS).includes(call));
    if (i < 0) return undefined;
    const a = armed[i]!;
    if (a.fault.kind !== 'delay') a.left -= 1;
    if (a.left <= 0) armed.splice(i, 1);
    return a.fault;
  };
  const send = (res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void => {
    statuses.set(status, (statuses.get(status) ?? 0) + 1);
    const text = typeof body === 'string' ? body : JSON.stringify(body ?? {});
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)), ...headers }).end(text);
  };
  const issue = (): Record<string, string> => {
    const pair = { accessToken: `at-${randomBytes(12).toString('hex')}`, refreshToken: `rt-${randomBytes(12).toString('hex')}` };
    access.set(pair.accessToken, now() + lifetime);
    refresh.add(pair.refreshToken);
    return pair;
  };
  const stream = (res: http.ServerResponse, fault: Extract<PortalFault, { kind: 'endless' | 'huge' }>): void => {
    statuses.set(200, (statuses.get(200) ?? 0) + 1);
    const total = fault.kind === 'huge' ? fault.bytes : Infinity;
    res.writeHead(200, { 'content-type': 'application/json', ...(fault.kind === 'huge' && fault.declareLength ? { 'content-length': String(total) } : {}) });
    const chunk = Buffer.alloc(fault.kind === 'huge' ? 64 * 1024 : fault.chunkBytes, 0x20);
    let sent = 0;
    const done = new Promise<void>((resolve) => {
      const finish = (): void => {
        clearInterval(timer);
        resolve();
      };
      const pushMore = (): void => {
        while (sent < total && !res.destroyed) {
          const piece = chunk.subarray(0, Math.min(chunk.length, total - sent));
          sent += piece.length;
          streamed += piece.length;
          if (!res.write(piece)) return; // resume on drain
          if (fault.kind === 'endless' && fault.intervalMs > 0) return; // resume on the next tick of the timer
        }
        if (sent >= total) res.end();
      };
      const timer = fault.kind === 'endless' && fault.intervalMs > 0 ? setInterval(pushMore, fault.intervalMs) : undefined;
      res.on('drain', () => {
        if (!timer) pushMore();
      });
      res.on('close', finish);
      pushMore();
    });
    streams.add(done);
    void done.then(() => streams.delete(done));
  };

  const answer = (call: FakeCall, body: Record<string, unknown>, auth: string | undefined, res: http.ServerResponse): void => {
    if (call === 'Token/Get') {
      if (typeof body.username !== 'string' || users[body.username] !== body.password) return send(res, 401, { error: { code: 1, message: 'Invalid credentials' } });
      return send(res, 200, issue());
    }
    if (call === 'Token/Renew') {
      if (typeof body.refreshToken !== 'string' || !refresh.delete(body.refreshToken)) return send(res, 401, { error: { code: 2 } });
      return send(res, 200, issue());
    }
    const expiry = auth?.startsWith('Bearer ') ? access.get(auth.slice(7)) : undefined;
    if (expiry === undefined || expiry <= now()) return send(res, 401, { error: { code: 3, message: 'token expired or invalid' } });
    if (call === 'User/Current') return send(res, 200, { companyId: tree.account.id, name: 'API user', email: 'api@northwind.example' });
    const company = typeof body.companyId === 'string' ? byId.get(body.companyId) : undefined;
    if (!company) return send(res, 404, { error: { code: 4 } });
    if (call === 'Company/Detail') return send(res, 200, { ...wire(company), ancestors: [] });
    const { skip, take: size } = body;
    if (typeof skip !== 'number' || typeof size !== 'number' || !Number.isInteger(skip) || skip < 0 || !Number.isInteger(size) || size < 1 || size > 100) {
      return send(res, 400, { error: { code: 5, message: 'take must be 1..100' } });
    }
    const list = children.get(company.id) ?? [];
    const items = list.slice(skip, skip + size).map(wire);
    let totalCount = list.length;
    const tooLong = take(call, (f) => f.kind === 'page-too-long') !== undefined;
    while (tooLong && items.length <= size) items.push(wire({ ...company, id: `extra-${items.length}`, name: 'Extra' }));
    if (skip > 0 && take(call, (f) => f.kind === 'total-count-shift')) totalCount += 1;
    if (skip > 0 && items.length > 0 && take(call, (f) => f.kind === 'duplicate-across-pages')) items[0] = wire(list[skip - 1]!);
    return send(res, 200, { companies: items, totalCount });
  };

  const server = http.createServer((req, res) => {
    const call = FAKE_CALLS.find((c) => req.url === `/api/${c}`);
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > 1024 * 1024) req.destroy();
      else chunks.push(c);
    });
    req.on('end', () => {
      void (async () => {
        if (!call || req.method !== 'POST') return send(res, 404, { error: 'no such call' });
        calls[call] += 1;
        open.set(call, (open.get(call) ?? 0) + 1);
        peak.set(call, Math.max(peak.get(call) ?? 0, open.get(call)!));
        res.on('close', () => open.set(call, open.get(call)! - 1));
        for (const w of [...waiters]) w();
        if (options.clock && options.msPerCall) options.clock.advance(options.msPerCall);
        const delay = take(call, (f) => f.kind === 'delay');
        if (delay?.kind === 'delay') {
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, delay.ms);
            res.once('close', () => {
              clearTimeout(timer);
              resolve();
            });
          });
        }
        if (res.destroyed) return;
        let body: Record<string, unknown>;
        try {
          body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
        } catch {
          return send(res, 400, { error: 'body is not JSON' });
        }
        const fault = take(call, (f) => f.kind === 'status' || f.kind === 'body' || f.kind === 'endless' || f.kind === 'huge');
        if (fault?.kind === 'status') return send(res, fault.status, { error: { code: 99, subCode: 2 } }, fault.retryAfterSec === undefined ? {} : { 'retry-after': String(fault.retryAfterSec) });
        if (fault?.kind === 'body') return send(res, 200, fault.text);
        if (fault?.kind === 'endless' || fault?.kind === 'huge') return stream(res, fault);
        answer(call, body, req.headers.authorization, res);
      })();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    tree,
    calls,
    statuses,
    waitForCalls: (call, count, timeoutMs = 10_000) =>
      new Promise<void>((resolve, reject) => {
        const check = (): void => {
          if (calls[call] < count) return;
          waiters.delete(check);
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`the fake portal did not get ${count} ${call} calls within ${timeoutMs} ms`));
        }, timeoutMs);
        waiters.add(check);
        check();
      }),
    peakInFlight: (call) => peak.get(call) ?? 0,
    streamedBytes: () => streamed,
    streamsEnded: async () => {
      await Promise.all([...streams]);
    },
    inject: (fault) => armed.push({ fault, left: 'times' in fault && fault.times !== undefined ? fault.times : 1 }),
    clearFaults: () => armed.splice(0),
    revokeAll: () => {
      access.clear();
      refresh.clear();
    },
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
