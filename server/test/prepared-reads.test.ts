import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { RollcallError } from '../../common/errors.js';
import { Harness } from '../../test/support/harness.js';
import { openDatabase, openReadOnlyDatabase } from '../storage/db.js';

const h = new Harness();
afterEach(() => h.cleanup());

async function writerAndReader(): Promise<{ writer: Awaited<ReturnType<typeof openDatabase>>; reader: Awaited<ReturnType<typeof openReadOnlyDatabase>> }> {
  const file = path.join(await h.tempDir('rollcall-reads-'), 'r.db');
  const writer = await openDatabase(file);
  h.defer(() => writer.close());
  await writer.exec('CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER NOT NULL)');
  await writer.run('INSERT INTO t (k, v) VALUES (?, ?)', ['a', 1]);
  const reader = await openReadOnlyDatabase(file);
  return { writer, reader };
}

describe('reads on statements prepared once', () => {
  it('see every commit of the writer at the next read and hold no read transaction between reads', async () => {
    const { writer, reader } = await writerAndReader();
    h.defer(() => reader.close());
    const read = (k: string) => reader.reads.get<{ v: number }>('SELECT v FROM t WHERE k = ?', [k]);
    expect(await read('a')).toEqual({ v: 1 });
    await writer.run('UPDATE t SET v = 2 WHERE k = ?', ['a']);
    await writer.run('INSERT INTO t (k, v) VALUES (?, ?)', ['b', 3]);
    expect(await read('a')).toEqual({ v: 2 });
    expect(await read('b')).toEqual({ v: 3 });
    expect(await read('missing')).toBeUndefined();
    expect(await reader.reads.all<{ k: string }>('SELECT k FROM t ORDER BY k')).toEqual([{ k: 'a' }, { k: 'b' }]);
    // A read transaction left open by a kept statement would keep the checkpoint from emptying the WAL.
    const [checkpoint] = await writer.all<{ busy: number }>('PRAGMA wal_checkpoint(TRUNCATE)');
    expect(checkpoint?.busy).toBe(0);
  });

  it('fail a bad statement with a storage error naming it, keep serving good ones, and prepare it afresh once it can be', async () => {
    const { writer, reader } = await writerAndReader();
    h.defer(() => reader.close());
    const bad = 'SELECT v FROM later WHERE k = ?';
    for (let i = 0; i < 2; i += 1) {
      const err = await reader.reads.get(bad, ['a']).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(RollcallError);
      expect((err as RollcallError).code).toBe('STORAGE_ERROR');
      expect((err as Error).message).toMatch(/no such table: later.*SELECT v FROM later/);
    }
    expect(await reader.reads.get('SELECT v FROM t WHERE k = ?', ['a'])).toEqual({ v: 1 });
    await writer.exec('CREATE TABLE later (k TEXT, v INTEGER)');
    await writer.run('INSERT INTO later (k, v) VALUES (?, ?)', ['a', 9]);
    expect(await reader.reads.get(bad, ['a'])).toEqual({ v: 9 }); // the failed preparation was not kept
  });

  it('are finalized on close, so the connection closes cleanly, and fail with a storage error afterwards', async () => {
    const { reader } = await writerAndReader();
    expect(await reader.reads.get('SELECT v FROM t WHERE k = ?', ['a'])).toEqual({ v: 1 });
    expect(await reader.reads.all('SELECT k FROM t')).toHaveLength(1);
    await reader.close(); // an unfinalized statement would make this fail (SQLITE_BUSY: unable to close)
    const err = await reader.reads.get('SELECT 1').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RollcallError);
    expect((err as RollcallError).code).toBe('STORAGE_ERROR');
  });
});
