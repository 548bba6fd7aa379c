/**
 * Numbered schema migrations. Each runs once, in order, inside a
 * transaction; the applied versions are recorded in `schema_migrations`.
 * Never edit a released migration: add the next number.
 */
import type { Database } from './db.js';

/** One schema step. */
export interface Migration {
  readonly version: number;
  readonly description: string;
  readonly sql: string;
}

/** Well-known ids of the built-in groups. */
export const ROOT_GROUP_ID = 'grp_all';
export const LOST_FOUND_GROUP_ID = 'grp_lost_found';

/** Every migration, oldest first. */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'groups, devices, enrollment and API tokens, instance metadata',
    sql: `
      CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
      CREATE TABLE groups (
        id TEXT PRIMARY KEY,
        parent_id TEXT REFERENCES groups(id),
        name TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('root', 'lost_found', 'static')),
        created_at INTEGER NOT NULL
      );
      CREATE UNIQUE INDEX groups_parent_name ON groups(ifnull(parent_id, ''), name);
      INSERT INTO groups (id, parent_id, name, kind, created_at) VALUES
        ('${ROOT_GROUP_ID}', NULL, 'All', 'root', unixepoch() * 1000),
        ('${LOST_FOUND_GROUP_ID}', '${ROOT_GROUP_ID}', 'Lost & found', 'lost_found', unixepoch() * 1000);
      CREATE TABLE devices (
        id TEXT PRIMARY KEY,
        cert_serial TEXT NOT NULL UNIQUE,
        cert_not_after INTEGER NOT NULL,
        group_id TEXT NOT NULL REFERENCES groups(id),
        placement_reason TEXT,
        hostname TEXT NOT NULL,
        fingerprint TEXT,
        agent_version TEXT,
        os TEXT,
        enrolled_at INTEGER NOT NULL,
        enrolled_with_token TEXT,
        revoked_at INTEGER,
        last_connected_at INTEGER,
        last_checkin_at INTEGER,
        last_seq INTEGER NOT NULL DEFAULT 0,
        checkin_count INTEGER NOT NULL DEFAULT 0,
        last_address TEXT,
        interval_sec INTEGER,
        possible_clone_at INTEGER
      );
      CREATE INDEX devices_group ON devices(group_id);
      CREATE TABLE enrollment_tokens (
        id TEXT PRIMARY KEY,
        hash TEXT NOT NULL UNIQUE,
        group_id TEXT REFERENCES groups(id) ON DELETE SET NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER,
        max_uses INTEGER,
        uses INTEGER NOT NULL DEFAULT 0,
        revoked_at INTEGER,
        note TEXT
      );
      CREATE TABLE api_tokens (
        id TEXT PRIMARY KEY,
        hash TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        last_used_at INTEGER,
        revoked_at INTEGER
      );
    `,
  },
];

/** Applies every migration newer than the database's; returns how many ran. */
export async function migrate(db: Database, migrations: readonly Migration[] = MIGRATIONS): Promise<number> {
  await db.exec('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)');
  const row = await db.get<{ v: number | null }>('SELECT max(version) AS v FROM schema_migrations');
  const current = row?.v ?? 0;
  let ran = 0;
  for (const m of migrations) {
    if (m.version <= current) continue;
    await db.transaction(async (tx) => {
      await tx.exec(m.sql);
      await tx.run('INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)', [m.version, Date.now()]);
    });
    ran += 1;
  }
  return ran;
}
