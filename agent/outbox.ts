/**
 * The durable outbox: everything the agent must report besides its
 * check-ins (failed connection attempts, probe rounds, inventory changes)
 * is appended here before it is sent, and leaves only when the server has
 * acknowledged its sequence number.
 *
 * - Appends are group-committed: every append waiting while a write runs
 *   goes into the next write, followed by one fsync. `append()` resolves
 *   only after that fsync, and only durable events are ever sent, so the
 *   server can never hold an event the agent could lose.
 * - Sequence numbers are assigned at write time, strictly increasing, with
 *   no gaps from failed writes.
 * - Bounded by count and bytes. When full, the oldest unacknowledged
 *   events are dropped, a floor marker records it, and a `dropped` event
 *   (count and last dropped seq) is appended so the server learns of it.
 * - A failed write (ENOSPC, EIO) is cut back off the file, so the file
 *   never holds a half record from it; the append rejects with
 *   `OUTBOX_DISK_FULL` or `OUTBOX_WRITE_FAILED` and `lastError` says so.
 * - On open, a torn or damaged record ends the good part of the file: the
 *   rest is truncated away (and logged), everything before it is kept.
 * - When the finished part of the file grows past `compactBytes`, the file
 *   is rewritten (temp file, fsync, rename) with only the pending events.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { RollcallError } from '../common/errors.js';
import { decodeRecords, encodeRecord, type OutboxEvent } from './outbox-format.js';
import { isoTime } from '../common/iso-time.js';

export type { OutboxEvent } from './outbox-format.js';

/** Bounds of the outbox. */
export interface OutboxLimits {
  readonly maxEvents: number;
  readonly maxBytes: number;
  /** Rewrite the file when this many bytes of it are finished records. */
  readonly compactBytes: number;
}

/** Defaults: 10,000 events or 8 MiB, compacted past 1 MiB of finished records. */
export const DEFAULT_OUTBOX_LIMITS: OutboxLimits = Object.freeze({ maxEvents: 10_000, maxBytes: 8 * 1024 * 1024, compactBytes: 1024 * 1024 });

/** The part of a file handle the outbox uses; a seam for failure injection in tests. */
export interface OutboxFile {
  write(buf: Buffer): Promise<unknown>;
  sync(): Promise<void>;
  truncate(len: number): Promise<void>;
  close(): Promise<void>;
}

/** Options for {@link Outbox.open}. */
export interface OutboxOptions {
  readonly limits?: Partial<OutboxLimits>;
  /** Called with what recovery found (a damaged tail) and with write errors. */
  readonly onProblem?: (message: string, err?: unknown) => void;
  /** Opens the file for appending (default: fs.open(file, 'a')). */
  readonly openFile?: (file: string) => Promise<OutboxFile>;
  readonly now?: () => number;
}

/** What `status` shows about the outbox. */
export interface OutboxStats {
  readonly pending: number;
  readonly bytes: number;
  /** Highest sequence number ever assigned. */
  readonly lastSeq: number;
  /** Events dropped because the outbox was full, since the agent started. */
  readonly dropped: number;
  readonly lastError: { readonly code: string; readonly message: string; readonly at: string } | null;
}

interface Waiting {
  readonly kind: string;
  readonly data: unknown;
  readonly at: number;
  resolve(seq: number): void;
  reject(err: unknown): void;
}

interface Pending {
  readonly event: OutboxEvent;
  readonly bytes: number;
}

/** The outbox of one state directory. */
export class Outbox {
  private pending: Pending[] = [];
  private pendingBytes = 0;
  private fileBytes = 0;
  private lastSeq = 0;
  private floor = 0;
  private markedFloor = 0;
  private dropped = 0;
  private lastError: OutboxStats['lastError'] = null;
  private waiting: Waiting[] = [];
  private work: Promise<void> = Promise.resolve();
  private scheduled = false;
  private readonly listeners = new Set<() => void>();
  private readonly limits: OutboxLimits;
  private handle!: OutboxFile;

  private constructor(
    private readonly file: string,
    private readonly opts: OutboxOptions,
  ) {
    this.limits = { ...DEFAULT_OUTBOX_LIMITS, ...opts.limits };
  }

  /** Opens (creating if needed) and recovers the outbox file. */
  static async open(file: string, opts: OutboxOptions = {}): Promise<Outbox> {
    const box = new Outbox(file, opts);
    await box.recover();
    return box;
  }

  /** Appends an event; resolves with its sequence number once it is on disk. */
  append(kind: string, data: unknown): Promise<number> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ kind, data, at: (this.opts.now ?? Date.now)(), resolve, reject });
      this.schedule();
    });
  }

  /** Durable events not yet acknowledged with `seq > after`, in order, at most `maxCount` and about `maxBytes`. */
  peek(after: number, maxCount: number, maxBytes: number): OutboxEvent[] {
    const out: OutboxEvent[] = [];
    let bytes = 0;
    for (const p of this.pending) {
      if (p.event.seq <= after) continue;
      if (out.length >= maxCount || (out.length > 0 && bytes + p.bytes > maxBytes)) break;
      out.push(p.event);
      bytes += p.bytes;
    }
    return out;
  }

  /** The server stored every event up to `seq`: forget them (the floor marker is written in the background). */
  ack(seq: number): void {
    if (seq <= this.floor) return;
    this.setFloor(Math.min(seq, this.lastSeq));
    this.schedule();
    this.changed();
  }

  /**
   * The server already holds events up to `serverSeq`, more than this
   * outbox ever numbered: its history was lost (a damaged or deleted
   * file). Pending events are renumbered above it, durably, so the server
   * does not take them for redeliveries.
   */
  async rebase(serverSeq: number): Promise<boolean> {
    if (serverSeq <= this.lastSeq) return false;
    await this.enqueue(async () => {
      const shift = serverSeq - this.floor;
      this.pending = this.pending.map((p) => ({ event: { ...p.event, seq: p.event.seq + shift }, bytes: p.bytes }));
      this.floor = this.markedFloor = serverSeq;
      this.lastSeq = Math.max(serverSeq, ...this.pending.map((p) => p.event.seq));
      await this.compact();
    });
    this.changed();
    return true;
  }

  /** Numbers for `status`. */
  stats(): OutboxStats {
    return { pending: this.pending.length, bytes: this.pendingBytes, lastSeq: this.lastSeq, dropped: this.dropped, lastError: this.lastError };
  }

  /** Calls `fn` whenever events became durable, were acknowledged or were renumbered. */
  onChange(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Writes what is queued, then closes the file. */
  async close(): Promise<void> {
    await this.enqueue(async () => undefined);
    await this.handle.close();
  }

  private async recover(): Promise<void> {
    await fs.mkdir(path.dirname(this.file), { recursive: true, mode: 0o700 });
    let buf: Buffer;
    try {
      buf = await fs.readFile(this.file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new RollcallError('STATE_UNREADABLE', `cannot read ${this.file}: ${(err as Error).message}`, { cause: err });
      buf = Buffer.alloc(0);
    }
    const decoded = decodeRecords(buf);
    for (const { record, bytes } of decoded.records) {
      if ('floor' in record) {
        this.setFloor(Math.max(this.floor, record.floor));
        this.lastSeq = Math.max(this.lastSeq, record.floor);
      } else if (record.event.seq > this.lastSeq) {
        this.lastSeq = record.event.seq;
        if (record.event.seq > this.floor) this.addPending({ event: record.event, bytes });
      }
    }
    this.markedFloor = this.floor;
    this.handle = await (this.opts.openFile ?? openAppend)(this.file);
    if (decoded.problem) {
      this.opts.onProblem?.(`outbox ${this.file}: ${decoded.problem}; kept ${decoded.records.length} good records, cut off ${buf.length - decoded.goodBytes} damaged bytes`);
      await this.handle.truncate(decoded.goodBytes);
      await this.handle.sync();
    }
    this.fileBytes = decoded.goodBytes;
  }

  private addPending(p: Pending): void {
    this.pending.push(p);
    this.pendingBytes += p.bytes;
  }

  private setFloor(seq: number): void {
    this.floor = seq;
    let n = 0;
    while (n < this.pending.length && this.pending[n]!.event.seq <= seq) {
      this.pendingBytes -= this.pending[n]!.bytes;
      n += 1;
    }
    if (n > 0) this.pending = this.pending.slice(n);
  }

  private changed(): void {
    for (const fn of this.listeners) fn();
  }

  private enqueue(job: () => Promise<void>): Promise<void> {
    const run = this.work.then(job);
    this.work = run.catch(() => undefined);
    return run;
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    void this.enqueue(async () => {
      this.scheduled = false;
      try {
        await this.flush();
      } catch (err) {
        // Appends already resolved or rejected; what failed here is compaction, retried at the next flush.
        this.opts.onProblem?.(`outbox ${this.file}: ${(err as Error).message}`, err);
      }
    });
  }

  /** One group commit: the queued appends, a floor marker if due, drops if full. */
  private async flush(): Promise<void> {
    const batch = this.waiting;
    this.waiting = [];
    const frames: Buffer[] = [];
    const events: Pending[] = batch.map((w, i) => {
      const event: OutboxEvent = { seq: this.lastSeq + 1 + i, kind: w.kind, at: w.at, data: w.data };
      const frame = encodeRecord({ event });
      return { event, bytes: frame.length };
    });
    const drop = this.overflow(events);
    const floor = drop ? drop.throughSeq : this.floor;
    if (floor > this.markedFloor) frames.push(encodeRecord({ floor }));
    for (const e of events) frames.push(encodeRecord({ event: e.event }));
    let dropEvent: Pending | undefined;
    if (drop) {
      const event: OutboxEvent = { seq: this.lastSeq + events.length + 1, kind: 'dropped', at: (this.opts.now ?? Date.now)(), data: { count: drop.count, throughSeq: drop.throughSeq } };
      const frame = encodeRecord({ event });
      dropEvent = { event, bytes: frame.length };
      frames.push(frame);
    }
    if (frames.length === 0) return;
    const buf = Buffer.concat(frames);
    try {
      await this.handle.write(buf);
      await this.handle.sync();
    } catch (err) {
      await this.writeFailed(err, batch);
      return;
    }
    this.fileBytes += buf.length;
    this.lastError = null;
    if (drop) {
      this.dropped += drop.lost;
      this.opts.onProblem?.(`outbox full: dropped the ${drop.lost} oldest events (through seq ${drop.throughSeq})`);
    }
    this.setFloor(floor);
    this.markedFloor = floor;
    for (const e of dropEvent ? [...events, dropEvent] : events) this.addPending(e);
    this.lastSeq += events.length + (dropEvent ? 1 : 0);
    batch.forEach((w, i) => w.resolve(events[i]!.event.seq));
    if (this.fileBytes - this.pendingBytes > this.limits.compactBytes && this.fileBytes - this.pendingBytes > this.pendingBytes) await this.compact();
    if (events.length > 0 || dropEvent) this.changed();
  }

  /**
   * Which oldest pending events must go so that `incoming` fits. A
   * `dropped` event that goes too passes its count on, so the newest
   * `dropped` event always covers everything lost since the last one the
   * server stored.
   */
  private overflow(incoming: readonly Pending[]): { count: number; throughSeq: number; lost: number } | null {
    let count = this.pending.length + incoming.length + 1;
    let bytes = this.pendingBytes + incoming.reduce((n, e) => n + e.bytes, 0) + 128;
    let n = 0;
    let carried = 0;
    let lost = 0;
    while (n < this.pending.length && (count > this.limits.maxEvents || bytes > this.limits.maxBytes)) {
      const { event } = this.pending[n]!;
      if (event.kind === 'dropped') carried += (event.data as { count: number }).count;
      else lost += 1;
      count -= 1;
      bytes -= this.pending[n]!.bytes;
      n += 1;
    }
    return n === 0 ? null : { count: carried + lost, throughSeq: this.pending[n - 1]!.event.seq, lost };
  }

  private async writeFailed(err: unknown, batch: readonly Waiting[]): Promise<void> {
    const failure =
      (err as NodeJS.ErrnoException).code === 'ENOSPC'
        ? new RollcallError('OUTBOX_DISK_FULL', `the disk holding ${this.file} is full; ${batch.length} event(s) not recorded, earlier ones are intact`, { cause: err, retryable: true })
        : new RollcallError('OUTBOX_WRITE_FAILED', `cannot write ${this.file}: ${(err as Error).message}; ${batch.length} event(s) not recorded`, { cause: err, retryable: true });
    this.lastError = { code: failure.code, message: failure.message, at: isoTime() };
    try {
      await this.handle.truncate(this.fileBytes); // cut off whatever part of this write reached the file
    } catch (truncErr) {
      this.opts.onProblem?.(`cannot cut a failed write off ${this.file}; recovery will on the next start`, truncErr);
    }
    this.opts.onProblem?.(failure.message, err);
    for (const w of batch) w.reject(failure);
  }

  /** Rewrites the file with a floor marker and the pending events only. */
  private async compact(): Promise<void> {
    const frames = [encodeRecord({ floor: this.floor }), ...this.pending.map((p) => encodeRecord({ event: p.event }))];
    const buf = Buffer.concat(frames);
    const tmp = `${this.file}.compact`;
    const out = await fs.open(tmp, 'w', 0o600);
    try {
      await out.writeFile(buf);
      await out.sync();
    } finally {
      await out.close();
    }
    await this.handle.close();
    try {
      await fs.rename(tmp, this.file);
      const dir = await fs.open(path.dirname(this.file), 'r');
      await dir.sync().finally(() => dir.close());
      this.fileBytes = buf.length;
      this.markedFloor = this.floor;
    } finally {
      this.handle = await (this.opts.openFile ?? openAppend)(this.file);
    }
  }
}

async function openAppend(file: string): Promise<OutboxFile> {
  const fh = await fs.open(file, 'a', 0o600);
  // A write to a nearly full disk lands partly without an error; keep writing, so the next call reports ENOSPC.
  const write = async (buf: Buffer): Promise<void> => {
    for (let offset = 0; offset < buf.length; ) {
      const { bytesWritten } = await fh.write(buf, offset, buf.length - offset);
      if (bytesWritten === 0) throw Object.assign(new Error(`short write to ${file}`), { code: 'EIO' });
      offset += bytesWritten;
    }
  };
  return { write, sync: () => fh.sync(), truncate: (len) => fh.truncate(len), close: () => fh.close() };
}
