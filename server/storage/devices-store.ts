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
  lastAddress: r.last_address,
  intervalSec: r.interval_sec,
  possibleCloneAt: r.possible_clone_at,
});

/** Rows per multi-row statement: 5 parameters each stays far below SQLite's limit. */
const CHECKIN_CHUNK = 1000;

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

  /** Marks a device revoked; returns false when it was unknown or already revoked. */
  async revoke(id: string, at: number): Promise<boolean> {
    const r = await this.sql.run('UPDATE devices SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL', [at, id]);
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

  /** Flags a device whose certificate was seen on two connections at once. */
  async flagPossibleClone(id: string, at: number): Promise<void> {
    await this.sql.run('UPDATE devices SET possible_clone_at = ? WHERE id = ?', [at, id]);
  }

  /**
   * Applies coalesced check-ins with multi-row statements (one per
   * {@link CHECKIN_CHUNK} devices). Sequence numbers only move forward.
   */
  async applyCheckins(updates: readonly CheckinUpdate[], sql: Sql = this.sql): Promise<void> {
    for (let i = 0; i < updates.length; i += CHECKIN_CHUNK) {
      const chunk = updates.slice(i, i + CHECKIN_CHUNK);
      const params: SqlValue[] = [];
      for (const u of chunk) params.push(u.deviceId, u.seq, u.at, u.address, u.count);
      await sql.run(
        `WITH v(id, seq, at, addr, n) AS (VALUES ${chunk.map(() => '(?, ?, ?, ?, ?)').join(', ')})
         UPDATE devices SET last_seq = max(devices.last_seq, v.seq), last_checkin_at = v.at, last_address = v.addr,
           checkin_count = devices.checkin_count + v.n
         FROM v WHERE devices.id = v.id`,
        params,
      );
    }
  }

  /** Number of devices per group id. */
  async countByGroup(): Promise<Map<string, number>> {
    const rows = await this.sql.all<{ group_id: string; n: number }>('SELECT group_id, count(*) AS n FROM devices GROUP BY group_id');
    return new Map(rows.map((r) => [r.group_id, r.n]));
  }
}
