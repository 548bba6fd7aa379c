/**
 * The agent workers' check-in journals (`checkins-w<slot>.db` beside the
 * main database): each worker appends its check-ins to its own file and
 * acks them once committed there, with no round trip to the primary; the
 * primary folds every worker's file into the devices table of the main
 * database, whose only writer it stays.
 *
 * A worker's file is a list of rows numbered by an AUTOINCREMENT key (never
 * reused, and a reader's snapshot holds every row up to some number, since
 * writers take turns). A fold reads the rows past the slot's watermark,
 * applies them to the devices table and moves the watermark (a meta key of
 * the main database) in one transaction, and only then are the rows up to
 * the watermark deleted from the worker's file: by the worker itself when
 * one runs on that slot (`handTrim`: the primary tells it the watermark, and
 * the delete queues behind its appends, so the file has one writer and an
 * append never waits on another process's lock), by the primary otherwise
 * (at start, at stop, for a slot without a worker). A fold cut short by a crash is neither lost nor
 * applied twice: the rows stay in the file until deleted, and rows at or
 * below the watermark are never read again. Each file carries a random
 * generation made when it was created; a watermark of another generation
 * (the file was moved aside or deleted and made anew) counts as none.
 *
 * Files of every slot found in the directory are folded, so journals of a
 * run with more workers, or of a worker that died, are not forgotten.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { describeError } from '../../common/errors.js';
import { insertCheckinRows, ScheduledFolds, mergeCheckinRows, type FoldTarget, type JournalRow } from './checkin-journal.js';
import { openDatabase, type Database } from './db.js';
import type { CheckinUpdate } from './devices-store.js';

const FILE_PATTERN = /^checkins-w([1-9][0-9]*)\.db$/;
/** Rows read from one file per fold pass; a fold runs passes until the file is drained. */
const ROWS_PER_PASS = 20_000;

/** The journal file of worker `slot`, beside the main database. */
export function workerJournalFile(dataDir: string, slot: number): string {
  return path.join(dataDir, `checkins-w${slot}.db`);
}

/** Meta key (main database) of the watermark of worker `slot`'s journal. */
export function foldedKey(slot: number): string {
  return `checkin_journal_folded_w${slot}`;
}

/** What the meta key holds. */
interface Watermark {
  readonly generation: string;
  readonly id: number;
}

/** Opens (creating) a worker journal file and returns it with its generation. */
async function openJournalFile(file: string, synchronous: 'FULL' | 'NORMAL' | undefined): Promise<{ db: Database; generation: string }> {
  const db = await openDatabase(file, { synchronous });
  try {
    await db.exec(
      `CREATE TABLE IF NOT EXISTS checkins (
         id INTEGER PRIMARY KEY AUTOINCREMENT, device_id TEXT NOT NULL, seq INTEGER NOT NULL, at INTEGER NOT NULL,
         address TEXT NOT NULL, n INTEGER NOT NULL
       );
       CREATE TABLE IF NOT EXISTS journal_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;`,
    );
    await db.run("INSERT OR IGNORE INTO journal_meta (key, value) VALUES ('generation', ?)", [randomBytes(12).toString('hex')]);
    const row = await db.get<{ value: string }>("SELECT value FROM journal_meta WHERE key = 'generation'");
    return { db, generation: row!.value };
  } catch (err) {
    await db.close().catch(() => undefined);
    throw err;
  }
}

/** A worker's side: appends its check-ins to its own file. */
export class WorkerJournal {
  private constructor(private readonly db: Database) {}

  /** Opens (creating) the file; fails with the file and SQLite's words. */
  static async open(file: string, opts: { readonly synchronous?: 'FULL' | 'NORMAL' } = {}): Promise<WorkerJournal> {
    try {
      return new WorkerJournal((await openJournalFile(file, opts.synchronous)).db);
    } catch (err) {
      throw new Error(`cannot open the check-in journal ${file}: ${describeError(err)}`, { cause: err });
    }
  }

  /** Makes a batch of check-ins (one entry per device) durable: the check-in writer's `apply`. */
  append(updates: readonly CheckinUpdate[]): Promise<void> {
    return insertCheckinRows(
      this.db,
      updates,
      (rows) => `INSERT INTO checkins (device_id, seq, at, address, n) VALUES ${Array(rows).fill('(?, ?, ?, ?, ?)').join(', ')}`,
      (u, into) => into.push(u.deviceId, u.seq, u.at, u.address, u.count),
    );
  }

  /**
   * Deletes the rows the primary has folded (ids up to `upTo`, its
   * watermark). The worker does this itself, queued behind its appends on
   * its own connection, so the file keeps one writer; resolves with the
   * number of rows deleted.
   */
  async trim(upTo: number): Promise<number> {
    return (await this.db.runPrepared('DELETE FROM checkins WHERE id <= ?', [upTo])).changes;
  }

  close(): Promise<void> {
    return this.db.close();
  }
}

/** Options for {@link WorkerJournalFolder.open}. */
export interface FolderOptions {
  /** The slots of this run's workers: their files are made before the workers start. */
  readonly slots: number;
  readonly synchronous?: 'FULL' | 'NORMAL';
  /** Background fold period (default 1000 ms). */
  readonly foldEveryMs?: number;
  /** Every update applied, after its transaction committed (the primary's latest sequence per device). */
  readonly onFolded?: (updates: readonly CheckinUpdate[]) => void;
  /**
   * Hands the trim of `slot`'s file up to `upTo` to the worker writing it;
   * false when no worker runs on that slot (the folder then deletes the
   * rows itself). Without it the folder always does.
   */
  readonly handTrim?: (slot: number, upTo: number) => boolean;
  /** A file that cannot be read or trimmed (reported once a minute per file while it lasts); the others are folded. */
  readonly onFileError: (file: string, err: unknown) => void;
  /** A background fold that failed in the main database (retried at the next period). */
  readonly onFoldError: (err: unknown) => void;
  /** A file that could not be opened at start and was moved aside so its worker starts with a new one. */
  readonly onMovedAside: (file: string, movedTo: string, err: unknown) => void;
}

interface OpenFile {
  readonly slot: number;
  readonly file: string;
  readonly db: Database;
  readonly generation: string;
  /** Highest row id in the devices table (never read again). */
  folded: number;
  /** Highest row id deleted from the file. */
  trimmed: number;
  /** When a failure of this file was last reported (ms, performance.now). */
  reportedAt: number;
}

/** The primary's side: folds every worker's journal into the main database. */
export class WorkerJournalFolder extends ScheduledFolds {
  protected readonly foldEveryMs: number;
  /** Totals, for tests and measurements. */
  readonly stats = { folds: 0, foldedRows: 0, handedTrims: 0 };

  private constructor(
    private readonly files: OpenFile[],
    private readonly target: FoldTarget,
    private readonly opts: FolderOptions,
  ) {
    super();
    this.foldEveryMs = opts.foldEveryMs ?? 1000;
  }

  /**
   * Opens the files of this run's slots (creating them) and any other
   * `checkins-w<n>.db` in the directory, and folds them. A file that cannot
   * be opened is moved aside (`<file>.unreadable-<ms>`, kept for its
   * owner), so one bad file stops neither the start nor its worker.
   */
  static async open(dataDir: string, target: FoldTarget, opts: FolderOptions): Promise<WorkerJournalFolder> {
    const slots = new Set<number>();
    for (let slot = 1; slot <= opts.slots; slot += 1) slots.add(slot);
    for (const name of await fs.readdir(dataDir)) {
      const m = FILE_PATTERN.exec(name);
      if (m) slots.add(Number(m[1]));
    }
    const files: OpenFile[] = [];
    for (const slot of [...slots].sort((a, b) => a - b)) {
      const file = workerJournalFile(dataDir, slot);
      const opened = await openOrMoveAside(file, opts);
      const mark = await target.meta.get<Watermark>(foldedKey(slot));
      const folded = mark?.generation === opened.generation ? mark.id : 0;
      files.push({ slot, file, db: opened.db, generation: opened.generation, folded, trimmed: 0, reportedAt: -Infinity });
    }
    const folder = new WorkerJournalFolder(files, target, opts);
    await folder.fold();
    return folder;
  }

  /** Folds every row committed to any worker's file so far, in passes until every file is drained (call close() once the workers have stopped). */
  protected async foldAll(): Promise<void> {
    let more = true;
    while (more) more = await this.foldPass();
  }

  protected foldFailed(err: unknown): void {
    this.opts.onFoldError(err);
  }

  protected async closeFiles(): Promise<void> {
    await Promise.allSettled(this.files.map((f) => f.db.close()));
  }

  /** One pass over every file; true when a file had more rows than one pass reads. */
  private async foldPass(): Promise<boolean> {
    const read: { f: OpenFile; rows: (JournalRow & { id: number })[] }[] = [];
    let more = false;
    for (const f of this.files) {
      try {
        const rows = await f.db.all<JournalRow & { id: number }>('SELECT id, device_id, seq, at, address, n FROM checkins WHERE id > ? ORDER BY id LIMIT ?', [f.folded, ROWS_PER_PASS]);
        if (rows.length === ROWS_PER_PASS) more = true;
        if (rows.length > 0) read.push({ f, rows });
      } catch (err) {
        this.fileFailed(f, err); // the others are folded; this one is tried again next time
      }
    }
    if (read.length > 0) {
      const updates = mergeCheckinRows(read.flatMap((r) => r.rows));
      await this.target.db.transaction(async (tx) => {
        await this.target.devices.applyCheckins(updates, tx);
        for (const { f, rows } of read) await this.target.meta.set(foldedKey(f.slot), { generation: f.generation, id: rows[rows.length - 1]!.id } satisfies Watermark, tx);
      });
      for (const { f, rows } of read) f.folded = rows[rows.length - 1]!.id;
      this.stats.folds += 1;
      this.stats.foldedRows += read.reduce((n, r) => n + r.rows.length, 0);
      this.opts.onFolded?.(updates);
    }
    await this.trim();
    return more;
  }

  private fileFailed(f: OpenFile, err: unknown): void {
    const now = performance.now();
    if (now - f.reportedAt < 60_000) return;
    f.reportedAt = now;
    this.opts.onFileError(f.file, err);
  }

  /**
   * Deletes folded rows from the files, or has their workers do it
   * (harmless when it fails or a worker dies first: the rows are below the
   * watermark, and the next trim of that file takes them too).
   */
  private async trim(): Promise<void> {
    for (const f of this.files) {
      if (f.trimmed >= f.folded) continue;
      if (this.opts.handTrim?.(f.slot, f.folded)) {
        f.trimmed = f.folded;
        this.stats.handedTrims += 1;
        continue;
      }
      try {
        await f.db.run('DELETE FROM checkins WHERE id <= ?', [f.folded]);
        f.trimmed = f.folded;
      } catch (err) {
        this.fileFailed(f, new Error(`cannot trim folded check-ins: ${describeError(err)}`, { cause: err }));
      }
    }
  }
}

/** Opens a journal file; one that cannot be opened is moved aside and made anew. */
async function openOrMoveAside(file: string, opts: FolderOptions): Promise<{ db: Database; generation: string }> {
  try {
    return await openJournalFile(file, opts.synchronous);
  } catch (err) {
    const movedTo = `${file}.unreadable-${Date.now()}`;
    await fs.rename(file, movedTo);
    for (const suffix of ['-wal', '-shm']) await fs.rename(`${file}${suffix}`, `${movedTo}${suffix}`).catch(() => undefined); // absent: nothing to keep
    opts.onMovedAside(file, movedTo, err);
    return openJournalFile(file, opts.synchronous);
  }
}
