/**
 * What goes into the outbox: failed connection attempts, probe rounds,
 * inventory changes, the failed-attempt list a protocol-2 agent left
 * behind, check-ins recorded while offline (see offline-checkins.ts), and
 * (tests only) synthetic load. Append failures (a full disk)
 * are logged and shown in `status` by the outbox itself; they never stop
 * the agent.
 */
import fs from 'node:fs/promises';
import type { Logger } from 'pino';
import type { EventKind, FailedAttempt, Inventory, ProbeResult } from '../common/protocol.js';
import type { Outbox } from './outbox.js';
import type { ProbeSink } from './prober.js';
import { writePrivateFile, type AgentState } from './state.js';

/** Appends to the outbox, logging (not throwing) when that fails. */
export class OutboxFeed implements ProbeSink {
  constructor(
    private readonly outbox: Outbox,
    private readonly log: Logger,
  ) {}

  /** Appends one event; resolves with its seq, or null when it could not be recorded. */
  async add(kind: EventKind, data: unknown): Promise<number | null> {
    try {
      return await this.outbox.append(kind, data);
    } catch (err) {
      this.log.error({ kind, err: (err as Error).message, code: (err as { code?: string }).code }, 'event not recorded in the outbox');
      return null;
    }
  }

  /** Records a failed connection attempt. */
  addAttempt(a: FailedAttempt): void {
    void this.add('attempt', { ...a, message: a.message.slice(0, 256), code: a.code.slice(0, 64) });
  }

  /** Records a probe round. */
  setProbes(results: readonly ProbeResult[]): void {
    if (results.length > 0) void this.add('probes', { results: results.slice(-64) });
  }
}

/** Moves the failed attempts a protocol-2 agent kept in attempts.json into the outbox, then removes the file. */
export async function importLegacyAttempts(state: AgentState, feed: OutboxFeed, log: Logger): Promise<number> {
  let stored: { attempts?: unknown };
  try {
    stored = JSON.parse(await fs.readFile(state.file('attempts'), 'utf8')) as { attempts?: unknown };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    log.warn({ err: (err as Error).message }, 'old attempts.json unreadable; removed');
    await fs.rm(state.file('attempts'), { force: true });
    return 0;
  }
  const attempts = Array.isArray(stored.attempts) ? (stored.attempts as FailedAttempt[]) : [];
  const seqs = await Promise.all(attempts.map((a) => feed.add('attempt', a)));
  if (seqs.every((s) => s !== null)) await fs.rm(state.file('attempts'), { force: true });
  return attempts.length;
}

/** Appends an `inventory` event when the inventory differs from the last one recorded. */
export async function recordInventoryChange(state: AgentState, feed: OutboxFeed, inventory: Inventory): Promise<boolean> {
  const text = JSON.stringify(inventory);
  const last = await fs.readFile(state.file('inventory'), 'utf8').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return '';
    throw err;
  });
  if (last === text) return false;
  if ((await feed.add('inventory', inventory)) === null) return false;
  await writePrivateFile(state.file('inventory'), text);
  return true;
}

/** Test-only load: appends synthetic events at `perSec` until the outbox has numbered `total` events. */
export async function runSyntheticEvents(outbox: Outbox, feed: OutboxFeed, load: { total: number; perSec: number }, signal: AbortSignal): Promise<void> {
  const tickMs = 20;
  const perTick = Math.max(1, Math.round((load.perSec * tickMs) / 1000));
  let n = 0;
  while (!signal.aborted && outbox.stats().lastSeq < load.total) {
    const room = Math.min(perTick, load.total - outbox.stats().lastSeq);
    await Promise.all(Array.from({ length: room }, () => feed.add('synthetic', { n: n++ })));
    await new Promise((r) => setTimeout(r, tickMs));
  }
}
