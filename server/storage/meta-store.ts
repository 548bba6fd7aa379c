/**
 * Small instance-wide facts kept as JSON under a key (`meta` table).
 */
import type { Sql } from './db.js';

/** Reads and writes instance-wide facts. */
export class MetaStore {
  constructor(private readonly sql: Sql) {}

  async get<T>(key: string, sql: Sql = this.sql): Promise<T | undefined> {
    const row = await sql.get<{ value: string }>('SELECT value FROM meta WHERE key = ?', [key]);
    return row ? (JSON.parse(row.value) as T) : undefined;
  }

  async set(key: string, value: unknown, sql: Sql = this.sql): Promise<void> {
    await sql.run('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value', [key, JSON.stringify(value)]);
  }

  /** Sets a value only if the key is absent; returns true when it was set. */
  async setIfAbsent(key: string, value: unknown, sql: Sql = this.sql): Promise<boolean> {
    return (await sql.run('INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)', [key, JSON.stringify(value)])).changes === 1;
  }
}
