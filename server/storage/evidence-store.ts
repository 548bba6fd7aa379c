/**
 * Evidence for port and visibility health: observations (what agents'
 * probes, `rollcall portcheck --report` and agents' failed connection
 * attempts saw of a port) and sightings (which public addresses connected to
 * which listener). Written in multi-row statements; pruned by age.
 */
import type { Sql, SqlValue } from './db.js';

/** Where an observation came from. */
export type ObservationSource = 'agent_probe' | 'portcheck' | 'failed_attempt';

/** One observation of one port from one network. */
export interface Observation {
  readonly source: ObservationSource;
  readonly deviceId: string | null;
  /** The customer's (or other static) group the observing network belongs to. */
  readonly groupId: string | null;
  readonly targetHost: string;
  readonly port: number;
  readonly role: 'agent' | 'console' | null;
  readonly ok: boolean;
  readonly failureClass: string | null;
  readonly step: string | null;
  readonly detail: string | null;
  /** The public address the report arrived from. */
  readonly sourceAddress: string | null;
  readonly observedAt: number;
  readonly reportedAt: number;
}

/** A public address seen on a listener. */
export interface Sighting {
  readonly role: 'agent' | 'console';
  readonly address: string;
  readonly deviceId: string | null;
  readonly groupId: string | null;
  readonly firstSeenAt: number;
  readonly lastSeenAt: number;
}

/** One sighting to record: `address` connected to the listener of `role` at `at`. */
export interface NewSighting {
  readonly role: 'agent' | 'console';
  readonly address: string;
  readonly deviceId: string | null;
  readonly groupId: string | null;
  readonly at: number;
}

type Row = Record<string, unknown>;
const ROWS_PER_STATEMENT = 400;

const toObservation = (r: Row): Observation => ({
  source: r.source as ObservationSource,
  deviceId: r.device_id as string | null,
  groupId: r.group_id as string | null,
  targetHost: r.target_host as string,
  port: r.port as number,
  role: r.role as 'agent' | 'console' | null,
  ok: r.ok === 1,
  failureClass: r.failure_class as string | null,
  step: r.step as string | null,
  detail: r.detail as string | null,
  sourceAddress: r.source_address as string | null,
  observedAt: r.observed_at as number,
  reportedAt: r.reported_at as number,
});

/** Storage of health evidence. */
export class EvidenceStore {
  constructor(private readonly sql: Sql) {}

  /** Stores observations (multi-row inserts). */
  async record(observations: readonly Observation[], sql: Sql = this.sql): Promise<void> {
    for (let i = 0; i < observations.length; i += ROWS_PER_STATEMENT) {
      const chunk = observations.slice(i, i + ROWS_PER_STATEMENT);
      const params: SqlValue[] = [];
      for (const o of chunk) {
        params.push(o.source, o.deviceId, o.groupId, o.targetHost, o.port, o.role, o.ok ? 1 : 0, o.failureClass, o.step, o.detail, o.sourceAddress, o.observedAt, o.reportedAt);
      }
      await sql.run(
        `INSERT INTO observations (source, device_id, group_id, target_host, port, role, ok, failure_class, step, detail, source_address,
           observed_at, reported_at) VALUES ${chunk.map(() => '(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)').join(', ')}`,
        params,
      );
    }
  }

  /** Observations made at or after `since`, oldest first. */
  async observationsSince(since: number): Promise<Observation[]> {
    return (await this.sql.all<Row>('SELECT * FROM observations WHERE observed_at >= ? ORDER BY observed_at, id', [since])).map(toObservation);
  }

  /** Records that `address` connected to a listener (upsert). */
  async recordSighting(s: NewSighting, sql: Sql = this.sql): Promise<void> {
    await sql.run(
      `INSERT INTO sightings (role, address, device_id, group_id, first_seen_at, last_seen_at) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (role, address, device_id) DO UPDATE SET last_seen_at = excluded.last_seen_at, group_id = excluded.group_id`,
      [s.role, s.address, s.deviceId ?? '', s.groupId, s.at, s.at],
    );
  }

  /** Records many sightings (each an upsert, as {@link recordSighting} does) with one statement per few hundred. */
  async recordSightings(list: readonly NewSighting[], sql: Sql = this.sql): Promise<void> {
    for (let i = 0; i < list.length; i += ROWS_PER_STATEMENT) {
      const chunk = list.slice(i, i + ROWS_PER_STATEMENT);
      const params: SqlValue[] = [];
      for (const s of chunk) params.push(s.role, s.address, s.deviceId ?? '', s.groupId, s.at, s.at);
      await sql.run(
        `INSERT INTO sightings (role, address, device_id, group_id, first_seen_at, last_seen_at) VALUES ${chunk.map(() => '(?, ?, ?, ?, ?, ?)').join(', ')}
         ON CONFLICT (role, address, device_id) DO UPDATE SET last_seen_at = excluded.last_seen_at, group_id = excluded.group_id`,
        params,
      );
    }
  }

  /** Sightings with a last sighting at or after `since`. */
  async sightingsSince(since: number): Promise<Sighting[]> {
    const rows = await this.sql.all<Row>('SELECT * FROM sightings WHERE last_seen_at >= ?', [since]);
    return rows.map((r) => ({
      role: r.role as 'agent' | 'console',
      address: r.address as string,
      deviceId: (r.device_id as string) || null,
      groupId: r.group_id as string | null,
      firstSeenAt: r.first_seen_at as number,
      lastSeenAt: r.last_seen_at as number,
    }));
  }

  /** Deletes evidence older than `before`; returns how many rows went. */
  async prune(before: number): Promise<number> {
    const a = await this.sql.run('DELETE FROM observations WHERE observed_at < ?', [before]);
    const b = await this.sql.run('DELETE FROM sightings WHERE last_seen_at < ?', [before]);
    return a.changes + b.changes;
  }
}
