import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Harness, waitFor } from '../../test/support/harness.js';
import { openDatabase } from '../storage/db.js';
import { CheckinJournal, FOLDED_BATCH_KEY, JOURNAL_FILE, ScheduledFolds, type FoldTarget } from '../storage/checkin-journal.js';
import type { CheckinUpdate } from '../storage/devices-store.js';
import type { Storage } from '../storage/index.js';

const h = new Harness();
afterEach(() => h.cleanup());

async function setup(devices: string[]): Promise<{ storage: Storage; file: string }> {
  const { storage, dir } = await h.storageWithDevices(devices);
  return { storage, file: path.join(dir, JOURNAL_FILE) };
}

async function open(file: string, target: FoldTarget, onFoldError?: (err: unknown) => void): Promise<CheckinJournal> {
  const j = await CheckinJournal.open(file, target, { onFoldError });
  h.defer(() => j.close().catch(() => undefined));
  return j;
}

const up = (deviceId: string, seq: number, count = 1, address = '127.0.0.1'): CheckinUpdate => ({ deviceId, seq, at: seq * 1000, address, count });
const state = async (s: Storage, id: string) => {
  const d = (await s.devices.get(id))!;
  return { lastSeq: d.lastSeq, checkinCount: d.checkinCount, lastCheckinAt: d.lastCheckinAt, lastAddress: d.lastAddress };
};

describe('check-in journal', () => {
  it('folds appended check-ins into the devices table: highest sequence, newest time and address, counts summed', async () => {
    const { storage, file } = await setup(['d1', 'd2']);
    const j = await open(file, storage);
    await j.append([up('d1', 1), up('d2', 4)]);
    await j.append([up('d1', 3, 2, '127.0.0.9')]);
    expect(await state(storage, 'd1')).toMatchObject({ lastSeq: 0, checkinCount: 0 }); // durable in the journal, not folded yet
    await j.fold();
    expect(await state(storage, 'd1')).toEqual({ lastSeq: 3, checkinCount: 3, lastCheckinAt: 3000, lastAddress: '127.0.0.9' });
    expect(await state(storage, 'd2')).toMatchObject({ lastSeq: 4, checkinCount: 1 });
    await j.append([up('d1', 4)]); // a later batch after the fold
    await j.fold();
    expect(await state(storage, 'd1')).toMatchObject({ lastSeq: 4, checkinCount: 4 });
    expect(j.stats).toMatchObject({ appends: 3, folds: 2, foldedRows: 3 });
  });

  it('takes many devices in one append (several statements, one transaction)', async () => {
    const ids = Array.from({ length: 1203 }, (_, i) => `d${i}`);
    const { storage, file } = await setup(ids);
    const j = await open(file, storage);
    await j.append(ids.map((id, i) => up(id, i + 1)));
    await j.fold();
    expect(await state(storage, 'd1202')).toMatchObject({ lastSeq: 1203, checkinCount: 1 });
    const total = await storage.db.get<{ n: number }>('SELECT sum(checkin_count) AS n FROM devices');
    expect(total?.n).toBe(1203);
  });

  it('appends batches of every size around the prepared statements (1 to 40 devices) and folds each exactly', async () => {
    const ids = Array.from({ length: 40 }, (_, i) => `d${i}`);
    const { storage, file } = await setup(ids);
    const j = await open(file, storage);
    let seq = 0;
    for (let size = 1; size <= 40; size += 1) await j.append(ids.slice(0, size).map((id) => up(id, ++seq)));
    await j.append(ids.slice(0, 3).map((id) => up(id, ++seq))); // a size seen before: its kept statement runs again
    await j.fold();
    // Device d_k is in every batch of size > k: 40 - k batches, plus one for the first three.
    for (const k of [0, 2, 3, 31, 32, 39]) expect((await state(storage, `d${k}`)).checkinCount).toBe(40 - k + (k < 3 ? 1 : 0));
    expect((await state(storage, 'd0')).lastSeq).toBe(seq - 2);
  });

  it('acks without waiting for the main database: an append completes while a long main transaction is open', async () => {
    const { storage, file } = await setup(['d1']);
    const j = await open(file, storage);
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    const mainTx = storage.db.transaction(() => held); // e.g. an MSP sync applying its plan
    await j.append([up('d1', 1)]); // resolves although the main database is busy
    let folded = false;
    const fold = j.fold().then(() => (folded = true));
    await j.append([up('d1', 2)]);
    expect(folded).toBe(false); // the fold waits for the main database, the acks did not
    release();
    await mainTx;
    await fold;
    await j.fold();
    expect(await state(storage, 'd1')).toMatchObject({ lastSeq: 2, checkinCount: 2 });
  });

  it('keeps what an earlier run appended but never folded, and folds it at the next start', async () => {
    const { storage, file } = await setup(['d1']);
    const crashed = await CheckinJournal.open(file, storage); // never folded: the process "died" here
    h.defer(() => crashed.close().catch(() => undefined));
    await crashed.append([up('d1', 1)]);
    await crashed.append([up('d1', 2)]);
    await open(file, storage);
    expect(await state(storage, 'd1')).toMatchObject({ lastSeq: 2, checkinCount: 2 });
  });

  it('does not apply a fold twice when the journal could not be trimmed after the main commit', async () => {
    const { storage, file } = await setup(['d1']);
    const j = await open(file, storage);
    await j.append([up('d1', 1)]);
    await j.fold();
    const folded = await storage.meta.get<number>(FOLDED_BATCH_KEY);
    // Put the folded row back, as if the process died between the main commit and the trim.
    const raw = await openDatabase(file);
    await raw.run('INSERT INTO checkins (batch, device_id, seq, at, address, n) VALUES (?, ?, ?, ?, ?, ?)', [folded!, 'd1', 1, 1000, '127.0.0.1', 1]);
    await raw.close();
    await j.close();
    const again = await open(file, storage);
    await again.fold();
    expect(await state(storage, 'd1')).toMatchObject({ lastSeq: 1, checkinCount: 1 });
    const left = await openDatabase(file);
    h.defer(() => left.close());
    expect((await left.get<{ n: number }>('SELECT count(*) AS n FROM checkins'))?.n).toBe(0);
  });

  it('keeps the rows of a fold that failed and applies them exactly once at the next fold', async () => {
    const { storage, file } = await setup(['d1']);
    let failures = 1;
    const flaky: FoldTarget = {
      db: storage.db,
      meta: storage.meta,
      devices: {
        applyCheckins: async (updates, sql) => {
          await storage.devices.applyCheckins(updates, sql);
          if (failures-- > 0) throw new Error('disk I/O error'); // after the update: the rollback must undo it
        },
      },
    };
    const errors: unknown[] = [];
    const j = await open(file, flaky, (e) => errors.push(e));
    await j.append([up('d1', 1)]);
    await expect(j.fold()).rejects.toThrow('disk I/O error');
    expect(await state(storage, 'd1')).toMatchObject({ lastSeq: 0, checkinCount: 0 });
    await j.append([up('d1', 2)]);
    await j.fold();
    expect(await state(storage, 'd1')).toMatchObject({ lastSeq: 2, checkinCount: 2 });
  });
});

/** Folds that only run the given function: the schedule alone. */
class TestFolds extends ScheduledFolds {
  readonly errors: string[] = [];
  closed = 0;

  constructor(
    private readonly run: () => Promise<void>,
    protected readonly foldEveryMs = 5,
  ) {
    super();
  }

  protected foldAll(): Promise<void> {
    return this.run();
  }

  protected foldFailed(err: unknown): void {
    this.errors.push(String(err));
  }

  protected closeFiles(): Promise<void> {
    this.closed += 1;
    return Promise.resolve();
  }
}

describe('scheduled folds', () => {
  it('runs folds one at a time in the order asked, gives a failure to the caller that asked, and folds once more on close', async () => {
    const log: string[] = [];
    let release: () => void = () => undefined;
    let n = 0;
    const folds = new TestFolds(async () => {
      n += 1;
      const mine = n;
      log.push(`start ${mine}`);
      if (mine === 1) await new Promise<void>((r) => (release = r)); // the first fold is slow (a busy database)
      log.push(`end ${mine}`);
      if (mine === 2) throw new Error('disk I/O error');
    });
    const first = folds.fold();
    const second = folds.fold();
    await new Promise((r) => setImmediate(r));
    expect(log).toEqual(['start 1']); // the second waits for the first
    release();
    await first;
    await expect(second).rejects.toThrow('disk I/O error');
    expect(log).toEqual(['start 1', 'end 1', 'start 2', 'end 2']);
    await folds.close(); // never started: just the last fold, then the files
    expect(log.filter((l) => l.startsWith('start'))).toHaveLength(3);
    expect(folds.closed).toBe(1);
  });

  it('reports a failed background fold, folds again at the next period, and stops on close', async () => {
    let tries = 0;
    const folds = new TestFolds(async () => {
      tries += 1;
      if (tries === 1) throw new Error('database is locked');
    });
    folds.start();
    await waitFor(() => (tries >= 2 ? true : undefined), 'a background fold after the failed one');
    await folds.close(); // one last fold, then no more
    const afterClose = tries;
    expect(folds.errors).toEqual(['Error: database is locked']);
    let checks = 0;
    await waitFor(() => (++checks >= 5 ? true : undefined), 'several periods of the stopped timer', 1_000, 10);
    expect(tries).toBe(afterClose);
  });

  it('skips a background fold while one is still waiting its turn, so they never pile up', async () => {
    let release: () => void = () => undefined;
    let runs = 0;
    const folds = new TestFolds(async () => {
      runs += 1;
      if (runs === 1) await new Promise<void>((r) => (release = r));
    }, 2);
    const blocked = folds.fold(); // holds the chain
    folds.start();
    const waiting = folds.fold(); // one waiting: the timer must not add more
    let ticks = 0;
    await waitFor(() => (++ticks >= 20 ? true : undefined), 'a few dozen timer periods', 5_000, 5);
    release();
    await Promise.all([blocked, waiting]);
    await folds.close();
    // The held one, the waiting one and the close's; at most one timer fold between release and close.
    expect(runs).toBeGreaterThanOrEqual(3);
    expect(runs).toBeLessThanOrEqual(4);
  });
});
