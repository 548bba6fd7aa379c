/**
 * Devices: one row per enrolled agent certificate. The certificate serial
 * maps to exactly one device; revocation is a timestamp on that row.
 */
import type { Sql, SqlValue } from './db.js';

/** A device as stored. */
export interface Device {
  readonly id: string;
  readonly certSerial: string;
  readonly certNotAfter: number;
  readonly groupId: string;
  readonly placementReason: string | null;
  readonly hostname: string;
  readonly fingerprint: string | null;
  readonly agentVersion: string | null;
  readonly os: string | null;
  readonly enrolledAt: number;
  readonly revokedAt: number | null;
  readonly lastConnectedAt: number | null;
  readonly lastCheckinAt: number | null;
  readonly lastSeq: number;
  readonly checkinCount: number;
  /** Check-ins the agent recorded in its outbox while it could not reach the server. */
  readonly offlineCheckins: number;
  readonly lastOfflineCheckinAt: number | null;
  readonly lastAddress: string | null;
  readonly intervalSec: number | null;
  readonly possibleCloneAt: number | null;
}

/** What enrollment writes. */
export interface NewDevice {
  readonly id: string;
  readonly certSerial: string;
  readonly certNotAfter: number;
  readonly groupId: string;
  readonly placementReason: string | null;
  readonly hostname: string;
  readonly fingerprint: string | null;
  readonly agentVersion: string | null;
  readonly enrolledAt: number;
  readonly tokenId: string | null;
}

/** What a successful `hello` writes. */
export interface ConnectFacts {
  readonly at: number;
  readonly address: string;
  readonly hostname: string;
  readonly fingerprint: string;
  readonly agentVersion: string;
  readonly os: string;
  readonly intervalSec: number;
}

/** What a check-in upgrade reads of its device (see {@link DevicesStore.findForConnect}). */
export type ConnectingDevice = Pick<Device, 'id' | 'groupId' | 'revokedAt' | 'lastSeq' | 'fingerprint' | 'lastAddress'>;

/** One coalesced check-in update for a device. */
export interface CheckinUpdate {
  readonly deviceId: string;
  /** Highest sequence number in the batch. */
  readonly seq: number;
  readonly at: number;
  readonly address: string;
  /** How many new check-ins the batch holds for this device. */
  readonly count: number;
}

interface DeviceRow {
  id: string;
  cert_serial: string;
  cert_not_after: number;
  group_id: string;
  placement_reason: string | null;
  hostname: string;
  fingerprint: string | null;
  agent_version: string | null;
  os: string | null;
  enrolled_at: number;
  revoked_at: number | null;
  last_connected_at: number | null;
  last_checkin_at: number | null;
  last_seq: number;
  checkin_count: number;
  offline_checkins: number;
  last_offline_checkin_at: number | null;
  last_address: string | null;
  interval_sec: number | null;
  possible_clone_at: number | null;
}

const toDevice = (r: DeviceRow): Device => ({
  id: r.id,
  certSerial: r.cert_serial,
  certNotAfter: r.cert_not_after,
  groupId: r.group_id,
  placementReason: r.placement_reason,
  hostname: r.hostname,
  fingerprint: r.fingerprint,
  agentVersion: r.agent_version,
  os: r.os,
  enrolledAt: r.enrolled_at,
  revokedAt: r.revoked_at,
  lastConnectedAt: r.last_connected_at,
  lastCheckinAt: r.last_checkin_at,
  lastSeq: r.last_seq,
  checkinCount: r.checkin_count,
  offlineCheckins: r.offline_checkins,
  lastOfflineCheckinAt: r.last_offline_checkin_at,
  lastAddress: r.last_address,
  intervalSec: r.interval_sec,
  possibleCloneAt: r.possible_clone_at,
});

/** Sort keys of the paged device list. */
export const DEVICE_SORTS = ['hostname', 'lastContact', 'enrolledAt'] as const;
export type DeviceSort = (typeof DEVICE_SORTS)[number];

/** One page request of the device list. Every filter is optional; all given ones must hold. */
export interface DevicePageQuery {
  /** Only devices in these groups; null: every group. */
  readonly groupIds: readonly string[] | null;
  /** Case-insensitive substring of the hostname or address, or an exact device id. */
  readonly text?: string;
  /** Last contact (the later of check-in and hello) at or after this time. */
  readonly contactSince?: number;
  /** Last contact before this time. */
  readonly contactBefore?: number;
  /** Never contacted. */
  readonly neverContacted?: boolean;
  /** Only these device ids (e.g. the connected ones), or none of them. */
  readonly ids?: { readonly include: boolean; readonly list: readonly string[] };
  /** Revoked only (true), unrevoked only (false), or both. */
  readonly revoked?: boolean;
  readonly sort: DeviceSort;
  readonly descending: boolean;
  readonly limit: number;
  readonly offset: number;
}

/** The last-contact expression, written exactly as the devices_last_contact index is. */
const LAST_CONTACT = 'max(ifnull(last_checkin_at, 0), ifnull(last_connected_at, 0))';

/** The WHERE clause and parameters of a device page query (exported for the query-plan test). */
export function devicePageWhere(q: Omit<DevicePageQuery, 'sort' | 'descending' | 'limit' | 'offset'>): { where: string; params: SqlValue[] } {
  const terms: string[] = [];
  const params: SqlValue[] = [];
  if (q.groupIds && q.groupIds.length === 1) {
    terms.push('group_id = ?'); // one group: the page comes in order straight from devices_group_hostname
    params.push(q.groupIds[0]!);
  } else if (q.groupIds) {
    terms.push('group_id IN (SELECT value FROM json_each(?))');
    params.push(JSON.stringify(q.groupIds));
  }
  if (q.text) {
    const like = `%${q.text.toLowerCase().replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
    terms.push("(lower(hostname) LIKE ? ESCAPE '\\' OR ifnull(last_address, '') LIKE ? ESCAPE '\\' OR id = ?)");
    params.push(like, like, q.text);
  }
  if (q.contactSince !== undefined) {
    terms.push(`${LAST_CONTACT} >= ?`);
    params.push(q.contactSince);
  }
  if (q.contactBefore !== undefined) {
    terms.push(`${LAST_CONTACT} > 0 AND ${LAST_CONTACT} < ?`);
    params.push(q.contactBefore);
  }
  if (q.neverContacted) terms.push(`${LAST_CONTACT} = 0`);
  if (q.ids) {
    terms.push(`id ${q.ids.include ? '' : 'NOT '}IN (SELECT value FROM json_each(?))`);
    params.push(JSON.stringify(q.ids.list));
  }
  if (q.revoked !== undefined) terms.push(q.revoked ? 'revoked_at IS NOT NULL' : 'revoked_at IS NULL');
  return { where: terms.length > 0 ? `WHERE ${terms.join(' AND ')}` : '', params };
}

/** The ORDER BY of a device page (exported for the query-plan test). */
export function devicePageOrder(sort: DeviceSort, descending: boolean): string {
  const dir = descending ? 'DESC' : 'ASC';
  const key = sort === 'hostname' ? 'hostname' : sort === 'lastContact' ? LAST_CONTACT : 'enrolled_at';
  return `ORDER BY ${key} ${dir}, id ${dir}`;
}

/** Rows per multi-row statement: 5 parameters each stays far below SQLite's limit. */
const CHECKIN_CHUNK = 1000;

/** Rows per multi-row connect statement: 8 parameters each stays far below SQLite's limit. */
const CONNECT_CHUNK = 500;

/** Storage of devices. */
export class DevicesStore {
  constructor(private readonly sql: Sql) {}

  /** Inserts a newly enrolled device. */
  async insert(d: NewDevice, sql: Sql = this.sql): Promise<void> {
    await sql.run(
      `INSERT INTO devices (id, cert_serial, cert_not_after, group_id, placement_reason, hostname, fingerprint,
         agent_version, enrolled_at, enrolled_with_token) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      [d.id, d.certSerial, d.certNotAfter, d.groupId, d.placementReason, d.hostname, d.fingerprint, d.agentVersion, d.enrolledAt, d.tokenId],
    );
  }

  /** The device a certificate serial belongs to, if any. */
  async findBySerial(serial: string): Promise<Device | undefined> {
    const row = await this.sql.get<DeviceRow>('SELECT * FROM devices WHERE cert_serial = ?', [serial]);
    return row && toDevice(row);
  }

  /**
   * The device of a certificate serial with its highest stored outbox event
   * sequence and its group's path, in one statement: what a check-in
   * upgrade needs (the event sequence and the path go into `welcome`), read
   * once per connect. Only the columns the upgrade uses: the whole row costs
   * some 13 µs more per connect, and reading the path in a second statement
   * cost an agent worker a second trip to SQLite's thread per connect.
   * The path is walked up from the device's group as GroupsStore.pathOf
   * does (depth-bounded the same way); null when the group is missing.
   */
  async findForConnect(serial: string): Promise<{ device: ConnectingDevice; lastEventSeq: number; groupPath: string | null } | undefined> {
    const row = await this.sql.get<
      Pick<DeviceRow, 'id' | 'group_id' | 'revoked_at' | 'last_seq' | 'fingerprint' | 'last_address'> & { last_event_seq: number | null; group_path: string | null }
    >(
      `SELECT d.id, d.group_id, d.revoked_at, d.last_seq, d.fingerprint, d.last_address,
         (SELECT max(e.seq) FROM agent_events e WHERE e.device_id = d.id) AS last_event_seq,
         (WITH RECURSIVE chain(id, parent_id, name, depth) AS (
            SELECT id, parent_id, name, 0 FROM groups WHERE id = d.group_id
            UNION ALL
            SELECT g.id, g.parent_id, g.name, chain.depth + 1 FROM groups g JOIN chain ON g.id = chain.parent_id WHERE chain.depth < 64
          ) SELECT group_concat(name, '/' ORDER BY depth DESC) FROM chain) AS group_path
       FROM devices d WHERE d.cert_serial = ?`,
      [serial],
    );
    if (!row) return undefined;
    const device = { id: row.id, groupId: row.group_id, revokedAt: row.revoked_at, lastSeq: row.last_seq, fingerprint: row.fingerprint, lastAddress: row.last_address };
    return { device, lastEventSeq: row.last_event_seq ?? 0, groupPath: row.group_path };
  }

  /** One device by id. */
  async get(id: string): Promise<Device | undefined> {
    const row = await this.sql.get<DeviceRow>('SELECT * FROM devices WHERE id = ?', [id]);
    return row && toDevice(row);
  }

  /** Every device, optionally only those of some groups, ordered by hostname. */
  async list(groupIds?: readonly string[]): Promise<Device[]> {
    if (groupIds && groupIds.length === 0) return [];
    const where = groupIds ? `WHERE group_id IN (${groupIds.map(() => '?').join(',')})` : '';
    const rows = await this.sql.all<DeviceRow>(`SELECT * FROM devices ${where} ORDER BY hostname, id`, groupIds ?? []);
    return rows.map(toDevice);
  }

  /** One page of the device list and the number of devices that match its filters. */
  async page(q: DevicePageQuery): Promise<{ devices: Device[]; total: number }> {
    if (q.groupIds && q.groupIds.length === 0) return { devices: [], total: 0 };
    const { where, params } = devicePageWhere(q);
    const rows = await this.sql.all<DeviceRow>(`SELECT * FROM devices ${where} ${devicePageOrder(q.sort, q.descending)} LIMIT ? OFFSET ?`, [
      ...params,
      q.limit,
      q.offset,
    ]);
    const total = (await this.sql.get<{ n: number }>(`SELECT count(*) AS n FROM devices ${where}`, params))?.n ?? 0;
    return { devices: rows.map(toDevice), total };
  }

  /** Hostname and group of some devices (for the live feed), by id. */
  async briefs(ids: readonly string[]): Promise<Map<string, { hostname: string; groupId: string }>> {
    if (ids.length === 0) return new Map();
    const rows = await this.sql.all<{ id: string; hostname: string; group_id: string }>(
      'SELECT id, hostname, group_id FROM devices WHERE id IN (SELECT value FROM json_each(?))',
      [JSON.stringify(ids)],
    );
    return new Map(rows.map((r) => [r.id, { hostname: r.hostname, groupId: r.group_id }]));
  }

  /** Marks a device revoked; returns false when it was unknown or already revoked. */
  async revoke(id: string, at: number, sql: Sql = this.sql): Promise<boolean> {
    const r = await sql.run('UPDATE devices SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL', [at, id]);
    return r.changes === 1;
  }

  /** Moves a device to another group. */
  async move(id: string, groupId: string): Promise<boolean> {
    const r = await this.sql.run('UPDATE devices SET group_id = ?, placement_reason = NULL WHERE id = ?', [groupId, id]);
    return r.changes === 1;
  }

  /** Records the facts of an accepted `hello`. */
  async recordConnect(id: string, f: ConnectFacts, sql: Sql = this.sql): Promise<void> {
    await sql.run(
      `UPDATE devices SET last_connected_at = ?, last_address = ?, hostname = ?, fingerprint = ?, agent_version = ?,
         os = ?, interval_sec = ? WHERE id = ?`,
      [f.at, f.address, f.hostname, f.fingerprint, f.agentVersion, f.os, f.intervalSec, id],
    );
  }

  /**
   * Records the facts of many accepted `hello`s with one statement per
   * {@link CONNECT_CHUNK} devices (each device at most once: the caller
   * coalesces). Per row it writes what {@link recordConnect} writes.
   */
  async recordConnects(batch: ReadonlyMap<string, ConnectFacts>, sql: Sql = this.sql): Promise<void> {
    const rows = [...batch];
    for (let i = 0; i < rows.length; i += CONNECT_CHUNK) {
      const chunk = rows.slice(i, i + CONNECT_CHUNK);
      const params: SqlValue[] = [];
      for (const [id, f] of chunk) params.push(id, f.at, f.address, f.hostname, f.fingerprint, f.agentVersion, f.os, f.intervalSec);
      await sql.run(
        `WITH v(id, at, addr, host, fp, ver, os, iv) AS (VALUES ${chunk.map(() => '(?, ?, ?, ?, ?, ?, ?, ?)').join(', ')})
         UPDATE devices SET last_connected_at = v.at, last_address = v.addr, hostname = v.host, fingerprint = v.fp, agent_version = v.ver,
           os = v.os, interval_sec = v.iv
         FROM v WHERE devices.id = v.id`,
        params,
      );
    }
  }

  /** Stores a fingerprint as the device's own (an accepted hardware change). */
  async setFingerprint(id: string, fingerprint: string, sql: Sql = this.sql): Promise<void> {
    await sql.run('UPDATE devices SET fingerprint = ? WHERE id = ?', [fingerprint, id]);
  }

  /** Clears the possible-clone flag (the admin matched the record). */
  async clearPossibleClone(id: string, sql: Sql = this.sql): Promise<void> {
    await sql.run('UPDATE devices SET possible_clone_at = NULL WHERE id = ?', [id]);
  }

  /** Flags a device whose certificate was seen on two connections at once. */
  async flagPossibleClone(id: string, at: number): Promise<void> {
    await this.sql.run('UPDATE devices SET possible_clone_at = ? WHERE id = ?', [at, id]);
  }

  /**
   * Applies coalesced check-ins with multi-row statements (one per
   * {@link CHECKIN_CHUNK} devices). Sequence numbers and the check-in time
   * only move forward, and the address is the latest check-in's: the agent
   * workers' journals are folded one after another, so a device that moved
   * from one worker to another may have its older check-in folded last.
   */
  async applyCheckins(updates: readonly CheckinUpdate[], sql: Sql = this.sql): Promise<void> {
    for (let i = 0; i < updates.length; i += CHECKIN_CHUNK) {
      const chunk = updates.slice(i, i + CHECKIN_CHUNK);
      const params: SqlValue[] = [];
      for (const u of chunk) params.push(u.deviceId, u.seq, u.at, u.address, u.count);
      await sql.run(
        `WITH v(id, seq, at, addr, n) AS (VALUES ${chunk.map(() => '(?, ?, ?, ?, ?)').join(', ')})
         UPDATE devices SET last_seq = max(devices.last_seq, v.seq), last_checkin_at = max(coalesce(devices.last_checkin_at, 0), v.at),
           last_address = CASE WHEN v.at >= coalesce(devices.last_checkin_at, 0) THEN v.addr ELSE devices.last_address END,
           checkin_count = devices.checkin_count + v.n
         FROM v WHERE devices.id = v.id`,
        params,
      );
    }
  }

  /**
   * Adds newly stored offline check-in records to the device's summary
   * (run in the transaction that stores the events, so each counts once).
   */
  async addOfflineCheckins(deviceId: string, count: number, lastAt: number, sql: Sql = this.sql): Promise<void> {
    await sql.run(
      `UPDATE devices SET offline_checkins = offline_checkins + ?,
         last_offline_checkin_at = max(coalesce(last_offline_checkin_at, 0), ?) WHERE id = ?`,
      [count, lastAt, deviceId],
    );
  }

  /** Number of devices per group id. */
  async countByGroup(): Promise<Map<string, number>> {
    const rows = await this.sql.all<{ group_id: string; n: number }>('SELECT group_id, count(*) AS n FROM devices GROUP BY group_id');
    return new Map(rows.map((r) => [r.group_id, r.n]));
  }
}
