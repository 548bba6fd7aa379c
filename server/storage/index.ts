/**
 * Opens the server's storage: one SQLite file, migrated, behind typed stores.
 */
import crypto from 'node:crypto';
import { openDatabase, type Database } from './db.js';
import { migrate } from './migrations.js';
import { GroupsStore } from './groups-store.js';
import { DevicesStore } from './devices-store.js';
import { ApiTokensStore, EnrollmentTokensStore } from './tokens-store.js';
import { MspStore } from './msp-store.js';
import { UsersStore } from './users-store.js';
import { SessionsStore } from './sessions-store.js';
import { MetaStore } from './meta-store.js';
import { EvidenceStore } from './evidence-store.js';
import { QuestionsStore } from './questions-store.js';
import { EventsStore } from './events-store.js';
import { CertRenewalsStore } from './cert-renewals-store.js';

/** Every store of one server. */
export interface Storage {
  readonly db: Database;
  readonly groups: GroupsStore;
  readonly devices: DevicesStore;
  readonly enrollTokens: EnrollmentTokensStore;
  readonly apiTokens: ApiTokensStore;
  readonly msp: MspStore;
  readonly users: UsersStore;
  /** Console login sessions. */
  readonly sessions: SessionsStore;
  readonly meta: MetaStore;
  readonly evidence: EvidenceStore;
  readonly questions: QuestionsStore;
  /** Agents' outbox events, once per (device, seq). */
  readonly events: EventsStore;
  /** Renewed agent certificates waiting for their first connection. */
  readonly certRenewals: CertRenewalsStore;
  /** Stable id of this server instance, made on first start. */
  readonly instanceId: string;
}

/** Opens or creates the database file and applies migrations. */
export async function openStorage(file: string, opts: { synchronous?: 'FULL' | 'NORMAL' } = {}): Promise<Storage> {
  const db = await openDatabase(file, opts);
  try {
    await migrate(db);
    let row = await db.get<{ value: string }>("SELECT value FROM meta WHERE key = 'instance_id'");
    if (!row) {
      await db.run("INSERT INTO meta (key, value) VALUES ('instance_id', ?)", [`srv_${crypto.randomBytes(8).toString('hex')}`]);
      row = await db.get<{ value: string }>("SELECT value FROM meta WHERE key = 'instance_id'");
    }
    return {
      db,
      groups: new GroupsStore(db),
      devices: new DevicesStore(db),
      enrollTokens: new EnrollmentTokensStore(db),
      apiTokens: new ApiTokensStore(db),
      msp: new MspStore(db),
      users: new UsersStore(db),
      sessions: new SessionsStore(db),
      meta: new MetaStore(db),
      evidence: new EvidenceStore(db),
      questions: new QuestionsStore(db),
      events: new EventsStore(db),
      certRenewals: new CertRenewalsStore(db),
      instanceId: row!.value,
    };
  } catch (err) {
    await db.close();
    throw err;
  }
}

export type { Database } from './db.js';
