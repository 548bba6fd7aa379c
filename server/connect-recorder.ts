/**
 * Connect-time writes, batched: each agent that says hello updates its
 * device row (last connect, address, hostname, fingerprint, version, OS)
 * and its sighting. Written one by one, that is two SQLite commits (two
 * fsyncs with synchronous=FULL) per connect, queued in front of the
 * certificate lookups of the agents still connecting; in a reconnect storm
 * of thousands of agents that queue, not TLS, would set the pace.
 *
 * Here the facts of every hello that arrives while a batch is being
 * written wait and go into the next batch, in one transaction of two
 * multi-row statements (one for the devices, one for the sightings:
 * each statement costs some 15-25 µs of CPU however small); the first
 * hello after a quiet spell is written on the next turn of the event loop.
 * With `batchIntervalMs`, a batch starts at least that long after the one
 * before it started: at a few hundred connects a second the batches held
 * one or two hellos each, and the transaction (BEGIN, two statements,
 * COMMIT with its WAL sync) was most of the primary's CPU per connect.
 * Facts of the same device are coalesced (the newest wins). Nothing waits
 * for these writes (the welcome never did), and a failed batch is logged
 * and dropped, as a failed single write was: the facts are refreshed at
 * the agent's next connect.
 */
import { performance } from 'node:perf_hooks';
import type { Database, Sql } from './storage/db.js';
import type { ConnectFacts } from './storage/devices-store.js';

/** One agent sighting (health evidence). */
export interface AgentSighting {
  readonly deviceId: string;
  readonly groupId: string;
  readonly address: string;
  readonly at: number;
}

/** Where a batch goes. */
export interface ConnectSink {
  readonly db: Pick<Database, 'transaction'>;
  /** Writes the connect facts of several devices (each once). */
  recordConnects(batch: ReadonlyMap<string, ConnectFacts>, sql: Sql): Promise<void>;
  /** Writes several sightings (each address and device once). */
  recordSightings(list: readonly AgentSighting[], sql: Sql): Promise<void>;
}

/** Batch counters. */
export interface ConnectRecorderStats {
  batches: number;
  connects: number;
  sightings: number;
  failedBatches: number;
}

type Waiter = { resolve(): void; reject(err: unknown): void };

/**
 * The server's batch interval: a connect's facts reach the database within
 * about this long (nothing waits for them), and a reconnect storm of a few
 * hundred agents a second writes some tens of hellos per transaction.
 */
export const CONNECT_BATCH_INTERVAL_MS = 50;

/** Options of a {@link ConnectRecorder}. */
export interface ConnectRecorderOptions {
  /** Least time from one batch's start to the next one's (0: the next turn of the event loop once the last is written). */
  readonly batchIntervalMs?: number;
  /** Monotonic milliseconds; a seam for tests. */
  readonly clock?: () => number;
}

/** Batches connect facts and sightings into one transaction per batch. */
export class ConnectRecorder {
  readonly stats: ConnectRecorderStats = { batches: 0, connects: 0, sightings: 0, failedBatches: 0 };
  private connects = new Map<string, ConnectFacts>();
  private sightings = new Map<string, AgentSighting>();
  private waiters: Waiter[] = [];
  private writing: Promise<void> | undefined;
  private scheduled = false;
  /** The pending start of the next batch when it waits for the interval. */
  private timer: NodeJS.Timeout | undefined;
  private lastStartAt = -Infinity;
  private closed = false;
  private readonly intervalMs: number;
  private readonly clock: () => number;

  constructor(
    private readonly sink: ConnectSink,
    opts: ConnectRecorderOptions = {},
  ) {
    this.intervalMs = opts.batchIntervalMs ?? 0;
    this.clock = opts.clock ?? (() => performance.now());
  }

  /** Queues a device's connect facts; resolves once they are written (rejects when their batch failed). */
  recordConnect(deviceId: string, facts: ConnectFacts): Promise<void> {
    this.connects.set(deviceId, facts);
    return this.enqueue();
  }

  /** Queues a sighting; resolves once it is written. */
  recordSighting(s: AgentSighting): Promise<void> {
    this.sightings.set(`${s.address}|${s.deviceId}`, s);
    return this.enqueue();
  }

  private enqueue(): Promise<void> {
    if (this.closed) return Promise.reject(new Error('connect recorder closed'));
    const done = new Promise<void>((resolve, reject) => this.waiters.push({ resolve, reject }));
    this.schedule();
    return done;
  }

  private schedule(): void {
    if (this.scheduled || this.writing) return;
    this.scheduled = true;
    const waitMs = this.lastStartAt + this.intervalMs - this.clock();
    if (waitMs <= 0) setImmediate(() => this.start());
    else {
      // Unreferenced: close() writes what is queued, and a process on its way out need not wait for the interval.
      this.timer = setTimeout(() => this.start(), Math.ceil(waitMs));
      this.timer.unref();
    }
  }

  /** Starts the queued batch (from the schedule, or at once from flush). */
  private start(): void {
    if (!this.scheduled) return; // flush started it already
    clearTimeout(this.timer);
    this.timer = undefined;
    this.scheduled = false;
    this.lastStartAt = this.clock();
    this.writing = this.writeBatch().finally(() => {
      this.writing = undefined;
      if (this.waiters.length > 0) this.schedule();
    });
  }

  private async writeBatch(): Promise<void> {
    const connects = this.connects;
    const sightings = this.sightings;
    const waiters = this.waiters;
    this.connects = new Map();
    this.sightings = new Map();
    this.waiters = [];
    if (waiters.length === 0) return;
    try {
      await this.sink.db.transaction(async (sql) => {
        if (connects.size > 0) await this.sink.recordConnects(connects, sql);
        if (sightings.size > 0) await this.sink.recordSightings([...sightings.values()], sql);
      });
      this.stats.batches += 1;
      this.stats.connects += connects.size;
      this.stats.sightings += sightings.size;
      for (const w of waiters) w.resolve();
    } catch (err) {
      this.stats.failedBatches += 1;
      for (const w of waiters) w.reject(err);
    }
  }

  /** Resolves once everything queued so far is written (or failed). */
  async flush(): Promise<void> {
    while (this.writing || this.scheduled || this.waiters.length > 0) {
      if (this.writing) await this.writing;
      else if (this.timer) this.start(); // no waiting out the interval
      else await new Promise((r) => setImmediate(r));
    }
  }

  /** Writes what is queued and refuses more. */
  async close(): Promise<void> {
    await this.flush();
    this.closed = true;
  }
}
