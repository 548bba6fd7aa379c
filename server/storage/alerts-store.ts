/**
 * Alert state: one row per alert key, open while `resolved_at` is null.
 * Keeping it in the database makes an alert fire once when raised and once
 * when resolved, across evaluations and server restarts.
 */
import type { Sql } from './db.js';

/** An alert as stored. */
export interface StoredAlert {
  readonly key: string;
  readonly kind: string;
  readonly subject: string;
  readonly message: string;
  readonly details: Readonly<Record<string, unknown>>;
  readonly raisedAt: number;
  readonly resolvedAt: number | null;
  /** How often this key was raised over its lifetime. */
  readonly timesRaised: number;
}

/** What raising needs. */
export interface NewAlert {
  readonly key: string;
  readonly kind: string;
  readonly subject: string;
  readonly message: string;
  readonly details: Readonly<Record<string, unknown>>;
}

type Row = Record<string, unknown>;

const toAlert = (r: Row): StoredAlert => ({
  key: r.key as string,
  kind: r.kind as string,
  subject: r.subject as string,
  message: r.message as string,
  details: JSON.parse(r.details as string) as Record<string, unknown>,
  raisedAt: r.raised_at as number,
  resolvedAt: r.resolved_at as number | null,
  timesRaised: r.times_raised as number,
});

/** Storage of alert state. */
export class AlertsStore {
  constructor(private readonly sql: Sql) {}

  /** Alerts raised and not resolved, oldest first. */
  async open(): Promise<StoredAlert[]> {
    return (await this.sql.all<Row>('SELECT * FROM alerts WHERE resolved_at IS NULL ORDER BY raised_at, id')).map(toAlert);
  }

  /** Alerts resolved at or after `since`, newest first. */
  async resolvedSince(since: number): Promise<StoredAlert[]> {
    return (await this.sql.all<Row>('SELECT * FROM alerts WHERE resolved_at >= ? ORDER BY resolved_at DESC, id', [since])).map(toAlert);
  }

  /** Opens an alert (again, when its key was resolved before); returns it as stored. */
  async raise(a: NewAlert, at: number): Promise<StoredAlert> {
    await this.sql.run(
      `INSERT INTO alerts (key, kind, subject, message, details, raised_at) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (key) DO UPDATE SET kind = excluded.kind, subject = excluded.subject, message = excluded.message, details = excluded.details,
         raised_at = excluded.raised_at, resolved_at = NULL, times_raised = alerts.times_raised + 1`,
      [a.key, a.kind, a.subject, a.message, JSON.stringify(a.details), at],
    );
    return toAlert((await this.sql.get<Row>('SELECT * FROM alerts WHERE key = ?', [a.key]))!);
  }

  /** Resolves an open alert; returns it, or undefined when it was not open. */
  async resolve(key: string, at: number): Promise<StoredAlert | undefined> {
    const r = await this.sql.run('UPDATE alerts SET resolved_at = ? WHERE key = ? AND resolved_at IS NULL', [at, key]);
    if (r.changes === 0) return undefined;
    return toAlert((await this.sql.get<Row>('SELECT * FROM alerts WHERE key = ?', [key]))!);
  }
}
