/**
 * Write-behind for check-ins with group commit.
 *
 * Check-ins are coalesced in memory per device and written as multi-row
 * statements in one transaction. While a batch is being written, new
 * check-ins gather for the next one, so under load each transaction carries
 * many check-ins and at rest a lone check-in is written at once. `record`
 * resolves only when the check-in is durable: that is when it may be acked.
 * In the server the durable write goes to the check-in journal
 * (storage/checkin-journal.ts), which keeps acks clear of the main database.
 */
import type { CheckinUpdate } from './storage/devices-store.js';

/** One check-in as the session reports it. */
export interface CheckinRecord {
  readonly deviceId: string;
  readonly seq: number;
  readonly at: number;
  readonly address: string;
  /** 1 for a new check-in, 0 for a redelivered one (dedupe). */
  readonly count: 0 | 1;
}

/** The narrow storage seam the writer needs. */
export type ApplyCheckins = (updates: readonly CheckinUpdate[]) => Promise<void>;

/** Options for {@link CheckinWriter}. */
export interface CheckinWriterOptions {
  /** Extra wait before a batch is written, to gather more (0: group commit only). */
  readonly flushDelayMs: number;
  /**
   * Makes written check-ins visible to readers, when the durable write goes
   * somewhere else first (the check-in journal's fold); `flush` awaits it.
   */
  readonly settle?: () => Promise<void>;
  /**
   * Least time between the starts of two writes (default 0: none). A busy
   * writer then gathers more check-ins per transaction (fewer commits, each
   * with its fsync and thread-pool work); a check-in arriving when the
   * writer has written nothing for this long is still written at once.
   */
  readonly minGapMs?: number;
  /** Clock in milliseconds for the gap (tests); default performance.now. */
  readonly now?: () => number;
}

interface Waiter {
  resolve(): void;
  reject(err: unknown): void;
  /** Check-ins this waiter stands for. */
  readonly checkins: number;
}

/** Coalesces check-ins and writes them in batches. */
export class CheckinWriter {
  private pending = new Map<string, { seq: number; at: number; address: string; count: number }>();
  private waiters: Waiter[] = [];
  private writing: Promise<void> | null = null;
  /** The batch being written now, so its sequence numbers stay visible until durable. */
  private inflight = new Map<string, { seq: number }>();
  /** Highest sequence number written per device since start: fresher than a row read before a write finished. */
  private readonly written = new Map<string, number>();
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  private lastStartAt = -Infinity;
  /** Totals, for metrics and benchmarks. */
  readonly stats = { batches: 0, checkins: 0, rows: 0 };

  constructor(
    private readonly apply: ApplyCheckins,
    private readonly opts: CheckinWriterOptions,
  ) {}

  /** Queues a check-in; resolves once it is durable, rejects if the write failed. */
  record(r: CheckinRecord): Promise<void> {
    return this.recordAll([r]);
  }

  /** Queues several check-ins (an agent worker's batch); resolves once all are durable, rejects if the write failed. */
  recordAll(records: readonly CheckinRecord[]): Promise<void> {
    if (this.closed) return Promise.reject(new Error('check-in writer is closed'));
    for (const r of records) {
      const prev = this.pending.get(r.deviceId);
      this.pending.set(r.deviceId, {
        seq: Math.max(prev?.seq ?? 0, r.seq),
        at: Math.max(prev?.at ?? 0, r.at),
        address: r.address,
        count: (prev?.count ?? 0) + r.count,
      });
    }
    const done = new Promise<void>((resolve, reject) => this.waiters.push({ resolve, reject, checkins: records.length }));
    this.schedule();
    return done;
  }

  /** Highest sequence number queued but not yet written for a device (0 when none). */
  pendingSeq(deviceId: string): number {
    return this.pending.get(deviceId)?.seq ?? 0;
  }

  /**
   * Highest sequence number accepted for a device since start, whether
   * queued, being written or written (0 when none).
   */
  latestSeq(deviceId: string): number {
    return Math.max(this.pending.get(deviceId)?.seq ?? 0, this.inflight.get(deviceId)?.seq ?? 0, this.written.get(deviceId) ?? 0);
  }

  /** Writes everything queued; resolves when it is durable and readers see it. */
  async flush(): Promise<void> {
    while (this.writing || this.pending.size > 0) {
      if (this.writing) await this.writing.catch(() => undefined); // its waiters already got the error
      else this.startWrite();
    }
    await this.opts.settle?.();
  }

  /** Flushes, then refuses further check-ins. */
  async close(): Promise<void> {
    await this.flush();
    this.closed = true;
  }

  private schedule(): void {
    if (this.writing || this.timer) return;
    const gap = this.opts.minGapMs ? this.lastStartAt + this.opts.minGapMs - this.clock() : 0;
    const wait = Math.max(this.opts.flushDelayMs, gap);
    if (wait > 0) {
      this.timer = setTimeout(() => {
        this.timer = null;
        this.startWrite();
      }, wait);
    } else {
      this.startWrite();
    }
  }

  private clock(): number {
    return this.opts.now ? this.opts.now() : performance.now();
  }

  private startWrite(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (this.writing || this.pending.size === 0) return;
    if (this.opts.minGapMs) this.lastStartAt = this.clock();
    const batch = this.pending;
    const waiters = this.waiters;
    this.inflight = batch;
    this.pending = new Map();
    this.waiters = [];
    const updates: CheckinUpdate[] = [];
    for (const [deviceId, u] of batch) updates.push({ deviceId, ...u });
    this.writing = this.apply(updates).then(
      () => {
        for (const u of updates) this.written.set(u.deviceId, Math.max(this.written.get(u.deviceId) ?? 0, u.seq));
        this.stats.batches += 1;
        this.stats.rows += updates.length;
        for (const w of waiters) this.stats.checkins += w.checkins;
        for (const w of waiters) w.resolve();
      },
      (err: unknown) => {
        for (const w of waiters) w.reject(err);
        throw err;
      },
    );
    this.writing
      .catch(() => undefined) // reported to every waiter above
      .finally(() => {
        this.writing = null;
        this.inflight = new Map();
        if (this.pending.size > 0) this.schedule();
      });
  }
}
