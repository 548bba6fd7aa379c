/**
 * The check-in journal: where a check-in becomes durable before it is acked.
 *
 * Check-ins go to their own SQLite file (`checkins.db`) on their own
 * connection, so an ack never waits behind other work on the main database:
 * an MSP sync's transaction, a large console query, a burst of enrollments.
 * In the background (every `foldEveryMs`, and on flush, close and start) the
 * journal is folded into the devices table of the main database.
 *
 * Rows are written into numbered batches. A fold seals the open batch, reads
 * every sealed row, applies them to the devices and records the sealed batch
 * number in the main database in one transaction, and only then deletes
 * those rows from the journal. A fold cut short by a crash is therefore
 * neither lost (the rows are still in the journal) nor applied twice (its
 * number is in the main database, and start-up drops the rows it covers).
 */
import { describeError } from '../../common/errors.js';
import { openDatabase, type Database, type SqlValue } from './db.js';
import type { CheckinUpdate, DevicesStore } from './devices-store.js';
import type { MetaStore } from './meta-store.js';

/** Meta key (main database) of the last batch folded into the devices table. */
export const FOLDED_BATCH_KEY = 'checkin_journal_folded_batch';
/** Journal file name, beside the main database. */
export const JOURNAL_FILE = 'checkins.db';
/** Devices per journal statement (6 parameters each). */
const ROWS_PER_STATEMENT = 500;
/**
 * Appends of at most this many devices run through statements prepared
 * once (one per row count, so at most this many are kept): under load each
 * commit carries a handful, and preparing the statement anew cost about as
 * much main-thread time as running it, plus a thread-pool round trip.
 */
export const PREPARED_APPEND_ROWS = 32;

/**
 * Writes check-ins as multi-row inserts of at most ROWS_PER_STATEMENT rows
 * (`insertOf(n)` is the statement for n rows, `paramsOf` pushes one row's
 * values). One statement is atomic by itself, and when it carries at most
 * PREPARED_APPEND_ROWS rows it runs prepared once and kept; more statements
 * go in one transaction. Either way the write is queued on the connection
 * now, before anything asked of it later (a fold, a trim).
 */
export function insertCheckinRows(
  db: Database,
  updates: readonly CheckinUpdate[],
  insertOf: (rows: number) => string,
  paramsOf: (u: CheckinUpdate, into: SqlValue[]) => void,
): Promise<void> {
  const statements: { sql: string; params: SqlValue[] }[] = [];
  for (let i = 0; i < updates.length; i += ROWS_PER_STATEMENT) {
    const chunk = updates.slice(i, i + ROWS_PER_STATEMENT);
    const params: SqlValue[] = [];
    for (const u of chunk) paramsOf(u, params);
    statements.push({ sql: insertOf(chunk.length), params });
  }
  if (statements.length === 0) return Promise.resolve();
  if (statements.length === 1) {
    const only = statements[0]!;
    const done = updates.length <= PREPARED_APPEND_ROWS ? db.runPrepared(only.sql, only.params) : db.run(only.sql, only.params);
    return done.then(() => undefined);
  }
  return db.transaction(async (tx) => {
    for (const s of statements) await tx.run(s.sql, s.params);
  });
}

/**
 * What the primary's journal and the agent workers' journals share: folds
 * run one at a time in the order asked, and in the background once a
 * period; a background fold is skipped while one is still waiting its turn
 * (the main database is busy), so they never pile up.
 */
export abstract class ScheduledFolds {
  private chain: Promise<void> = Promise.resolve();
  private queued = 0;
  private timer: NodeJS.Timeout | null = null;

  /** Background fold period, ms. */
  protected abstract readonly foldEveryMs: number;
  /** Folds everything appended so far. */
  protected abstract foldAll(): Promise<void>;
  /** A background fold failed; it is tried again at the next period. */
  protected abstract foldFailed(err: unknown): void;
  /** Closes the files, after the last fold. */
  protected abstract closeFiles(): Promise<void>;

  /** Folds everything appended so far, after the folds already asked for; resolves when it is in the devices table. */
  fold(): Promise<void> {
    this.queued += 1;
    const run = this.chain.then(() => {
      this.queued -= 1;
      return this.foldAll();
    });
    this.chain = run.catch(() => undefined);
    return run;
  }

  /** Starts background folds. */
  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => {
      if (this.queued > 0) return; // one is waiting already: don't pile up
      this.fold().catch((err: unknown) => this.foldFailed(err));
    }, this.foldEveryMs);
    this.timer.unref();
  }

  /** Stops background folds, folds what is left and closes the files. */
  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    try {
      await this.fold();
    } finally {
      await this.closeFiles();
    }
  }
}

/** What the journal folds into. */
export interface FoldTarget {
  readonly db: Database;
  readonly devices: Pick<DevicesStore, 'applyCheckins'>;
  readonly meta: Pick<MetaStore, 'get' | 'set'>;
}

/** Options for {@link CheckinJournal.open}. */
export interface JournalOptions {
  readonly synchronous?: 'FULL' | 'NORMAL';
  /** Background fold period (default 1000 ms). */
  readonly foldEveryMs?: number;
  /** Reports a background fold that failed (it is retried at the next period). */
  readonly onFoldError?: (err: unknown) => void;
}

/** A journal row as read back for a fold (checkins.db and the agent workers' journals). */
export interface JournalRow {
  readonly device_id: string;
  readonly seq: number;
  readonly at: number;
  readonly address: string;
  readonly n: number;
}

/**
 * One update per device from journal rows: the highest sequence and time,
 * the summed count, and the address of the latest row (by time; rows of one
 * file come in the order they were written, so a tie goes to the later).
 */
export function mergeCheckinRows(rows: Iterable<JournalRow>): CheckinUpdate[] {
  const byDevice = new Map<string, { deviceId: string; seq: number; at: number; address: string; count: number }>();
  for (const r of rows) {
    const prev = byDevice.get(r.device_id);
    if (!prev) {
      byDevice.set(r.device_id, { deviceId: r.device_id, seq: r.seq, at: r.at, address: r.address, count: r.n });
      continue;
    }
    if (r.at >= prev.at) {
      prev.at = r.at;
      prev.address = r.address;
    }
    prev.seq = Math.max(prev.seq, r.seq);
    prev.count += r.n;
  }
  return [...byDevice.values()];
}

/** The check-in journal of one server. */
export class CheckinJournal extends ScheduledFolds {
  private openBatch: number;
  /** Highest batch already in the devices table: never read again, even if trimming it failed. */
  private foldedBatch: number;
  protected readonly foldEveryMs: number;
  /** Totals, for metrics and benchmarks. */
  readonly stats = { appends: 0, folds: 0, foldedRows: 0 };

  private constructor(
    private readonly db: Database,
    private readonly target: FoldTarget,
    private readonly opts: JournalOptions,
    foldedBatch: number,
    firstBatch: number,
  ) {
    super();
    this.foldEveryMs = opts.foldEveryMs ?? 1000;
    this.foldedBatch = foldedBatch;
    this.openBatch = firstBatch;
  }

  /** Opens (creating) the journal and folds whatever an earlier run left in it. */
  static async open(file: string, target: FoldTarget, opts: JournalOptions = {}): Promise<CheckinJournal> {
    const db = await openDatabase(file, { synchronous: opts.synchronous });
    try {
      await db.exec(
        `CREATE TABLE IF NOT EXISTS checkins (
           batch INTEGER NOT NULL, device_id TEXT NOT NULL, seq INTEGER NOT NULL, at INTEGER NOT NULL,
           address TEXT NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (batch, device_id)
         ) WITHOUT ROWID`,
      );
      const folded = (await target.meta.get<number>(FOLDED_BATCH_KEY)) ?? 0;
      await db.run('DELETE FROM checkins WHERE batch <= ?', [folded]); // applied before a crash cut the fold short
      const last = (await db.get<{ b: number | null }>('SELECT max(batch) AS b FROM checkins'))?.b ?? 0;
      const journal = new CheckinJournal(db, target, opts, folded, Math.max(folded, last) + 1);
      await journal.fold();
      return journal;
    } catch (err) {
      await db.close();
      throw err;
    }
  }

  /**
   * Makes a batch of check-ins (one entry per device) durable. The check-in
   * writer calls this; once it resolves the check-ins may be acked.
   */
  append(updates: readonly CheckinUpdate[]): Promise<void> {
    this.stats.appends += 1;
    return insertCheckinRows(
      this.db,
      updates,
      (rows) => `INSERT INTO checkins (batch, device_id, seq, at, address, n) VALUES ${Array(rows).fill('(?, ?, ?, ?, ?, ?)').join(', ')}
              ON CONFLICT (batch, device_id) DO UPDATE SET seq = max(seq, excluded.seq), at = max(at, excluded.at),
                address = excluded.address, n = n + excluded.n`,
      (u, into) => into.push(this.openBatch, u.deviceId, u.seq, u.at, u.address, u.count),
    );
  }

  protected foldFailed(err: unknown): void {
    this.opts.onFoldError?.(err);
  }

  protected closeFiles(): Promise<void> {
    return this.db.close();
  }

  protected async foldAll(): Promise<void> {
    const sealed = this.openBatch;
    this.openBatch += 1; // appends from now on go to the next batch
    const rows = await this.db.all<JournalRow>('SELECT device_id, seq, at, address, n FROM checkins WHERE batch > ? AND batch <= ?', [
      this.foldedBatch,
      sealed,
    ]);
    if (rows.length === 0) return;
    const updates = mergeCheckinRows(rows);
    await this.target.db.transaction(async (tx) => {
      await this.target.devices.applyCheckins(updates, tx);
      await this.target.meta.set(FOLDED_BATCH_KEY, sealed, tx);
    });
    this.foldedBatch = sealed;
    try {
      await this.db.run('DELETE FROM checkins WHERE batch <= ?', [sealed]);
    } catch (err) {
      // Harmless: the next start drops rows at or below the recorded batch.
      this.opts.onFoldError?.(new Error(`cannot trim the check-in journal: ${describeError(err)}`));
    }
    this.stats.folds += 1;
    this.stats.foldedRows += rows.length;
  }
}
