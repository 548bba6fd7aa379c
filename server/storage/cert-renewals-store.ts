/**
 * Certificates issued by renewal (protocol 3) that have not connected yet.
 * The device keeps its old serial until the new certificate is used for the
 * first time; then the new serial replaces it in one transaction, and the
 * old certificate maps to no device from then on.
 */
import type { Database, Sql } from './db.js';

/** A renewed certificate waiting for its first connection. */
export interface PendingRenewal {
  readonly serial: string;
  readonly deviceId: string;
  readonly notAfter: number;
  readonly issuedAt: number;
}

/** The pending renewal with this serial, if any (also read by agent workers over their read-only connection). */
export async function findRenewal(sql: Pick<Sql, 'get'>, serial: string): Promise<PendingRenewal | undefined> {
  const row = await sql.get<{ serial: string; device_id: string; not_after: number; issued_at: number }>('SELECT * FROM cert_renewals WHERE serial = ?', [serial]);
  return row && { serial: row.serial, deviceId: row.device_id, notAfter: row.not_after, issuedAt: row.issued_at };
}

/** Storage of pending renewals. */
export class CertRenewalsStore {
  constructor(private readonly db: Database) {}

  /** Records a renewed certificate; an older pending one of the same device is forgotten (one at a time). */
  async add(r: PendingRenewal): Promise<void> {
    await this.db.transaction(async (tx) => {
      await tx.run('DELETE FROM cert_renewals WHERE device_id = ?', [r.deviceId]);
      await tx.run('INSERT INTO cert_renewals (serial, device_id, not_after, issued_at) VALUES (?, ?, ?, ?)', [r.serial, r.deviceId, r.notAfter, r.issuedAt]);
    });
  }

  /** The pending renewal with this serial, if any. */
  find(serial: string): Promise<PendingRenewal | undefined> {
    return findRenewal(this.db, serial);
  }

  /** The renewed certificate connected: it becomes the device's only certificate. Resolves false if it was no longer pending. */
  async promote(serial: string): Promise<boolean> {
    return this.db.transaction(async (tx) => {
      const row = await tx.get<{ device_id: string; not_after: number }>('SELECT device_id, not_after FROM cert_renewals WHERE serial = ?', [serial]);
      if (!row) return false;
      await tx.run('UPDATE devices SET cert_serial = ?, cert_not_after = ? WHERE id = ?', [serial, row.not_after, row.device_id]);
      await tx.run('DELETE FROM cert_renewals WHERE device_id = ?', [row.device_id]);
      return true;
    });
  }
}
