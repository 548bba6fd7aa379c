/**
 * What the agent still has to report besides check-ins: its failed
 * connection attempts (kept on disk, so a restart during an outage loses
 * none) and its latest port probes (kept in memory: they are redone). Both
 * are bounded; when the attempt list is full the oldest are dropped and
 * counted, and the count is reported too. Items leave only when the server
 * acknowledged the report that carried them.
 */
import fs from 'node:fs/promises';
import type { FailedAttempt, ProbeResult, Report } from '../common/protocol.js';
import { writePrivateFile } from './state.js';

/** Most failed attempts kept. */
export const MAX_ATTEMPTS = 256;
/** Most probe results kept (the newest). */
export const MAX_PROBES = 64;

interface Stored {
  attempts: FailedAttempt[];
  dropped: number;
}

/** The bounded, durable queue of report items. */
export class ReportQueue {
  private attempts: FailedAttempt[] = [];
  private dropped = 0;
  private probes: ProbeResult[] = [];
  private nextId = 1;
  private inflight: { id: number; attempts: number; dropped: number; probes: number } | null = null;
  private writes: Promise<void> = Promise.resolve();
  private readonly listeners = new Set<() => void>();

  private constructor(
    private readonly file: string,
    private readonly onWriteError: (err: unknown) => void,
  ) {}

  /** Loads the queue from its file (a missing or damaged file starts empty). */
  static async open(file: string, onWriteError: (err: unknown) => void): Promise<ReportQueue> {
    const q = new ReportQueue(file, onWriteError);
    try {
      const stored = JSON.parse(await fs.readFile(file, 'utf8')) as Partial<Stored>;
      if (Array.isArray(stored.attempts)) q.attempts = stored.attempts.slice(-MAX_ATTEMPTS);
      if (typeof stored.dropped === 'number' && stored.dropped >= 0) q.dropped = stored.dropped;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') onWriteError(err); // damaged: start empty, but say so
    }
    return q;
  }

  /** Records a failed attempt durably. */
  addAttempt(a: FailedAttempt): void {
    this.attempts.push({ ...a, message: a.message.slice(0, 256), code: a.code.slice(0, 64) });
    if (this.attempts.length > MAX_ATTEMPTS) {
      const excess = this.attempts.length - MAX_ATTEMPTS;
      this.attempts.splice(0, excess);
      this.dropped += excess;
      if (this.inflight) this.inflight.attempts = Math.max(0, this.inflight.attempts - excess);
    }
    this.persist();
    this.changed();
  }

  /** Replaces the probe results with a fresh round. */
  setProbes(results: readonly ProbeResult[]): void {
    this.probes = results.slice(-MAX_PROBES);
    if (this.inflight) this.inflight.probes = 0;
    this.changed();
  }

  /** Number of attempts waiting. */
  get pendingAttempts(): number {
    return this.attempts.length;
  }

  /** The next report to send, or null when there is nothing (or one is already in flight). */
  next(): Report | null {
    if (this.inflight || (this.attempts.length === 0 && this.probes.length === 0 && this.dropped === 0)) return null;
    const report: Report = { type: 'report', id: this.nextId++, probes: [...this.probes], attempts: [...this.attempts], droppedAttempts: this.dropped };
    this.inflight = { id: report.id, attempts: report.attempts.length, dropped: report.droppedAttempts, probes: report.probes.length };
    return report;
  }

  /** The server stored report `id`: forget what it carried. */
  acked(id: number): void {
    if (!this.inflight || this.inflight.id !== id) return;
    this.attempts.splice(0, this.inflight.attempts);
    this.dropped -= this.inflight.dropped;
    if (this.inflight.probes > 0) this.probes = [];
    this.inflight = null;
    this.persist();
    this.changed();
  }

  /** The channel closed: a report in flight will be sent again. */
  lost(): void {
    this.inflight = null;
  }

  /** Calls `fn` whenever there may be something new to send. */
  onChange(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Resolves when queued writes are done. */
  flushed(): Promise<void> {
    return this.writes;
  }

  private changed(): void {
    for (const fn of this.listeners) fn();
  }

  private persist(): void {
    const body = JSON.stringify({ attempts: this.attempts, dropped: this.dropped } satisfies Stored);
    this.writes = this.writes.then(() => writePrivateFile(this.file, body)).catch(this.onWriteError);
  }
}
