import fs from 'node:fs/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { Harness } from '../../test/support/harness.js';
import { openDatabase } from '../storage/db.js';
import type { CheckinUpdate } from '../storage/devices-store.js';
import type { Storage } from '../storage/index.js';
import { foldedKey, WorkerJournal, WorkerJournalFolder, workerJournalFile, type FolderOptions } from '../storage/worker-journals.js';

const h = new Harness();
afterEach(() => h.cleanup());

const setup = (devices: string[]): Promise<{ storage: Storage; dir: string }> => h.storageWithDevices(devices);

interface Reports {
  fileErrors: { file: string; err: string }[];
  movedAside: { file: string; movedTo: string; err: string }[];
  folded: CheckinUpdate[];
}

async function folder(dir: string, storage: Storage, slots: number): Promise<{ folder: WorkerJournalFolder; reports: Reports }> {
  const reports: Reports = { fileErrors: [], movedAside: [], folded: [] };
  const opts: FolderOptions = {
    slots,
    onFolded: (u) => reports.folded.push(...u),
    onFileError: (file, err) => reports.fileErrors.push({ file, err: String(err) }),
    onFoldError: (err) => reports.fileErrors.push({ file: 'main', err: String(err) }),
    onMovedAside: (file, movedTo, err) => reports.movedAside.push({ file, movedTo, err: String(err) }),
  };
  const f = await WorkerJournalFolder.open(dir, storage, opts);
  h.defer(() => f.close().catch(() => undefined));
  return { folder: f, reports };
}

async function journal(dir: string, slot: number): Promise<WorkerJournal> {
  const j = await WorkerJournal.open(workerJournalFile(dir, slot), { synchronous: 'NORMAL' });
  h.defer(() => j.close().catch(() => undefined));
  return j;
}

const up = (deviceId: string, seq: number, at = seq * 1000, address = '127.0.0.1', count = 1): CheckinUpdate => ({ deviceId, seq, at, address, count });
const state = async (s: Storage, id: string) => {
  const d = (await s.devices.get(id))!;
  return { lastSeq: d.lastSeq, checkinCount: d.checkinCount, lastCheckinAt: d.lastCheckinAt, lastAddress: d.lastAddress };
};
const rowsIn = async (file: string): Promise<number> => {
  const db = await openDatabase(file);
  try {
    return (await db.get<{ n: number }>('SELECT count(*) AS n FROM checkins'))!.n;
  } finally {
    await db.close();
  }
};

describe('agent workers\' check-in journals', () => {
  it('folds every worker\'s file into the devices table, the latest check-in\'s time and address winning across files, and trims what it folded', async () => {
    const { storage, dir } = await setup(['d1', 'd2']);
    const { folder: f, reports } = await folder(dir, storage, 2);
    const w1 = await journal(dir, 1);
    const w2 = await journal(dir, 2);
    await w1.append([up('d1', 1, 1000, '10.0.0.1'), up('d2', 5)]);
    // d1 moved to worker 2: its later check-in is there, its older one in worker 1's file.
    await w2.append([up('d1', 2, 2000, '10.0.0.2')]);
    await w1.append([up('d1', 1, 1500, '10.0.0.1', 0)]); // a redelivery, counted 0
    expect(await state(storage, 'd1')).toMatchObject({ lastSeq: 0, checkinCount: 0 });
    await f.fold();
    expect(await state(storage, 'd1')).toEqual({ lastSeq: 2, checkinCount: 2, lastCheckinAt: 2000, lastAddress: '10.0.0.2' });
    expect(await state(storage, 'd2')).toMatchObject({ lastSeq: 5, checkinCount: 1 });
    expect(reports.folded.find((u) => u.deviceId === 'd1')?.seq).toBe(2);
    expect(await rowsIn(workerJournalFile(dir, 1))).toBe(0);
    expect(await rowsIn(workerJournalFile(dir, 2))).toBe(0);
    // An older check-in folded after a newer one (another file, a later fold) moves neither time nor address back.
    await w1.append([up('d1', 3, 1800, '10.0.0.1')]);
    await f.fold();
    expect(await state(storage, 'd1')).toEqual({ lastSeq: 3, checkinCount: 3, lastCheckinAt: 2000, lastAddress: '10.0.0.2' });
    expect(f.stats.foldedRows).toBe(5);
    expect(reports.fileErrors).toEqual([]);
  });

  it('folds files left by an earlier run with more workers at start, and makes the files of this run\'s slots', async () => {
    const { storage, dir } = await setup(['d1']);
    const old = await WorkerJournal.open(workerJournalFile(dir, 5), { synchronous: 'NORMAL' });
    await old.append([up('d1', 7)]);
    await old.close();
    await folder(dir, storage, 2);
    expect(await state(storage, 'd1')).toMatchObject({ lastSeq: 7, checkinCount: 1 });
    expect(await rowsIn(workerJournalFile(dir, 5))).toBe(0);
    for (const slot of [1, 2]) await expect(fs.stat(workerJournalFile(dir, slot))).resolves.toBeTruthy();
  });

  it('applies nothing twice after a crash between the fold\'s commit and the trim, and reads a new file of the same slot from its start', async () => {
    const { storage, dir } = await setup(['d1']);
    const w1 = await journal(dir, 1);
    await w1.append([up('d1', 1)]);
    await w1.append([up('d1', 2)]);
    // As if a fold had applied both rows and recorded its watermark, then the process died before trimming them.
    const generation = (await (async () => {
      const db = await openDatabase(workerJournalFile(dir, 1));
      try {
        return db.get<{ value: string }>("SELECT value FROM journal_meta WHERE key = 'generation'");
      } finally {
        await db.close();
      }
    })())!.value;
    await storage.devices.applyCheckins([up('d1', 2, 2000, '127.0.0.1', 2)]);
    await storage.meta.set(foldedKey(1), { generation, id: 2 });
    await w1.append([up('d1', 3)]);
    const { folder: f } = await folder(dir, storage, 1);
    expect(await state(storage, 'd1')).toMatchObject({ lastSeq: 3, checkinCount: 3 });
    expect(await rowsIn(workerJournalFile(dir, 1))).toBe(0);
    await f.close();
    await w1.close();
    // The file is gone (an operator removed it): a new one numbers its rows from 1 again, under a new generation.
    for (const suffix of ['', '-wal', '-shm']) await fs.rm(`${workerJournalFile(dir, 1)}${suffix}`, { force: true });
    const fresh = await journal(dir, 1);
    await fresh.append([up('d1', 4)]);
    await folder(dir, storage, 1);
    expect(await state(storage, 'd1')).toMatchObject({ lastSeq: 4, checkinCount: 4 });
  });

  it('moves an unreadable file aside at start, says so, and folds the others', async () => {
    const { storage, dir } = await setup(['d1']);
    const w2 = await WorkerJournal.open(workerJournalFile(dir, 2), { synchronous: 'NORMAL' });
    await w2.append([up('d1', 9)]);
    await w2.close();
    await fs.writeFile(workerJournalFile(dir, 1), Buffer.alloc(8192, 0x5a));
    const { reports } = await folder(dir, storage, 2);
    expect(reports.movedAside).toHaveLength(1);
    expect(reports.movedAside[0]!.file).toBe(workerJournalFile(dir, 1));
    expect(reports.movedAside[0]!.err).toMatch(/not a database/);
    expect((await fs.readFile(reports.movedAside[0]!.movedTo)).length).toBe(8192); // kept for its owner
    expect(await state(storage, 'd1')).toMatchObject({ lastSeq: 9, checkinCount: 1 });
    // The slot's worker gets a new file.
    const w1 = await journal(dir, 1);
    await w1.append([up('d1', 10)]);
  });

  it('reports a file that fails during a fold and folds the others', async () => {
    const { storage, dir } = await setup(['d1', 'd2']);
    const { folder: f, reports } = await folder(dir, storage, 2);
    const w1 = await journal(dir, 1);
    const w2 = await journal(dir, 2);
    await w1.append([up('d1', 1)]);
    await w2.append([up('d2', 1)]);
    // Worker 1's table is gone (a damaged file): reading it fails.
    const db = await openDatabase(workerJournalFile(dir, 1));
    await db.exec('DROP TABLE checkins');
    await db.close();
    await f.fold();
    expect(reports.fileErrors).toHaveLength(1);
    expect(reports.fileErrors[0]).toMatchObject({ file: workerJournalFile(dir, 1) });
    expect(reports.fileErrors[0]!.err).toMatch(/no such table/);
    expect(await state(storage, 'd2')).toMatchObject({ lastSeq: 1, checkinCount: 1 });
  });

  it('hands the trim of a file to the worker writing it, which deletes only what was folded, and trims a slot without a worker itself', async () => {
    const { storage, dir } = await setup(['d1', 'd2']);
    const handed: { slot: number; upTo: number }[] = [];
    const reports: Reports = { fileErrors: [], movedAside: [], folded: [] };
    const f = await WorkerJournalFolder.open(dir, storage, {
      slots: 2,
      handTrim: (slot, upTo) => slot === 1 && handed.push({ slot, upTo }) > 0, // a worker listens on slot 1 only
      onFileError: (file, err) => reports.fileErrors.push({ file, err: String(err) }),
      onFoldError: (err) => reports.fileErrors.push({ file: 'main', err: String(err) }),
      onMovedAside: (file, movedTo, err) => reports.movedAside.push({ file, movedTo, err: String(err) }),
    });
    h.defer(() => f.close().catch(() => undefined));
    const w1 = await journal(dir, 1);
    const w2 = await journal(dir, 2);
    await w1.append([up('d1', 1), up('d2', 1)]);
    await w2.append([up('d2', 2)]);
    await f.fold();
    expect(handed).toEqual([{ slot: 1, upTo: 2 }]);
    expect(f.stats.handedTrims).toBe(1);
    expect(await rowsIn(workerJournalFile(dir, 1))).toBe(2); // left to its worker
    expect(await rowsIn(workerJournalFile(dir, 2))).toBe(0); // no worker there: the folder deleted them
    // The worker appends more before it gets to the trim: only the folded rows go.
    await w1.append([up('d1', 2)]);
    expect(await w1.trim(2)).toBe(2);
    expect(await rowsIn(workerJournalFile(dir, 1))).toBe(1);
    await f.fold();
    expect(handed).toEqual([{ slot: 1, upTo: 2 }, { slot: 1, upTo: 3 }]);
    expect(await state(storage, 'd1')).toMatchObject({ lastSeq: 2, checkinCount: 2 });
    expect(await state(storage, 'd2')).toMatchObject({ lastSeq: 2, checkinCount: 2 });
    // A trim the worker never did (it died first) is harmless: those rows are below the watermark and the next start deletes them.
    await f.close();
    await w1.close();
    const { folder: again } = await folder(dir, storage, 2);
    expect(await rowsIn(workerJournalFile(dir, 1))).toBe(0);
    expect(await state(storage, 'd1')).toMatchObject({ lastSeq: 2, checkinCount: 2 });
    expect(again.stats.foldedRows).toBe(0);
    expect(reports.fileErrors).toEqual([]);
  });

  it('appends batches of every size exactly: single prepared statements, larger ones, and several statements in one transaction', async () => {
    const ids = Array.from({ length: 1200 }, (_, i) => `d${i}`);
    const { storage, dir } = await setup(ids);
    const { folder: f } = await folder(dir, storage, 1);
    const w1 = await journal(dir, 1);
    for (const size of [1, 31, 32, 33, 499, 500, 501, 1200]) await w1.append(ids.slice(0, size).map((id) => up(id, size)));
    await f.fold();
    expect(await state(storage, 'd0')).toMatchObject({ lastSeq: 1200, checkinCount: 8 });
    expect(await state(storage, 'd32')).toMatchObject({ lastSeq: 1200, checkinCount: 5 }); // in the batches of 33 and up
    expect(await state(storage, 'd1199')).toMatchObject({ lastSeq: 1200, checkinCount: 1 });
    expect(f.stats.foldedRows).toBe(1 + 31 + 32 + 33 + 499 + 500 + 501 + 1200);
  });
});
