/**
 * The console's live feed: agent check-ins, connects, disconnects and
 * rejects, pushed to browsers as server-sent events. Events are gathered
 * for one tick (200 ms) and sent as one batch per subscriber, filtered by
 * the subscriber's scope and customer filter. Check-ins are coalesced per
 * device within a tick; a batch holds at most `maxPerBatch` items and says
 * how many more there were. Memory is bounded: one tick's raw events (at
 * most `maxPending`, the rest only counted) and, per subscriber, nothing
 * but counters while its socket is blocked; a subscriber blocked longer
 * than `slowCloseMs` is disconnected.
 */
import type { ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { RejectEvent } from '../agent-listener.js';
import type { SessionEvent } from '../agent-session.js';

/** What the feed takes in. */
export type FeedInput = SessionEvent | RejectEvent;

/** One item of a batch, as the page gets it. */
export interface FeedItem {
  readonly kind: FeedInput['kind'];
  readonly deviceId: string | null;
  readonly hostname: string | null;
  readonly groupId: string | null;
  readonly at: number;
  /** Check-ins of this device coalesced into this item. */
  readonly count: number;
  /** Reject reason, or disconnect code and reason. */
  readonly detail: string | null;
  readonly address: string | null;
}

/** One batch as sent in a `data:` line. */
export interface FeedBatch {
  readonly items: readonly FeedItem[];
  /** Items of this tick beyond the batch cap, plus any dropped while the subscriber was slow. */
  readonly more: number;
}

/** What the feed needs. */
export interface LiveFeedDeps {
  /** Hostname and group of devices, by id. */
  readonly briefs: (ids: readonly string[]) => Promise<Map<string, { hostname: string; groupId: string }>>;
  readonly log: Logger;
  readonly tickMs?: number;
  readonly maxPerBatch?: number;
  readonly maxPending?: number;
  readonly slowCloseMs?: number;
  /** How long a device's group is trusted from the cache. */
  readonly briefTtlMs?: number;
}

/** A subscriber's view: which groups it may see (null: all) and its own customer filter. */
export interface FeedFilter {
  /** Refreshed by the feed every tick through this function (groups move, scopes change). */
  readonly visibleGroups: () => ReadonlySet<string> | null;
  readonly admin: boolean;
}

interface Subscriber {
  readonly res: ServerResponse;
  readonly filter: FeedFilter;
  blockedSince: number | null;
  dropped: number;
  lastWriteAt: number;
}

/** A comment line is sent after this much silence, so proxies and browsers keep the stream open. */
const KEEPALIVE_MS = 15_000;

/** The live feed of one server node. */
export class LiveFeed {
  private pending: FeedInput[] = [];
  private overflow = 0;
  private readonly subscribers = new Set<Subscriber>();
  private readonly cache = new Map<string, { hostname: string; groupId: string; at: number }>();
  private timer: NodeJS.Timeout | null = null;
  private ticking = false;
  private readonly tickMs: number;
  private readonly maxPerBatch: number;
  private readonly maxPending: number;
  private readonly slowCloseMs: number;
  private readonly briefTtlMs: number;

  constructor(private readonly deps: LiveFeedDeps) {
    this.tickMs = deps.tickMs ?? 200;
    this.maxPerBatch = deps.maxPerBatch ?? 200;
    this.maxPending = deps.maxPending ?? 20_000;
    this.slowCloseMs = deps.slowCloseMs ?? 30_000;
    this.briefTtlMs = deps.briefTtlMs ?? 10_000;
  }

  /** Takes one event in (cheap: no I/O here). */
  publish(e: FeedInput): void {
    if (this.subscribers.size === 0) return;
    if (this.pending.length >= this.maxPending) {
      this.overflow += 1;
      return;
    }
    this.pending.push(e);
  }

  /** Forgets what the feed knows about a device (after a move), so its next event is scoped afresh. */
  forget(deviceId: string): void {
    this.cache.delete(deviceId);
  }

  /** Number of open subscriptions. */
  get size(): number {
    return this.subscribers.size;
  }

  /** Starts streaming to a response (already hijacked); ends when the client goes. */
  subscribe(res: ServerResponse, filter: FeedFilter): void {
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', connection: 'keep-alive', 'x-accel-buffering': 'no' });
    res.write(': rollcall live feed\nretry: 2000\n\n');
    const sub: Subscriber = { res, filter, blockedSince: null, dropped: 0, lastWriteAt: Date.now() };
    this.subscribers.add(sub);
    res.on('close', () => this.subscribers.delete(sub));
    res.on('drain', () => (sub.blockedSince = null));
    if (!this.timer) {
      this.timer = setInterval(() => void this.tick(), this.tickMs);
      this.timer.unref();
    }
  }

  /** Ends every subscription and stops the timer. */
  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    for (const s of this.subscribers) s.res.end();
    this.subscribers.clear();
    this.pending = [];
  }

  private async tick(): Promise<void> {
    if (this.ticking) return;
    if (this.subscribers.size === 0) {
      if (this.timer) clearInterval(this.timer);
      this.timer = null;
      this.pending = [];
      this.overflow = 0;
      return;
    }
    this.ticking = true;
    try {
      const events = this.pending;
      const overflow = this.overflow;
      this.pending = [];
      this.overflow = 0;
      const items = await this.coalesce(events);
      const now = Date.now();
      for (const sub of this.subscribers) this.send(sub, items, overflow, now);
    } catch (err) {
      this.deps.log.error({ err: (err as Error).message }, 'live feed tick failed');
    } finally {
      this.ticking = false;
    }
  }

  private async coalesce(events: readonly FeedInput[]): Promise<FeedItem[]> {
    if (events.length === 0) return [];
    const now = Date.now();
    const unknown = new Set<string>();
    for (const e of events) {
      const c = e.deviceId ? this.cache.get(e.deviceId) : undefined;
      if (e.deviceId && (!c || now - c.at > this.briefTtlMs)) unknown.add(e.deviceId);
    }
    if (unknown.size > 0) {
      const found = await this.deps.briefs([...unknown]);
      for (const id of unknown) {
        const b = found.get(id);
        if (b) this.cache.set(id, { ...b, at: now });
        else this.cache.delete(id);
      }
      if (this.cache.size > 200_000) this.cache.clear();
    }
    const items: FeedItem[] = [];
    const checkinAt = new Map<string, number>();
    for (const e of events) {
      const brief = e.deviceId ? this.cache.get(e.deviceId) : undefined;
      const base = { deviceId: e.deviceId, hostname: brief?.hostname ?? null, groupId: brief?.groupId ?? null, at: e.at };
      if (e.kind === 'checkin') {
        const i = checkinAt.get(e.deviceId);
        if (i !== undefined) {
          const prev = items[i]!;
          items[i] = { ...prev, at: Math.max(prev.at, e.at), count: prev.count + 1 };
          continue;
        }
        checkinAt.set(e.deviceId, items.length);
        items.push({ ...base, kind: 'checkin', count: 1, detail: null, address: null });
      } else if (e.kind === 'connect') {
        items.push({ ...base, kind: 'connect', count: 1, detail: null, address: e.address });
      } else if (e.kind === 'disconnect') {
        items.push({ ...base, kind: 'disconnect', count: 1, detail: `${e.code}${e.reason ? ` ${e.reason}` : ''}`, address: null });
      } else {
        items.push({ ...base, kind: 'reject', count: 1, detail: e.reason, address: e.address });
      }
    }
    return items;
  }

  private send(sub: Subscriber, items: readonly FeedItem[], overflow: number, now: number): void {
    const visible = sub.filter.visibleGroups();
    // Rejects of unknown certificates belong to no group: only admins see them.
    const mine = visible === null ? items : items.filter((i) => i.groupId !== null && visible.has(i.groupId));
    if (sub.blockedSince !== null) {
      sub.dropped += mine.length;
      if (now - sub.blockedSince > this.slowCloseMs) {
        this.deps.log.warn({ dropped: sub.dropped }, 'live feed subscriber too slow; disconnected');
        sub.res.destroy();
        this.subscribers.delete(sub);
      }
      return;
    }
    const more = Math.max(0, mine.length - this.maxPerBatch) + sub.dropped + (sub.filter.admin ? overflow : 0);
    if (mine.length === 0 && more === 0) {
      if (now - sub.lastWriteAt >= KEEPALIVE_MS) {
        sub.lastWriteAt = now;
        if (!sub.res.write(': keepalive\n\n')) sub.blockedSince = now;
      }
      return;
    }
    sub.lastWriteAt = now;
    const batch: FeedBatch = { items: mine.length > this.maxPerBatch ? mine.slice(mine.length - this.maxPerBatch) : mine, more };
    sub.dropped = 0;
    if (!sub.res.write(`data: ${JSON.stringify(batch)}\n\n`)) sub.blockedSince = now;
  }
}
