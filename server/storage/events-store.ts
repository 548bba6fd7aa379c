/**
 * Agents' outbox events (protocol 3), stored once per (device, seq).
 *
 * A batch is written in one transaction: the sequence numbers already held
 * are read first, only the new events are inserted, and the caller's side
 * effects (health observations) are written for the new events only, in
 * the same transaction. So a redelivered event is neither stored nor
 * counted twice, and a crash leaves either the whole batch or none of it.
 * Rows are pruned after a week (the health service does it hourly).
 */
import type { AgentEvent } from '../../common/protocol.js';
import type { Database, Sql, SqlValue } from './db.js';

/** A stored event. */
export interface StoredEvent {
  readonly deviceId: string;
  readonly seq: number;
  readonly kind: string;
  readonly at: number;
  readonly data: unknown;
  readonly receivedAt: number;
}

const ROWS_PER_STATEMENT = 150;

/** Storage of agent events. */
export class EventsStore {
  constructor(private readonly db: Database) {}

  /**
   * Stores the events of one device that are not stored yet; `effects`
   * runs in the same transaction with just the new ones. Resolves with the
   * new events once committed.
   */
  async record(deviceId: string, events: readonly AgentEvent[], receivedAt: number, effects?: (fresh: readonly AgentEvent[], sql: Sql) => Promise<void>): Promise<AgentEvent[]> {
    if (events.length === 0) return [];
    const lo = events[0]!.seq;
    const hi = events[events.length - 1]!.seq;
    return this.db.transaction(async (tx) => {
      const held = await tx.all<{ seq: number }>('SELECT seq FROM agent_events WHERE device_id = ? AND seq BETWEEN ? AND ?', [deviceId, lo, hi]);
      const have = new Set(held.map((r) => r.seq));
      // Below the oldest row kept is pruned history: stored before, so a redelivery.
      const oldest = (await tx.get<{ s: number | null }>('SELECT min(seq) AS s FROM agent_events WHERE device_id = ?', [deviceId]))?.s ?? 0;
      const fresh = events.filter((e) => !have.has(e.seq) && e.seq >= oldest);
      for (let i = 0; i < fresh.length; i += ROWS_PER_STATEMENT) {
        const chunk = fresh.slice(i, i + ROWS_PER_STATEMENT);
        const params: SqlValue[] = [];
        for (const e of chunk) params.push(deviceId, e.seq, e.kind, e.at, JSON.stringify(e.data), receivedAt);
        await tx.run(`INSERT INTO agent_events (device_id, seq, kind, at, data, received_at) VALUES ${chunk.map(() => '(?, ?, ?, ?, ?, ?)').join(', ')}`, params);
      }
      if (effects && fresh.length > 0) await effects(fresh, tx);
      return fresh;
    });
  }

  /**
   * Deletes events received before `before`, keeping each device's newest
   * row: numbers at or below it count as stored (see record), so pruning
   * never lets a late redelivery in twice. Resolves with rows deleted.
   */
  async prune(before: number): Promise<number> {
    const r = await this.db.run(
      `DELETE FROM agent_events WHERE received_at < ?
         AND seq < (SELECT max(e.seq) FROM agent_events e WHERE e.device_id = agent_events.device_id)`,
      [before],
    );
    return r.changes;
  }

  /** Highest event sequence stored for a device (0 when none). */
  async lastSeq(deviceId: string): Promise<number> {
    const row = await this.db.get<{ s: number | null }>('SELECT max(seq) AS s FROM agent_events WHERE device_id = ?', [deviceId]);
    return row?.s ?? 0;
  }

  /** A device's events in sequence order, from `afterSeq` on. */
  async list(deviceId: string, afterSeq = 0, limit = 1000): Promise<StoredEvent[]> {
    const rows = await this.db.all<{ seq: number; kind: string; at: number; data: string; received_at: number }>(
      'SELECT seq, kind, at, data, received_at FROM agent_events WHERE device_id = ? AND seq > ? ORDER BY seq LIMIT ?',
      [deviceId, afterSeq, limit],
    );
    return rows.map((r) => ({ deviceId, seq: r.seq, kind: r.kind, at: r.at, data: JSON.parse(r.data) as unknown, receivedAt: r.received_at }));
  }
}
