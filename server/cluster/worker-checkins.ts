/**
 * Check-ins with agent workers, without a round trip to the primary.
 *
 * In a worker, {@link WorkerCheckins} group-commits check-ins to the
 * worker's own journal (storage/worker-journals.ts, through a CheckinWriter)
 * and resolves each once it is committed there, so the session acks it at
 * once. The check-ins it stored go to the primary afterwards, one
 * `checkinsSeen` note per `noteEveryMs` (no answer), for the live feed and
 * the latest sequence per device; the primary folds the journal itself.
 *
 * In the primary, {@link CheckinsSeen} keeps the highest sequence per
 * device from those notes and from the folds, which admission adds to the
 * worker's own. A device that moves to another worker is welcomed with
 * the latest sequence its old worker stored: that worker sends its note
 * early before it answers the replacement's probe (the old channel still
 * open) and before it says a channel closed; a dead worker's journal is
 * folded as soon as it exits. What is left: a check-in the old worker was
 * still committing when asked, and a reconnect that beats the fold of a
 * dead worker's journal (milliseconds). Then `lastSeq` is lower than
 * stored; the agent never goes back, and a check-in it redelivers from
 * that moment is counted twice.
 */
import type { SessionEvent } from '../agent-session.js';
import { CheckinWriter, type CheckinRecord } from '../checkin-writer.js';
import type { CheckinUpdate } from '../storage/devices-store.js';

/** One stored check-in as the primary hears of it. */
export interface SeenCheckin {
  readonly deviceId: string;
  readonly seq: number;
  readonly at: number;
}

/** How often a worker tells the primary what it stored (the live feed's tick). */
export const CHECKIN_NOTE_MS = 200;
/**
 * Least time between two journal commits of a busy worker: a check-in waits
 * at most this long for company, a lone one not at all. A commit costs the
 * box about 0.15 ms of CPU however few check-ins it carries (the statement,
 * the thread-pool hop, the WAL write and its fsync), so the gap grows with
 * the number of workers (each sees 1/N of the check-ins):
 * WORKER_COMMIT_GAP_PER_WORKER_MS per worker, within
 * [WORKER_COMMIT_GAP_MS, WORKER_MAX_COMMIT_GAP_MS], the top kept well
 * under the 50 ms ack latency goal. Measured with 6,000 agents on 9
 * workers at 100,000 agents' check-in rate (185 a second per worker): a
 * 10 ms gap cost 0.290 ms of server CPU per check-in (48 % of a core, as
 * 100,000 agents on 9 workers did), 25 ms 0.217 ms (36 %), ack p99 12 ->
 * 26 ms.
 */
export const WORKER_COMMIT_GAP_MS = 10;
export const WORKER_COMMIT_GAP_PER_WORKER_MS = 5;
export const WORKER_MAX_COMMIT_GAP_MS = 25;

/** The commit gap of each of `workers` agent workers (see {@link WORKER_COMMIT_GAP_MS}). */
export function workerCommitGapMs(workers: number): number {
  return Math.min(WORKER_MAX_COMMIT_GAP_MS, Math.max(WORKER_COMMIT_GAP_MS, WORKER_COMMIT_GAP_PER_WORKER_MS * workers));
}

/** The durable write a worker's check-ins go to. */
export interface CheckinAppend {
  append(updates: readonly CheckinUpdate[]): Promise<void>;
  /** Deletes the rows the primary folded (up to its watermark `upTo`); resolves with how many. */
  trim(upTo: number): Promise<number>;
  close(): Promise<void>;
}

/** A worker's check-ins: its journal, and the notes that tell the primary. */
export class WorkerCheckins {
  private readonly writer: CheckinWriter;
  private seen: SeenCheckin[] = [];
  private timer: NodeJS.Timeout | null = null;
  private readonly noteEveryMs: number;

  constructor(
    private readonly journal: CheckinAppend,
    private readonly notify: (items: SeenCheckin[]) => void,
    opts: { readonly noteEveryMs?: number; readonly minGapMs?: number } = {},
  ) {
    this.noteEveryMs = opts.noteEveryMs ?? CHECKIN_NOTE_MS;
    this.writer = new CheckinWriter((updates) => journal.append(updates), { flushDelayMs: 0, minGapMs: opts.minGapMs ?? WORKER_COMMIT_GAP_MS });
  }

  /** Totals of the writer (batches, check-ins, rows), for samples. */
  get stats(): Readonly<{ batches: number; checkins: number; rows: number }> {
    return this.writer.stats;
  }

  /** Resolves once the check-in is durable in this worker's journal; rejects if that write failed. */
  record(r: CheckinRecord): Promise<void> {
    return this.writer.record(r).then(() => {
      if (r.count === 0) return; // a redelivery: nothing new for the feed, and its sequence is known
      this.seen.push({ deviceId: r.deviceId, seq: r.seq, at: r.at });
      this.timer ??= setTimeout(() => this.flushNote(), this.noteEveryMs);
    });
  }

  /** Deletes what the primary has folded from this worker's journal (queued behind the appends; this worker stays the file's one writer). */
  trim(upTo: number): Promise<number> {
    return this.journal.trim(upTo);
  }

  /** Highest sequence accepted here for a device since this worker started (0 when none). */
  latestSeq(deviceId: string): number {
    return this.writer.latestSeq(deviceId);
  }

  /** Writes what is queued, sends the last note and closes the journal. */
  async close(): Promise<void> {
    try {
      await this.writer.close();
    } finally {
      this.flushNote();
      await this.journal.close();
    }
  }

  /**
   * Sends the note now, if there is news: before this worker answers a
   * probe or says a channel closed, so the primary knows its check-ins
   * before it welcomes the device on another worker (messages of one
   * channel arrive in order).
   */
  flushNote(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.seen.length === 0) return;
    const items = this.seen;
    this.seen = [];
    this.notify(items);
  }
}

/** The primary's view of the check-ins the workers stored. */
export class CheckinsSeen {
  private readonly latest = new Map<string, number>();

  constructor(private readonly onEvent: (e: SessionEvent) => void) {}

  /** A worker's note: raises each check-in in the live feed. */
  noted(items: readonly SeenCheckin[]): void {
    for (const c of items) {
      this.raise(c.deviceId, c.seq);
      this.onEvent({ kind: 'checkin', deviceId: c.deviceId, seq: c.seq, at: c.at });
    }
  }

  /** Check-ins folded from the workers' journals (including a dead worker's, whose last note may be lost). */
  folded(updates: readonly CheckinUpdate[]): void {
    for (const u of updates) this.raise(u.deviceId, u.seq);
  }

  /** Highest sequence the primary knows a worker stored for a device since it started (0 when none). */
  latestSeq(deviceId: string): number {
    return this.latest.get(deviceId) ?? 0;
  }

  private raise(deviceId: string, seq: number): void {
    if (seq > (this.latest.get(deviceId) ?? 0)) this.latest.set(deviceId, seq);
  }
}
