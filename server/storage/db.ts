/**
 * A small promise wrapper around one sqlite3 connection. This directory is
 * the only place that imports sqlite3.
 *
 * sqlite3 runs statements on a worker thread but in the order they were
 * queued on the connection; `transaction` additionally keeps other callers'
 * statements out of an open transaction by queueing whole units of work.
 */
import sqlite3 from 'sqlite3';
import { RollcallError } from '../../common/errors.js';

/** A value that can be bound to a statement parameter. */
export type SqlValue = string | number | bigint | null | Buffer;

/** The operations stores need; narrower than the whole connection. */
export interface Sql {
  run(sql: string, params?: readonly SqlValue[]): Promise<{ changes: number; lastID: number }>;
  all<T>(sql: string, params?: readonly SqlValue[]): Promise<T[]>;
  get<T>(sql: string, params?: readonly SqlValue[]): Promise<T | undefined>;
  exec(sql: string): Promise<void>;
}

/** An open database. */
export interface Database extends Sql {
  /**
   * `run` through a statement prepared once per SQL text and kept until
   * close: for the few statements a caller repeats many times a second (a
   * check-in journal's append), it saves the preparing and a thread-pool
   * round trip per call. Keep the number of distinct texts small.
   */
  runPrepared(sql: string, params?: readonly SqlValue[]): Promise<{ changes: number; lastID: number }>;
  /** Runs `work` inside BEGIN IMMEDIATE … COMMIT, rolling back if it throws. */
  transaction<T>(work: (sql: Sql) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

function wrapError(err: Error, sql: string): RollcallError {
  return new RollcallError('STORAGE_ERROR', `storage error: ${err.message} (in: ${sql.slice(0, 80)})`, { cause: err });
}

function sqlOf(db: sqlite3.Database): Sql {
  return {
    run: (sql, params = []) =>
      new Promise((resolve, reject) => {
        db.run(sql, params as unknown[], function (this: sqlite3.RunResult, err: Error | null) {
          if (err) reject(wrapError(err, sql));
          else resolve({ changes: this.changes, lastID: this.lastID });
        });
      }),
    all: <T>(sql: string, params: readonly SqlValue[] = []) =>
      new Promise<T[]>((resolve, reject) => {
        db.all(sql, params as unknown[], (err: Error | null, rows: T[]) => (err ? reject(wrapError(err, sql)) : resolve(rows)));
      }),
    get: <T>(sql: string, params: readonly SqlValue[] = []) =>
      new Promise<T | undefined>((resolve, reject) => {
        db.get(sql, params as unknown[], (err: Error | null, row: T | undefined) => (err ? reject(wrapError(err, sql)) : resolve(row)));
      }),
    exec: (sql) =>
      new Promise<void>((resolve, reject) => {
        db.exec(sql, (err: Error | null) => (err ? reject(wrapError(err, sql)) : resolve()));
      }),
  };
}

/** Options for {@link openDatabase}. */
export interface OpenOptions {
  /** `FULL` survives power loss; `NORMAL` (WAL) survives a process crash. */
  readonly synchronous?: 'FULL' | 'NORMAL';
}

/** Opens (creating if needed) a SQLite file in WAL mode with foreign keys on. */
export async function openDatabase(file: string, opts: OpenOptions = {}): Promise<Database> {
  const db = await new Promise<sqlite3.Database>((resolve, reject) => {
    const handle = new sqlite3.Database(file, (err: Error | null) => (err ? reject(wrapError(err, `open ${file}`)) : resolve(handle)));
  });
  const sql = sqlOf(db);
  await sql.exec(
    `PRAGMA journal_mode = WAL; PRAGMA synchronous = ${opts.synchronous ?? 'FULL'}; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;`,
  );
  const statements = statementCache(db);
  let queue: Promise<unknown> = Promise.resolve();
  const enqueue = <T>(work: () => Promise<T>): Promise<T> => {
    const next = queue.then(work, work);
    queue = next.catch(() => undefined);
    return next;
  };
  return {
    run: (s, p) => enqueue(() => sql.run(s, p)),
    runPrepared: (s, p = []) =>
      enqueue(async () => {
        const stmt = await statements.prepare(s);
        return new Promise<{ changes: number; lastID: number }>((resolve, reject) => {
          stmt.run(p as unknown[], function (this: sqlite3.RunResult, err: Error | null) {
            if (err) reject(wrapError(err, s));
            else resolve({ changes: this.changes, lastID: this.lastID });
          });
        });
      }),
    all: <T>(s: string, p?: readonly SqlValue[]) => enqueue(() => sql.all<T>(s, p)),
    get: <T>(s: string, p?: readonly SqlValue[]) => enqueue(() => sql.get<T>(s, p)),
    exec: (s) => enqueue(() => sql.exec(s)),
    transaction: <T>(work: (inner: Sql) => Promise<T>) =>
      enqueue(async () => {
        await sql.exec('BEGIN IMMEDIATE');
        try {
          const result = await work(sql);
          await sql.exec('COMMIT');
          return result;
        } catch (err) {
          try {
            await sql.exec('ROLLBACK');
          } catch (rollbackErr) {
            throw new RollcallError('STORAGE_ERROR', 'rollback failed after an error', {
              cause: new AggregateError([err, rollbackErr]),
            });
          }
          throw err;
        }
      }),
    close: () =>
      enqueue(async () => {
        await statements.finalize(); // SQLite will not close a connection with statements open
        await new Promise<void>((resolve, reject) => {
          db.close((err: Error | null) => (err ? reject(wrapError(err, 'close')) : resolve()));
        });
      }),
  };
}

/** A read-only connection; `snapshot` runs reads against one consistent state of the file. */
export interface ReadOnlyDatabase {
  /** Runs `work` inside one read transaction: every statement sees the same committed state, whatever writers do meanwhile. */
  snapshot<T>(work: (sql: Pick<Sql, 'all' | 'get'>) => Promise<T>): Promise<T>;
  /**
   * Single statements, each its own read transaction (held only while it
   * runs), prepared once and kept: callers may overlap, unlike snapshot(),
   * whose BEGIN and COMMIT must not interleave with another caller's.
   */
  readonly reads: Pick<Sql, 'all' | 'get'>;
  close(): Promise<void>;
}

/** Statements of one connection, prepared once per SQL text and kept until `finalize`. */
function statementCache(db: sqlite3.Database): { prepare(sql: string): Promise<sqlite3.Statement>; finalize(): Promise<void> } {
  const statements = new Map<string, Promise<sqlite3.Statement>>();
  return {
    prepare: (sql) => {
      let ready = statements.get(sql);
      if (!ready) {
        ready = new Promise<sqlite3.Statement>((resolve, reject) => {
          const stmt = db.prepare(sql, (err: Error | null) => (err ? reject(wrapError(err, sql)) : resolve(stmt)));
        });
        statements.set(sql, ready);
        ready.catch(() => statements.delete(sql)); // not kept: the next call prepares it again
      }
      return ready;
    },
    finalize: async () => {
      const open = [...statements.values()];
      statements.clear();
      const prepared = (await Promise.allSettled(open)).flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
      await Promise.all(prepared.map((stmt) => new Promise<void>((resolve) => stmt.finalize(() => resolve()))));
    },
  };
}

/**
 * Reads through statements prepared once per SQL text and kept: a caller
 * that runs the same few reads over and over (an agent worker, per
 * connect) saves the preparing, most of their cost. Each read steps its
 * statement to the end (`all`, then the first row for `get`), so no
 * statement holds a read transaction open between calls.
 */
function preparedReads(db: sqlite3.Database): { reads: Pick<Sql, 'all' | 'get'>; finalize(): Promise<void> } {
  const statements = statementCache(db);
  const all = async <T>(sql: string, params: readonly SqlValue[] = []): Promise<T[]> => {
    const stmt = await statements.prepare(sql);
    return new Promise<T[]>((resolve, reject) => {
      stmt.all(params as unknown[], (err: Error | null, rows: T[]) => (err ? reject(wrapError(err, sql)) : resolve(rows)));
    });
  };
  return {
    reads: { all, get: async <T>(sql: string, params?: readonly SqlValue[]) => (await all<T>(sql, params))[0] },
    finalize: () => statements.finalize(),
  };
}

/**
 * Opens an existing SQLite file read-only (a second connection beside the
 * writer: WAL lets it read while the writer writes). It never creates the
 * file, never writes, and takes no write lock.
 */
export async function openReadOnlyDatabase(file: string): Promise<ReadOnlyDatabase> {
  const db = await new Promise<sqlite3.Database>((resolve, reject) => {
    const handle = new sqlite3.Database(file, sqlite3.OPEN_READONLY, (err: Error | null) => (err ? reject(wrapError(err, `open ${file} read-only`)) : resolve(handle)));
  });
  const sql = sqlOf(db);
  await sql.exec('PRAGMA query_only = ON; PRAGMA busy_timeout = 5000;');
  const prepared = preparedReads(db);
  return {
    snapshot: async <T>(work: (inner: Pick<Sql, 'all' | 'get'>) => Promise<T>) => {
      await sql.exec('BEGIN'); // deferred: the snapshot is taken by the first read and held until COMMIT
      try {
        return await work(sql);
      } finally {
        await sql.exec('COMMIT');
      }
    },
    reads: prepared.reads,
    close: async () => {
      await prepared.finalize();
      await new Promise<void>((resolve, reject) => db.close((err: Error | null) => (err ? reject(wrapError(err, 'close')) : resolve())));
    },
  };
}
