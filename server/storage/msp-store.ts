/**
 * Storage of linked MSP accounts, their synced companies and sync runs.
 * `applyPlan` writes a whole sync plan inside the caller's transaction.
 */
import crypto from 'node:crypto';
import type { PlanList, PlannedCreate, PlanToApply, StoredCompany } from '../msp/plan.js';
import type { PortalCompany } from '../msp/tree.js';
import type { Sql, SqlValue } from './db.js';

/** A linked (or once linked) account. */
export interface MspAccount {
  readonly id: string;
  readonly portal: 'msp' | 'business';
  readonly source: 'file' | 'api';
  readonly externalId: string;
  readonly name: string;
  readonly entityType: number;
  readonly rootGroupId: string;
  readonly apiBaseUrl: string | null;
  readonly apiUser: string | null;
  /** Encrypted password (see secret-box.ts); never shown. */
  readonly apiSecret: string | null;
  readonly filePath: string | null;
  readonly linked: boolean;
  readonly createdAt: number;
  readonly linkedAt: number;
  readonly unlinkedAt: number | null;
}

/** A synced company with its group facts. */
export interface MspCompany extends StoredCompany {
  readonly accountId: string;
  readonly setup: 'done' | 'skipped' | null;
  readonly setupAt: number | null;
  readonly removedAt: number | null;
}

/** One recorded sync. */
export interface SyncRun {
  readonly id: number;
  readonly accountId: string;
  readonly source: string;
  readonly trigger: string;
  readonly startedAt: number;
  readonly finishedAt: number;
  readonly outcome: 'succeeded' | 'failed';
  readonly errorCode: string | null;
  readonly reason: string | null;
  readonly fetched: number;
  readonly added: number;
  readonly renamed: number;
  readonly moved: number;
  readonly unlinked: number;
  readonly relinked: number;
  readonly updated: number;
}

type Row = Record<string, unknown>;

const toAccount = (r: Row): MspAccount => ({
  id: r.id as string,
  portal: r.portal as 'msp' | 'business',
  source: r.source as 'file' | 'api',
  externalId: r.external_id as string,
  name: r.name as string,
  entityType: r.entity_type as number,
  rootGroupId: r.root_group_id as string,
  apiBaseUrl: r.api_base_url as string | null,
  apiUser: r.api_user as string | null,
  apiSecret: r.api_secret as string | null,
  filePath: r.file_path as string | null,
  linked: r.linked === 1,
  createdAt: r.created_at as number,
  linkedAt: r.linked_at as number,
  unlinkedAt: r.unlinked_at as number | null,
});

const toCompany = (r: Row): MspCompany => ({
  groupId: r.group_id as string,
  accountId: r.account_id as string,
  externalId: r.external_id as string,
  type: r.entity_type as number,
  upstreamName: r.upstream_name as string,
  status: r.upstream_status as string,
  email: r.email as string | null,
  present: r.present === 1,
  groupName: r.name as string,
  parentGroupId: r.parent_id as string,
  setup: r.setup as 'done' | 'skipped' | null,
  setupAt: r.setup_at as number | null,
  removedAt: r.removed_at as number | null,
});

const toRun = (r: Row): SyncRun => ({
  id: r.id as number,
  accountId: r.account_id as string,
  source: r.source as string,
  trigger: r.trigger as string,
  startedAt: r.started_at as number,
  finishedAt: r.finished_at as number,
  outcome: r.outcome as 'succeeded' | 'failed',
  errorCode: r.error_code as string | null,
  reason: r.reason as string | null,
  fetched: r.fetched as number,
  added: r.added as number,
  renamed: r.renamed as number,
  moved: r.moved as number,
  unlinked: r.unlinked as number,
  relinked: r.relinked as number,
  updated: r.updated as number,
});

/** Options for linking (or relinking) an account. */
export interface LinkFacts {
  readonly portal: 'msp' | 'business';
  readonly source: 'file' | 'api';
  readonly account: PortalCompany;
  readonly apiBaseUrl: string | null;
  readonly apiUser: string | null;
  readonly apiSecret: string | null;
  readonly filePath: string | null;
  readonly now: number;
}

const newGroupId = (): string => `grp_${crypto.randomBytes(8).toString('hex')}`;

/**
 * Rows per multi-row statement: few enough statements, each short enough
 * to build and run between two check-ins (at 200, a statement was one of
 * the lumps that delayed journal commits on the sync bench).
 */
const ROWS_PER_STATEMENT = 100;
/**
 * Companies read per query: the rows of one query become objects in one
 * callback on the event loop (at 1,000, one of the stalls of a re-sync).
 */
const COMPANY_PAGE = 250;

async function insertRows(sql: Sql, into: string, rows: readonly SqlValue[][]): Promise<void> {
  if (rows.length === 0) return;
  const placeholders = rows.map((r) => `(${r.map(() => '?').join(', ')})`).join(', ');
  await sql.run(`INSERT INTO ${into} VALUES ${placeholders}`, rows.flat());
}

/** Storage of MSP accounts, companies and sync runs. */
export class MspStore {
  constructor(private readonly sql: Sql) {}

  async accounts(sql: Sql = this.sql): Promise<MspAccount[]> {
    return (await sql.all<Row>('SELECT * FROM msp_accounts ORDER BY created_at')).map(toAccount);
  }

  async account(id: string, sql: Sql = this.sql): Promise<MspAccount | undefined> {
    const r = await sql.get<Row>('SELECT * FROM msp_accounts WHERE id = ?', [id]);
    return r && toAccount(r);
  }

  /** Links an account: creates it with a root group under `parentGroupId`, or relinks the existing one. */
  async link(f: LinkFacts, parentGroupId: string, rootName: string, sql: Sql): Promise<MspAccount> {
    const existing = await sql.get<Row>('SELECT * FROM msp_accounts WHERE portal = ? AND external_id = ?', [f.portal, f.account.id]);
    if (existing) {
      await sql.run(
        `UPDATE msp_accounts SET source = ?, name = ?, entity_type = ?, api_base_url = ?, api_user = ?, api_secret = ?, file_path = ?,
           linked = 1, linked_at = ?, unlinked_at = NULL WHERE id = ?`,
        [f.source, f.account.name, f.account.type, f.apiBaseUrl, f.apiUser, f.apiSecret, f.filePath, f.now, existing.id as string],
      );
      return (await this.account(existing.id as string, sql))!;
    }
    const id = `msp_${crypto.randomBytes(6).toString('hex')}`;
    const groupId = newGroupId();
    await sql.run("INSERT INTO groups (id, parent_id, name, kind, created_at) VALUES (?, ?, ?, 'static', ?)", [groupId, parentGroupId, rootName, f.now]);
    await sql.run(
      `INSERT INTO msp_accounts (id, portal, source, external_id, name, entity_type, root_group_id, api_base_url, api_user, api_secret,
         file_path, linked, created_at, linked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?)`,
      [id, f.portal, f.source, f.account.id, f.account.name, f.account.type, groupId, f.apiBaseUrl, f.apiUser, f.apiSecret, f.filePath, f.now, f.now],
    );
    return (await this.account(id, sql))!;
  }

  /** Marks an account unlinked; its groups and devices stay. */
  async unlink(id: string, now: number, sql: Sql = this.sql): Promise<boolean> {
    return (await sql.run('UPDATE msp_accounts SET linked = 0, unlinked_at = ? WHERE id = ? AND linked = 1', [now, id])).changes === 1;
  }

  /**
   * Every synced company of every account (or of one), with group name and
   * parent. Read in pages, so that no single callback turns thousands of
   * rows into objects while check-ins wait.
   */
  async companies(accountId?: string, sql: Pick<Sql, 'all'> = this.sql, pace?: () => Promise<void>): Promise<MspCompany[]> {
    const out: MspCompany[] = [];
    for (let after = 0; ; await pace?.()) {
      const rows = await sql.all<Row>(
        `SELECT c.rowid AS row_id, c.*, g.name, g.parent_id FROM msp_companies c JOIN groups g ON g.id = c.group_id
         WHERE c.rowid > ? ${accountId ? 'AND c.account_id = ?' : ''} ORDER BY c.rowid LIMIT ${COMPANY_PAGE}`,
        accountId ? [after, accountId] : [after],
      );
      for (const r of rows) out.push(toCompany(r));
      if (rows.length < COMPANY_PAGE) return out;
      after = rows[rows.length - 1]!.row_id as number;
    }
  }

  /** The synced company a group stands for, if any. */
  async companyOfGroup(groupId: string, sql: Sql = this.sql): Promise<MspCompany | undefined> {
    const r = await sql.get<Row>('SELECT c.*, g.name, g.parent_id FROM msp_companies c JOIN groups g ON g.id = c.group_id WHERE c.group_id = ?', [groupId]);
    return r && toCompany(r);
  }

  /** Records a customer's setup state. */
  async setSetup(groupId: string, setup: 'done' | 'skipped', now: number, sql: Sql = this.sql): Promise<void> {
    await sql.run('UPDATE msp_companies SET setup = ?, setup_at = ? WHERE group_id = ?', [setup, now, groupId]);
  }

  /** Forgets a company whose (empty, unlinked) group is being deleted. */
  async forgetCompany(groupId: string, sql: Sql = this.sql): Promise<void> {
    await sql.run('DELETE FROM msp_companies WHERE group_id = ?', [groupId]);
  }

  /**
   * Writes a sync plan; call inside a transaction, with the stored companies
   * the plan was made from (at least those its new and moved groups' parents
   * are). Each list is read once, in order (twice for group changes), and
   * rows are built and inserted a statement's worth at a time, so the event
   * loop runs between statements and a packed plan's decoded items die
   * young (packed-plan.ts); `pace` is awaited between them (background work
   * yields the CPU there). The ids of new groups are remembered only for
   * those that are parents, when the plan says which.
   */
  async applyPlan(account: MspAccount, plan: PlanToApply, stored: PlanList<Pick<StoredCompany, 'externalId' | 'groupId'>>, now: number, sql: Sql, pace?: () => Promise<void>): Promise<void> {
    const groupOf = new Map<string, string>([[account.externalId, account.rootGroupId]]);
    for (const c of stored) groupOf.set(c.externalId, c.groupId);
    const keep = plan.createdParents ? new Set(plan.createdParents) : null;
    // Park every changing group under a unique temporary name, so that swaps and moves never collide.
    for (const ch of plan.groupChanges) await sql.run('UPDATE groups SET name = ? WHERE id = ?', [`~sync~${ch.groupId}`, ch.groupId]);
    // New groups: ids are made here, parents come before children (the plan keeps the tree's depth order).
    let batch: PlannedCreate[] = [];
    const writeBatch = async (): Promise<void> => {
      await this.insertCreates(account, batch, groupOf, keep, now, sql);
      batch = [];
      await pace?.();
    };
    for (const c of plan.creates) {
      batch.push(c);
      if (batch.length === ROWS_PER_STATEMENT) await writeBatch();
    }
    if (batch.length > 0) await writeBatch();
    for (const ch of plan.groupChanges) {
      const parent = groupOf.get(ch.parentExternalId);
      if (!parent) throw new Error(`sync plan names an unknown parent ${ch.parentExternalId}`);
      await sql.run('UPDATE groups SET name = ?, parent_id = ? WHERE id = ?', [ch.name, parent, ch.groupId]);
    }
    for (const u of plan.companyUpdates) {
      await sql.run(
        `UPDATE msp_companies SET entity_type = ?, upstream_name = ?, upstream_status = ?, email = ?, present = 1,
           removed_at = CASE WHEN ? THEN NULL ELSE removed_at END WHERE group_id = ?`,
        [u.company.type, u.company.name, u.company.status, u.company.email, u.relink ? 1 : 0, u.groupId],
      );
    }
    let unlinks: string[] = [];
    for (const groupId of plan.unlinks) {
      unlinks.push(groupId);
      if (unlinks.length === ROWS_PER_STATEMENT) {
        await this.markUnlinked(unlinks, now, sql);
        unlinks = [];
      }
    }
    if (unlinks.length > 0) await this.markUnlinked(unlinks, now, sql);
  }

  /** Inserts one statement's worth of new groups and their companies; remembers the new ids that `keep` names (all without it). */
  private async insertCreates(account: MspAccount, creates: readonly PlannedCreate[], groupOf: Map<string, string>, keep: ReadonlySet<string> | null, now: number, sql: Sql): Promise<void> {
    const groupRows: SqlValue[][] = [];
    const companyRows: SqlValue[][] = [];
    const random = crypto.randomBytes(8 * creates.length).toString('hex');
    for (const [k, c] of creates.entries()) {
      const id = `grp_${random.slice(16 * k, 16 * (k + 1))}`; // as newGroupId, one random draw per statement
      const parent = groupOf.get(c.parentExternalId);
      if (!parent) throw new Error(`sync plan names an unknown parent ${c.parentExternalId}`);
      groupRows.push([id, parent, c.name, 'static', now]);
      companyRows.push([id, account.id, c.externalId, c.company.type, c.company.name, c.company.status, c.company.email, 1]);
      if (!keep || keep.has(c.externalId)) groupOf.set(c.externalId, id);
    }
    await insertRows(sql, 'groups (id, parent_id, name, kind, created_at)', groupRows);
    await insertRows(sql, 'msp_companies (group_id, account_id, external_id, entity_type, upstream_name, upstream_status, email, present)', companyRows);
  }

  private async markUnlinked(groupIds: readonly string[], now: number, sql: Sql): Promise<void> {
    await sql.run(`UPDATE msp_companies SET present = 0, removed_at = ? WHERE group_id IN (${groupIds.map(() => '?').join(',')})`, [now, ...groupIds]);
  }

  /** Records a finished sync. */
  async recordRun(r: Omit<SyncRun, 'id'>, sql: Sql = this.sql): Promise<SyncRun> {
    const res = await sql.run(
      `INSERT INTO sync_runs (account_id, source, trigger, started_at, finished_at, outcome, error_code, reason, fetched, added, renamed,
         moved, unlinked, relinked, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      [r.accountId, r.source, r.trigger, r.startedAt, r.finishedAt, r.outcome, r.errorCode, r.reason, r.fetched, r.added, r.renamed, r.moved, r.unlinked, r.relinked, r.updated],
    );
    return { id: res.lastID, ...r };
  }

  /** The newest runs of an account, newest first. */
  async runs(accountId: string, limit = 20, sql: Sql = this.sql): Promise<SyncRun[]> {
    return (await sql.all<Row>('SELECT * FROM sync_runs WHERE account_id = ? ORDER BY id DESC LIMIT ?', [accountId, limit])).map(toRun);
  }
}
