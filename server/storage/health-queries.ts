/**
 * The reads behind the health report, shaped for speed: a report over
 * 10,000 customers and 100,000 devices must take well under 200 ms.
 *
 * - Every query is one pass that SQLite aggregates; nothing is read per
 *   customer. Port evidence comes from `port_states` (one row per observer
 *   and port, kept by triggers from observations; see migration 4).
 * - Answers with many rows come back as one JSON text (`json_group_array`)
 *   or one packed text: through the sqlite3 binding every returned value
 *   costs about as much as SQLite's whole aggregation, so 10,000 rows of 8
 *   columns read three times slower than one parsed document.
 * - The queries are spread over a pool of reader connections (WAL lets them
 *   read while the main connection writes check-ins), so they run in
 *   parallel and never queue behind or ahead of check-in writes.
 */
import type { Sql } from './db.js';
import type { FailingGroup } from '../health/cause.js';

/** A synced customer (company of type 1007) with what its status needs. */
export interface CustomerRow {
  readonly groupId: string;
  readonly parentGroupId: string | null;
  readonly groupName: string;
  readonly name: string;
  readonly present: boolean;
  readonly setup: 'done' | 'skipped' | null;
  readonly accountLinked: boolean;
}

/** What presence needs of one device. */
export interface DevicePresenceFacts {
  readonly id: string;
  readonly lastCheckinAt: number | null;
  readonly lastConnectedAt: number | null;
  readonly intervalSec: number | null;
}

/** Visits one device; `facts` is reused between calls, so copy what must outlive the call. */
export type DeviceVisitor = (groupId: string, facts: DevicePresenceFacts, certExpiring: boolean) => void;

/** Observers of one group that reached a port at their last look in the window. */
export interface OkCountRow {
  readonly groupId: string;
  /** The role the observations named; null when they named none (then the port tells). */
  readonly role: string | null;
  readonly port: number;
  readonly ok: number;
  /** The earliest latest look among them. */
  readonly firstOkAt: number;
}

/** Observers of one group and port that failed the same way. */
export interface FailingRow extends FailingGroup {
  readonly groupId: string;
  readonly port: number;
  readonly role: string | null;
}

/** A group whose agents' public addresses were also seen on the console listener. */
export interface ConsoleReachRow {
  readonly groupId: string;
  readonly firstSeenAt: number;
  readonly lastSeenAt: number;
}

type Json = (string | number | null)[];

/**
 * Reads packed devices with a hand-rolled scan: splitting 100,000 devices'
 * fields into strings costs more in garbage than the scan itself.
 */
function unpackDevices(text: string, visit: DeviceVisitor): number {
  let at = 0;
  const word = (): string => {
    const space = text.indexOf(' ', at);
    const end = space === -1 ? text.length : space;
    const w = text.slice(at, end);
    at = end + 1;
    return w;
  };
  const integer = (): number | null => {
    if (at >= text.length || text.charCodeAt(at) === 32) {
      at += 1;
      return null;
    }
    let v = 0;
    for (let c = text.charCodeAt(at); at < text.length && c !== 32; c = text.charCodeAt(++at)) v = v * 10 + (c - 48);
    at += 1;
    return v;
  };
  const facts = { id: '', lastCheckinAt: null as number | null, lastConnectedAt: null as number | null, intervalSec: null as number | null };
  let n = 0;
  while (at < text.length) {
    const groupId = word();
    facts.id = word();
    facts.lastCheckinAt = integer();
    facts.lastConnectedAt = integer();
    facts.intervalSec = integer();
    visit(groupId, facts, integer() === 1);
    n += 1;
  }
  return n;
}


/** Reads of the health report, over a pool of connections. */
export class HealthQueries {
  /** @param pool - reader connections (at least one); queries are spread over them. */
  /** The highest device rowid of the last scan, to split the next one evenly. */
  private deviceRowidMax = 0;

  constructor(private readonly pool: readonly Sql[]) {
    if (pool.length === 0) throw new RangeError('HealthQueries needs at least one connection');
  }

  private conn(i: number): Sql {
    return this.pool[i % this.pool.length]!;
  }

  private async json(i: number, sql: string, params: (string | number)[] = []): Promise<Json[]> {
    const row = await this.conn(i).get<{ j: string | null }>(sql, params);
    return row?.j ? (JSON.parse(row.j) as Json[]) : [];
  }

  /** Every synced customer. */
  async customers(): Promise<CustomerRow[]> {
    const rows = await this.json(
      2,
      `SELECT json_group_array(json_array(c.group_id, g.parent_id, g.name, c.upstream_name, c.present, c.setup, a.linked)) AS j
       FROM msp_companies c JOIN msp_accounts a ON a.id = c.account_id JOIN groups g ON g.id = c.group_id WHERE c.entity_type = 1007`,
    );
    return rows.map((r) => ({
      groupId: r[0] as string,
      parentGroupId: r[1] as string | null,
      groupName: r[2] as string,
      name: r[3] as string,
      present: r[4] === 1,
      setup: r[5] as 'done' | 'skipped' | null,
      accountLinked: r[6] === 1,
    }));
  }

  /** Groups that are not customers (the levels above them), for building customers' paths. */
  async nonCustomerGroups(): Promise<{ id: string; parentId: string | null; name: string }[]> {
    const rows = await this.json(
      2,
      `SELECT json_group_array(json_array(id, parent_id, name)) AS j FROM groups WHERE id NOT IN (SELECT group_id FROM msp_companies WHERE entity_type = 1007)`,
    );
    return rows.map((r) => ({ id: r[0] as string, parentId: r[1] as string | null, name: r[2] as string }));
  }

  /**
   * Visits every unrevoked device. Each connection of the pool scans one
   * rowid range (split evenly by the highest rowid of the previous scan), so
   * the scans run in parallel and the first range is parsed while the others
   * are still read. Each range comes packed in one text: group id, device
   * id, last check-in, last connect, interval, and whether the certificate
   * expires before `certExpiryBefore`. Ids never contain spaces.
   */
  async forEachDevice(certExpiryBefore: number, visit: DeviceVisitor): Promise<number> {
    const k = this.deviceRowidMax > 0 ? this.pool.length : 1;
    const step = Math.ceil((this.deviceRowidMax + 1) / k);
    const ranges = Array.from({ length: k }, (_, i) =>
      this.conn(i).get<{ p: string | null; top: number | null }>(
        `SELECT max(rowid) AS top, group_concat(group_id || ' ' || id || ' ' || ifnull(last_checkin_at, '') || ' ' || ifnull(last_connected_at, '') || ' ' ||
           ifnull(interval_sec, '') || ' ' || (cert_not_after < ?), ' ') AS p FROM devices WHERE revoked_at IS NULL AND rowid >= ? AND rowid < ?`,
        [certExpiryBefore, i === 0 ? Number.MIN_SAFE_INTEGER : i * step, i === k - 1 ? Number.MAX_SAFE_INTEGER : (i + 1) * step],
      ),
    );
    let n = 0;
    let top = 0;
    for (const range of ranges) {
      const row = await range;
      n += row?.p ? unpackDevices(row.p, visit) : 0;
      top = Math.max(top, row?.top ?? 0);
    }
    this.deviceRowidMax = top;
    return n;
  }

  /**
   * Per group and role: observers that reached the port at their last look
   * (at or after `since`). Streams the index on (ok, role, group_id,
   * observed_at); observations without a role are counted by port.
   */
  async okCounts(since: number): Promise<OkCountRow[]> {
    const rows = await this.json(
      1,
      `SELECT json_group_array(json_array(group_id, role, port, n, first_ok)) AS j FROM (
         SELECT group_id, role, 0 AS port, count(*) AS n, min(observed_at) AS first_ok
           FROM port_states WHERE ok = 1 AND role IN ('agent', 'console') AND observed_at >= ?1 GROUP BY role, group_id
         UNION ALL
         SELECT group_id, NULL, port, count(*), min(observed_at) FROM port_states WHERE ok = 1 AND role IS NULL AND observed_at >= ?1 GROUP BY port, group_id)`,
      [since],
    );
    return rows.map((r) => ({ groupId: r[0] as string, role: r[1] as string | null, port: r[2] as number, ok: r[3] as number, firstOkAt: r[4] as number }));
  }

  /**
   * Observers failing at their last look (at or after `since`), grouped by
   * group, port and failure. `skipConsolePort` leaves out failures of the
   * console (role console, or no role on that port): expected when it is
   * restricted.
   */
  async failing(since: number, skipConsolePort: number | null = null): Promise<FailingRow[]> {
    // One index range on (ok, role, observed_at) per role, so that a restricted console's expected failures are never read.
    const range = (role: string): string => `SELECT * FROM port_states WHERE ok = 0 AND ${role} AND observed_at >= ?1`;
    const parts = [range("role = 'agent'"), skipConsolePort === null ? range("role = 'console'") : '', range(skipConsolePort === null ? 'role IS NULL' : `role IS NULL AND port <> ?2`)];
    const rows = await this.json(
      1,
      `SELECT json_group_array(json_array(group_id, port, role, failure_class, step, n, devices, since, sample_a, sample_b)) AS j FROM (
         SELECT group_id, port, max(role) AS role, failure_class, step, count(*) AS n, sum(observer NOT LIKE 'addr:%') AS devices,
           min(failing_since) AS since, min(observer) AS sample_a, max(observer) AS sample_b
         FROM (${parts.filter(Boolean).join(' UNION ALL ')}) GROUP BY group_id, port, failure_class, step)`,
      skipConsolePort === null ? [since] : [since, skipConsolePort],
    );
    return rows.map((r) => ({
      groupId: r[0] as string,
      port: r[1] as number,
      role: r[2] as string | null,
      failureClass: r[3] as string | null,
      step: r[4] as string | null,
      observers: r[5] as number,
      devices: r[6] as number,
      since: r[7] as number,
      sample: [...new Set([r[8] as string, r[9] as string])],
    }));
  }

  /** Distinct public addresses seen on each listener since `since` (a covering index scan). */
  async addressesSeen(since: number): Promise<Map<string, number>> {
    const rows = await this.conn(2).all<{ role: string; n: number }>(
      `SELECT role, count(DISTINCT address) AS n FROM sightings WHERE role IN ('agent', 'console') AND last_seen_at >= ? GROUP BY role`,
      [since],
    );
    return new Map(rows.map((r) => [r.role, r.n]));
  }

  /**
   * Groups whose agents' addresses (seen since `since`) also reached the
   * console listener since then. Console sightings are few: they lead (the
   * CROSS JOIN fixes the order; INDEXED BY, because with statistics that
   * know only agent rows SQLite would scan the table).
   */
  async consoleReachedFrom(since: number): Promise<ConsoleReachRow[]> {
    const rows = await this.conn(2).all<Record<string, unknown>>(
      `SELECT a.group_id, min(c.first_seen_at) AS first_seen, max(c.last_seen_at) AS last_seen
       FROM sightings c INDEXED BY sightings_role_address CROSS JOIN sightings a ON a.role = 'agent' AND a.address = c.address
       WHERE c.role = 'console' AND c.last_seen_at >= ? AND a.last_seen_at >= ? AND a.group_id IS NOT NULL
       GROUP BY a.group_id`,
      [since, since],
    );
    return rows.map((r) => ({ groupId: r.group_id as string, firstSeenAt: r.first_seen as number, lastSeenAt: r.last_seen as number }));
  }
}

/** Deletes port states not refreshed since `before` (on the writing connection); returns how many went. */
export async function prunePortStates(sql: Sql, before: number): Promise<number> {
  const a = await sql.run('DELETE FROM port_states WHERE observed_at < ?', [before]);
  const b = await sql.run('DELETE FROM port_host_states WHERE observed_at < ?', [before]);
  return a.changes + b.changes;
}
