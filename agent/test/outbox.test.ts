import { execFileSync } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Harness } from '../../test/support/harness.js';
import { decodeRecords, encodeRecord } from '../outbox-format.js';
import { Outbox, type OutboxFile, type OutboxOptions } from '../outbox.js';

const h = new Harness();
afterEach(() => h.cleanup());

async function open(file?: string, opts: OutboxOptions = {}): Promise<{ box: Outbox; file: string; problems: string[] }> {
  const f = file ?? path.join(await h.tempDir(), 'outbox.log');
  const problems: string[] = [];
  const box = await Outbox.open(f, { onProblem: (m) => problems.push(m), ...opts });
  h.defer(() => box.close().catch(() => undefined));
  return { box, file: f, problems };
}

const all = (box: Outbox) => box.peek(0, 100_000, Number.MAX_SAFE_INTEGER);

describe('outbox', () => {
  it('numbers events in order, keeps them across a reopen, and forgets them only when acknowledged', async () => {
    const { box, file } = await open();
    const seqs = await Promise.all([1, 2, 3, 4].map((n) => box.append('synthetic', { n })));
    expect(seqs).toEqual([1, 2, 3, 4]);
    box.ack(2);
    await box.close();
    const { box: again, problems } = await open(file);
    expect(all(again).map((e) => [e.seq, e.data])).toEqual([
      [3, { n: 3 }],
      [4, { n: 4 }],
    ]);
    again.ack(4);
    expect(await again.append('synthetic', { n: 5 })).toBe(5);
    await again.close();
    const { box: third } = await open(file);
    expect(all(third).map((e) => e.seq)).toEqual([5]);
    expect(third.stats().lastSeq).toBe(5);
    expect(problems).toEqual([]);
  });

  it('keeps numbering above everything acknowledged even when no event is pending', async () => {
    const { box, file } = await open();
    await box.append('synthetic', { n: 1 });
    await box.append('synthetic', { n: 2 });
    box.ack(2);
    await box.close();
    const { box: again } = await open(file);
    expect(all(again)).toEqual([]);
    expect(await again.append('synthetic', { n: 3 })).toBe(3);
  });

  it('recovers a file torn in the middle of its last record up to the last good record, and goes on from there', async () => {
    const { box, file } = await open();
    for (let n = 1; n <= 5; n += 1) await box.append('synthetic', { n });
    await box.close();
    const size = (await fs.stat(file)).size;
    await fs.truncate(file, size - 7);
    const { box: again, problems } = await open(file);
    expect(all(again).map((e) => e.seq)).toEqual([1, 2, 3, 4]);
    expect(problems.join()).toMatch(/torn record .*kept 4 good records/);
    expect(await again.append('synthetic', { n: 6 })).toBe(5);
    await again.close();
    const { box: third, problems: none } = await open(file);
    expect(all(third).map((e) => e.seq)).toEqual([1, 2, 3, 4, 5]);
    expect(none).toEqual([]);
  });

  it('stops at a record whose bytes were flipped and cuts off everything after it', async () => {
    const { box, file } = await open();
    for (let n = 1; n <= 6; n += 1) await box.append('synthetic', { n });
    await box.close();
    const buf = await fs.readFile(file);
    const frames = decodeRecords(buf).records;
    const third = frames[0]!.bytes + frames[1]!.bytes;
    buf[third + 12] = buf[third + 12]! ^ 0xff; // inside the third record's payload
    await fs.writeFile(file, buf);
    const { box: again, problems } = await open(file);
    expect(all(again).map((e) => e.seq)).toEqual([1, 2]);
    expect(problems.join()).toMatch(/checksum mismatch at byte \d+/);
    expect((await fs.stat(file)).size).toBe(third);
  });

  it('treats an impossible length and a garbage file as damage, not as a crash', async () => {
    const dir = await h.tempDir();
    const file = path.join(dir, 'outbox.log');
    await fs.writeFile(file, Buffer.concat([encodeRecord({ event: { seq: 1, kind: 'synthetic', at: 1, data: { n: 1 } } }), Buffer.from([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 1, 2])]));
    const { box, problems } = await open(file);
    expect(all(box).map((e) => e.seq)).toEqual([1]);
    expect(problems.join()).toMatch(/impossible record length/);
    const garbage = path.join(dir, 'garbage.log');
    await fs.writeFile(garbage, 'this is not an outbox at all, just text that someone wrote here');
    const { box: g, problems: p2 } = await open(garbage);
    expect(all(g)).toEqual([]);
    expect(p2).toHaveLength(1);
    expect(await g.append('synthetic', { n: 1 })).toBe(1);
  });

  it('drops the oldest events when full, counts them, and records a dropped event for the server', async () => {
    const { box, file, problems } = await open(undefined, { limits: { maxEvents: 5 } });
    for (let n = 1; n <= 8; n += 1) await box.append('synthetic', { n });
    const pending = all(box);
    expect(pending.length).toBeLessThanOrEqual(5);
    const dropped = pending.filter((e) => e.kind === 'dropped');
    expect(dropped.length).toBeGreaterThan(0);
    const total = dropped.reduce((n, e) => n + (e.data as { count: number }).count, 0);
    expect(box.stats().dropped).toBe(total);
    // Every numbered event is either still pending or counted as dropped.
    const synthetic = pending.filter((e) => e.kind === 'synthetic').length;
    expect(synthetic + total).toBe(8);
    expect(problems.some((p) => /outbox full: dropped/.test(p))).toBe(true);
    await box.close();
    const { box: again } = await open(file, { limits: { maxEvents: 5 } });
    expect(all(again).map((e) => e.seq)).toEqual(pending.map((e) => e.seq));
  });

  it('compacts the file once most of it is acknowledged, keeping the pending events and the numbering', async () => {
    const { box, file } = await open(undefined, { limits: { compactBytes: 2000 } });
    for (let n = 1; n <= 100; n += 1) await box.append('synthetic', { n });
    const before = (await fs.stat(file)).size;
    box.ack(95);
    await box.append('synthetic', { n: 101 });
    await box.close(); // compaction runs after the append is confirmed
    const after = (await fs.stat(file)).size;
    expect(after).toBeLessThan(before / 5);
    const { box: again } = await open(file);
    expect(all(again).map((e) => e.seq)).toEqual([96, 97, 98, 99, 100, 101]);
    expect(await again.append('synthetic', { n: 102 })).toBe(102);
  });

  it('renumbers pending events above the server when its own history was lost', async () => {
    const { box, file } = await open();
    await box.append('synthetic', { n: 1 });
    await box.append('synthetic', { n: 2 });
    expect(await box.rebase(1)).toBe(false);
    expect(await box.rebase(40)).toBe(true);
    expect(all(box).map((e) => e.seq)).toEqual([41, 42]);
    expect(await box.append('synthetic', { n: 3 })).toBe(43);
    await box.close();
    const { box: again } = await open(file);
    expect(all(again).map((e) => e.seq)).toEqual([41, 42, 43]);
  });

  it('rejects an append with OUTBOX_DISK_FULL when the disk is full, leaves no half record, and recovers once there is room', async () => {
    let full = false;
    const openFile = async (f: string): Promise<OutboxFile> => {
      const fh = await fs.open(f, 'a', 0o600);
      return {
        async write(buf) {
          if (!full) return fh.write(buf);
          await fh.write(buf.subarray(0, Math.floor(buf.length / 2))); // part of it lands, as on a real full disk
          throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
        },
        sync: () => fh.sync(),
        truncate: (len) => fh.truncate(len),
        close: () => fh.close(),
      };
    };
    const { box, file, problems } = await open(undefined, { openFile });
    await box.append('synthetic', { n: 1 });
    full = true;
    await expect(box.append('synthetic', { n: 2 })).rejects.toMatchObject({ code: 'OUTBOX_DISK_FULL' });
    expect(box.stats().lastError).toMatchObject({ code: 'OUTBOX_DISK_FULL' });
    expect(problems.join()).toMatch(/disk .* is full/);
    full = false;
    expect(await box.append('synthetic', { n: 3 })).toBe(2);
    expect(box.stats().lastError).toBeNull();
    await box.close();
    const { box: again, problems: p2 } = await open(file);
    expect(all(again).map((e) => e.data)).toEqual([{ n: 1 }, { n: 3 }]);
    expect(p2).toEqual([]);
  });

  it('on a real 64 KiB filesystem that fills up, keeps every event it confirmed and reports the full disk', async (ctx) => {
    const mnt = await h.tempDir('rollcall-tmpfs-');
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', mnt], { stdio: 'ignore' });
    } catch {
      ctx.skip(); // needs root and mount permission; the injected-failure test above covers the logic
      return;
    }
    h.defer(() => execFileSync('umount', ['-l', mnt]));
    const file = path.join(mnt, 'outbox.log');
    const { box } = await open(file, { limits: { maxBytes: 1024 * 1024 } });
    const confirmed: number[] = [];
    let failure: unknown;
    for (let n = 0; n < 5000 && !failure; n += 1) {
      await box.append('synthetic', { n }).then((seq) => confirmed.push(seq), (err: unknown) => (failure = err));
    }
    expect(failure).toMatchObject({ code: 'OUTBOX_DISK_FULL' });
    await box.close();
    const { box: again, problems } = await open(file);
    expect(problems).toEqual([]);
    expect(all(again).map((e) => e.seq)).toEqual(confirmed);
  });
});
