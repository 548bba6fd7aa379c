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

/**
 * The roll-up of port_host_states into port_states, run after an insert and
 * after an update (SQLite has no trigger for both): one body, two triggers.
 */
function rollupTrigger(event: 'insert' | 'update'): string {
  return `CREATE TRIGGER port_host_states_rollup_${event} AFTER ${event.toUpperCase()} ON port_host_states BEGIN
        INSERT INTO port_states (group_id, port, observer, role, ok, failure_class, step, observed_at, failing_since)
        SELECT h.group_id, h.port, h.observer, max(h.role), max(h.ok),
          CASE WHEN max(h.ok) THEN NULL ELSE (SELECT f.failure_class FROM port_host_states f WHERE f.group_id = NEW.group_id AND f.port = NEW.port
            AND f.observer = NEW.observer AND f.observed_at >= NEW.observed_at - 86400000 ORDER BY CASE f.step WHEN 'websocket' THEN 5 WHEN 'identify' THEN 4 WHEN 'tls' THEN 3 WHEN 'tcp' THEN 2 WHEN 'dns' THEN 1 ELSE 0 END DESC, f.observed_at DESC LIMIT 1) END,
          CASE WHEN max(h.ok) THEN NULL ELSE (SELECT f.step FROM port_host_states f WHERE f.group_id = NEW.group_id AND f.port = NEW.port
            AND f.observer = NEW.observer AND f.observed_at >= NEW.observed_at - 86400000 ORDER BY CASE f.step WHEN 'websocket' THEN 5 WHEN 'identify' THEN 4 WHEN 'tls' THEN 3 WHEN 'tcp' THEN 2 WHEN 'dns' THEN 1 ELSE 0 END DESC, f.observed_at DESC LIMIT 1) END,
          max(h.observed_at), CASE WHEN max(h.ok) THEN NULL ELSE max(h.failing_since) END
        FROM port_host_states h
        WHERE h.group_id = NEW.group_id AND h.port = NEW.port AND h.observer = NEW.observer AND h.observed_at >= NEW.observed_at - 86400000
        GROUP BY h.group_id, h.port, h.observer
        ON CONFLICT (group_id, port, observer) DO UPDATE SET role = excluded.role, ok = excluded.ok, failure_class = excluded.failure_class,
          step = excluded.step, observed_at = excluded.observed_at, failing_since = excluded.failing_since;
      END;`;
}

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
  {
    version: 2,
    description: 'MSP accounts, synced companies, sync runs, users',
    sql: `
      CREATE TABLE msp_accounts (
        id TEXT PRIMARY KEY,
        portal TEXT NOT NULL CHECK (portal IN ('msp', 'business')),
        source TEXT NOT NULL CHECK (source IN ('file', 'api')),
        external_id TEXT NOT NULL,
        name TEXT NOT NULL,
        entity_type INTEGER NOT NULL,
        root_group_id TEXT NOT NULL UNIQUE REFERENCES groups(id),
        api_base_url TEXT,
        api_user TEXT,
        api_secret TEXT,
        file_path TEXT,
        linked INTEGER NOT NULL DEFAULT 1,
        created_at INTEGER NOT NULL,
        linked_at INTEGER NOT NULL,
        unlinked_at INTEGER,
        UNIQUE (portal, external_id)
      );
      CREATE TABLE msp_companies (
        group_id TEXT PRIMARY KEY REFERENCES groups(id),
        account_id TEXT NOT NULL REFERENCES msp_accounts(id),
        external_id TEXT NOT NULL,
        entity_type INTEGER NOT NULL,
        upstream_name TEXT NOT NULL,
        upstream_status TEXT NOT NULL,
        email TEXT,
        present INTEGER NOT NULL DEFAULT 1,
        setup TEXT CHECK (setup IN ('done', 'skipped')),
        setup_at INTEGER,
        removed_at INTEGER,
        UNIQUE (account_id, external_id)
      );
      CREATE INDEX msp_companies_account ON msp_companies(account_id);
      CREATE TABLE sync_runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        account_id TEXT NOT NULL REFERENCES msp_accounts(id),
        source TEXT NOT NULL,
        trigger TEXT NOT NULL,
        started_at INTEGER NOT NULL,
        finished_at INTEGER NOT NULL,
        outcome TEXT NOT NULL CHECK (outcome IN ('succeeded', 'failed')),
        error_code TEXT,
        reason TEXT,
        fetched INTEGER NOT NULL DEFAULT 0,
        added INTEGER NOT NULL DEFAULT 0,
        renamed INTEGER NOT NULL DEFAULT 0,
        moved INTEGER NOT NULL DEFAULT 0,
        unlinked INTEGER NOT NULL DEFAULT 0,
        relinked INTEGER NOT NULL DEFAULT 0,
        updated INTEGER NOT NULL DEFAULT 0
      );
      CREATE INDEX sync_runs_account ON sync_runs(account_id, id);
      CREATE TABLE users (
        id TEXT PRIMARY KEY,
        username TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('admin', 'customer_admin')),
        home_group_id TEXT REFERENCES groups(id),
        created_at INTEGER NOT NULL,
        disabled_at INTEGER
      );
    `,
  },
  {
    version: 3,
    description: 'port and visibility evidence: observations and sightings',
    sql: `
      CREATE TABLE observations (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        source TEXT NOT NULL CHECK (source IN ('agent_probe', 'portcheck', 'failed_attempt')),
        device_id TEXT,
        group_id TEXT,
        target_host TEXT NOT NULL,
        port INTEGER NOT NULL,
        role TEXT,
        ok INTEGER NOT NULL,
        failure_class TEXT,
        step TEXT,
        detail TEXT,
        source_address TEXT,
        observed_at INTEGER NOT NULL,
        reported_at INTEGER NOT NULL
      );
      CREATE INDEX observations_time ON observations(observed_at);
      CREATE INDEX observations_group ON observations(group_id, port, observed_at);
      CREATE TABLE sightings (
        role TEXT NOT NULL,
        address TEXT NOT NULL,
        device_id TEXT NOT NULL DEFAULT '',
        group_id TEXT,
        first_seen_at INTEGER NOT NULL,
        last_seen_at INTEGER NOT NULL,
        PRIMARY KEY (role, address, device_id)
      );
      CREATE INDEX sightings_time ON sightings(last_seen_at);
    `,
  },
  {
    version: 4,
    description: 'health: latest port state per observer (kept by triggers on observations), alert state, sightings by address',
    // port_host_states: the latest state of each (group, port, observer, host), where an observer is a
    // device or, for port checks without one, the public address they came from. port_states rolls the
    // hosts of one observer up: it reaches the port when any of its hosts worked at the last look (an
    // agent's LAN name failing from outside is no failure), and a failing observer carries the failure of
    // the host that got furthest. Both are kept by triggers, so the health report reads one row per
    // observer and port instead of every observation of the last day.
    sql: `
      CREATE TABLE port_host_states (
        group_id TEXT NOT NULL,
        port INTEGER NOT NULL,
        observer TEXT NOT NULL,
        target_host TEXT NOT NULL,
        role TEXT,
        ok INTEGER NOT NULL,
        failure_class TEXT,
        step TEXT,
        observed_at INTEGER NOT NULL,
        failing_since INTEGER,
        last_ok_at INTEGER,
        PRIMARY KEY (group_id, port, observer, target_host)
      ) WITHOUT ROWID;
      CREATE INDEX port_host_states_time ON port_host_states(observed_at);
      CREATE TABLE port_states (
        group_id TEXT NOT NULL,
        port INTEGER NOT NULL,
        observer TEXT NOT NULL,
        role TEXT,
        ok INTEGER NOT NULL,
        failure_class TEXT,
        step TEXT,
        observed_at INTEGER NOT NULL,
        failing_since INTEGER,
        PRIMARY KEY (group_id, port, observer)
      ) WITHOUT ROWID;
      CREATE INDEX port_states_ok_role_group ON port_states(ok, role, group_id, observed_at);
      CREATE TRIGGER observations_port_host_state AFTER INSERT ON observations WHEN NEW.group_id IS NOT NULL BEGIN
        INSERT INTO port_host_states (group_id, port, observer, target_host, role, ok, failure_class, step, observed_at, failing_since, last_ok_at)
        VALUES (NEW.group_id, NEW.port, coalesce(NEW.device_id, 'addr:' || coalesce(NEW.source_address, '')), NEW.target_host, NEW.role,
                NEW.ok, NEW.failure_class, NEW.step, NEW.observed_at,
                CASE WHEN NEW.ok THEN NULL ELSE NEW.observed_at END, CASE WHEN NEW.ok THEN NEW.observed_at END)
        ON CONFLICT (group_id, port, observer, target_host) DO UPDATE SET
          failing_since = CASE
            WHEN excluded.observed_at >= port_host_states.observed_at THEN
              CASE WHEN excluded.ok THEN NULL WHEN port_host_states.ok THEN excluded.observed_at ELSE port_host_states.failing_since END
            WHEN port_host_states.ok THEN NULL
            WHEN excluded.ok THEN max(port_host_states.failing_since, excluded.observed_at)
            WHEN excluded.observed_at > ifnull(port_host_states.last_ok_at, 0) THEN min(port_host_states.failing_since, excluded.observed_at)
            ELSE port_host_states.failing_since END,
          last_ok_at = CASE WHEN excluded.ok THEN max(ifnull(port_host_states.last_ok_at, 0), excluded.observed_at) ELSE port_host_states.last_ok_at END,
          role = CASE WHEN excluded.observed_at >= port_host_states.observed_at THEN coalesce(excluded.role, port_host_states.role) ELSE port_host_states.role END,
          ok = CASE WHEN excluded.observed_at >= port_host_states.observed_at THEN excluded.ok ELSE port_host_states.ok END,
          failure_class = CASE WHEN excluded.observed_at >= port_host_states.observed_at THEN excluded.failure_class ELSE port_host_states.failure_class END,
          step = CASE WHEN excluded.observed_at >= port_host_states.observed_at THEN excluded.step ELSE port_host_states.step END,
          observed_at = max(port_host_states.observed_at, excluded.observed_at);
      END;
      ${rollupTrigger('insert')}
      ${rollupTrigger('update')}
      CREATE TABLE alerts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        key TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL,
        subject TEXT NOT NULL,
        message TEXT NOT NULL,
        details TEXT NOT NULL DEFAULT '{}',
        raised_at INTEGER NOT NULL,
        resolved_at INTEGER,
        times_raised INTEGER NOT NULL DEFAULT 1
      );
      CREATE INDEX alerts_open ON alerts(resolved_at);
      CREATE INDEX sightings_role_address ON sightings(role, address, last_seen_at);
    `,
  },
  {
    version: 5,
    description: 'console: login sessions, login lockout, scoped API tokens, device page indexes',
    // Session ids are stored hashed (SHA-256), like API tokens. The device indexes serve the console's
    // paged device list: by hostname (all devices, or one group), and by last contact.
    sql: `
      CREATE TABLE console_sessions (
        id_hash TEXT PRIMARY KEY,
        user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        csrf_token TEXT NOT NULL,
        address TEXT,
        created_at INTEGER NOT NULL,
        last_seen_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
      );
      CREATE INDEX console_sessions_user ON console_sessions(user_id);
      CREATE INDEX console_sessions_expiry ON console_sessions(expires_at);
      ALTER TABLE users ADD COLUMN failed_logins INTEGER NOT NULL DEFAULT 0;
      ALTER TABLE users ADD COLUMN locked_until INTEGER;
      ALTER TABLE api_tokens ADD COLUMN home_group_id TEXT REFERENCES groups(id);
      CREATE INDEX devices_hostname ON devices(hostname, id);
      CREATE INDEX devices_group_hostname ON devices(group_id, hostname, id);
      DROP INDEX devices_group; -- devices_group_hostname covers every lookup it served
      CREATE INDEX devices_last_contact ON devices(max(ifnull(last_checkin_at, 0), ifnull(last_connected_at, 0)), id);
    `,
  },
  {
    version: 6,
    description: 'questions for the admin (clones, hardware changes), their history, per-device answers that stick',
    sql: `
      CREATE TABLE questions (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('clone', 'hardware_change')),
        device_id TEXT NOT NULL REFERENCES devices(id),
        old_fingerprint TEXT,
        new_fingerprint TEXT,
        old_address TEXT,
        new_address TEXT,
        raised_at INTEGER NOT NULL,
        last_seen_at INTEGER NOT NULL,
        times_seen INTEGER NOT NULL DEFAULT 1,
        answered_at INTEGER,
        resolution TEXT,
        answered_by TEXT
      );
      CREATE UNIQUE INDEX questions_open_per_device ON questions(device_id, kind) WHERE answered_at IS NULL;
      CREATE INDEX questions_raised ON questions(raised_at);
      CREATE TABLE question_history (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        question_id TEXT REFERENCES questions(id),
        device_id TEXT NOT NULL,
        at INTEGER NOT NULL,
        event TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT '{}'
      );
      CREATE INDEX question_history_device ON question_history(device_id, at);
      CREATE TABLE device_policies (
        device_id TEXT PRIMARY KEY REFERENCES devices(id),
        hardware_change TEXT NOT NULL DEFAULT 'ask' CHECK (hardware_change IN ('ask', 'accept')),
        clone TEXT NOT NULL DEFAULT 'ask' CHECK (clone IN ('ask', 'match'))
      ) WITHOUT ROWID;
    `,
  },
  {
    version: 7,
    description: 'agent outbox events, deduped by (device, seq); certificates issued by renewal until first used',
    sql: `
      CREATE TABLE agent_events (
        device_id TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        kind TEXT NOT NULL,
        at INTEGER NOT NULL,
        data TEXT NOT NULL,
        received_at INTEGER NOT NULL,
        PRIMARY KEY (device_id, seq)
      ) WITHOUT ROWID;
      CREATE TABLE cert_renewals (
        serial TEXT PRIMARY KEY,
        device_id TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
        not_after INTEGER NOT NULL,
        issued_at INTEGER NOT NULL
      );
      CREATE INDEX cert_renewals_device ON cert_renewals(device_id);
    `,
  },
  {
    version: 8,
    description: 'per-device summary of the check-ins an agent recorded while offline (outbox checkin events)',
    sql: `
      ALTER TABLE devices ADD COLUMN offline_checkins INTEGER NOT NULL DEFAULT 0;
      ALTER TABLE devices ADD COLUMN last_offline_checkin_at INTEGER;
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
