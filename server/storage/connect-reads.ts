/**
 * The reads of a check-in upgrade over a read-only connection of its own:
 * what an agent worker needs to answer a certificate without the primary.
 * Each read is a single statement, so its read transaction lasts only as
 * long as that statement: the primary (the only writer) commits and
 * checkpoints beside it, and a write committed there (a revocation, an
 * enrollment) is seen by the next read here.
 */
import { openReadOnlyDatabase, type Sql } from './db.js';
import { DevicesStore, type ConnectingDevice } from './devices-store.js';
import { findRenewal, type PendingRenewal } from './cert-renewals-store.js';
import { RollcallError } from '../../common/errors.js';

/** What a check-in upgrade reads. */
export interface ConnectReads {
  /** The device of a certificate serial with its highest stored event sequence and its group's path (one statement). */
  findForConnect(serial: string): Promise<{ device: ConnectingDevice; lastEventSeq: number; groupPath: string | null } | undefined>;
  /** A renewed certificate waiting for its first use, if the serial is one. */
  pendingRenewal(serial: string): Promise<PendingRenewal | undefined>;
  close(): Promise<void>;
}

function refuseWrite(): Promise<never> {
  return Promise.reject(new RollcallError('STORAGE_ERROR', 'storage error: this connection is read-only'));
}

/** Opens the database file read-only for connect reads (it must exist: the primary made and migrated it). */
export async function openConnectReads(file: string): Promise<ConnectReads> {
  const db = await openReadOnlyDatabase(file);
  // The stores' read methods, on the read-only connection; their writes cannot run here.
  const sql: Sql = { ...db.reads, run: refuseWrite, exec: refuseWrite };
  const devices = new DevicesStore(sql);
  try {
    await db.reads.get('SELECT 1 FROM devices LIMIT 1'); // a file that is not our database fails here, at start
  } catch (err) {
    await db.close();
    throw err;
  }
  return {
    findForConnect: (serial) => devices.findForConnect(serial),
    pendingRenewal: (serial) => findRenewal(db.reads, serial),
    close: () => db.close(),
  };
}
