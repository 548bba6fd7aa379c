import { describe, expect, it, vi } from 'vitest';
import { CheckinWriter } from '../checkin-writer.js';
import type { CheckinUpdate } from '../storage/devices-store.js';

function controllable() {
  const calls: CheckinUpdate[][] = [];
  const gates: { resolve: () => void; reject: (e: unknown) => void }[] = [];
  const apply = (updates: readonly CheckinUpdate[]): Promise<void> => {
    calls.push([...updates]);
    return new Promise((resolve, reject) => gates.push({ resolve, reject }));
  };
  return { calls, gates, apply };
}

const rec = (deviceId: string, seq: number, count: 0 | 1 = 1) => ({ deviceId, seq, at: seq * 1000, address: '127.0.0.1', count });

describe('check-in write-behind', () => {
  it('writes a lone check-in at once and resolves only after the write is durable', async () => {
    const c = controllable();
    const w = new CheckinWriter(c.apply, { flushDelayMs: 0 });
    let durable = false;
    const p = w.record(rec('d1', 1)).then(() => (durable = true));
    expect(c.calls).toHaveLength(1);
    await Promise.resolve();
    expect(durable).toBe(false);
    c.gates[0]!.resolve();
    await p;
    expect(durable).toBe(true);
  });

  it('gathers check-ins that arrive during a write into one multi-device batch, coalescing per device', async () => {
    const c = controllable();
    const w = new CheckinWriter(c.apply, { flushDelayMs: 0 });
    const first = w.record(rec('d1', 1));
    const later = [w.record(rec('d1', 2)), w.record(rec('d2', 7)), w.record(rec('d1', 3)), w.record(rec('d3', 1, 0))];
    expect(w.pendingSeq('d1')).toBe(3);
    c.gates[0]!.resolve();
    await first;
    await new Promise((r) => setImmediate(r));
    expect(c.calls).toHaveLength(2);
    expect(c.calls[1]).toEqual([
      { deviceId: 'd1', seq: 3, at: 3000, address: '127.0.0.1', count: 2 },
      { deviceId: 'd2', seq: 7, at: 7000, address: '127.0.0.1', count: 1 },
      { deviceId: 'd3', seq: 1, at: 1000, address: '127.0.0.1', count: 0 },
    ]);
    c.gates[1]!.resolve();
    await Promise.all(later);
    expect(w.stats).toEqual({ batches: 2, checkins: 5, rows: 4 });
  });

  it("takes a worker's batch with one waiter: coalesced with what is queued, settled with its write, counted per check-in", async () => {
    const c = controllable();
    const w = new CheckinWriter(c.apply, { flushDelayMs: 0 });
    const first = w.record(rec('d1', 1)); // written at once
    let durable = false;
    const batch = w.recordAll([rec('d1', 2), rec('d2', 7), rec('d1', 3, 0)]).then(() => (durable = true));
    const other = w.record(rec('d3', 1));
    expect(c.calls).toHaveLength(1);
    c.gates[0]!.resolve();
    await first;
    await new Promise((r) => setImmediate(r));
    expect(c.calls[1]).toEqual([
      { deviceId: 'd1', seq: 3, at: 3000, address: '127.0.0.1', count: 1 },
      { deviceId: 'd2', seq: 7, at: 7000, address: '127.0.0.1', count: 1 },
      { deviceId: 'd3', seq: 1, at: 1000, address: '127.0.0.1', count: 1 },
    ]);
    expect(durable).toBe(false);
    c.gates[1]!.resolve();
    await Promise.all([batch, other]);
    expect(durable).toBe(true);
    expect(w.stats).toEqual({ batches: 2, checkins: 5, rows: 4 });
    // A failed write rejects the batch's one promise.
    const failed = w.recordAll([rec('d1', 9), rec('d2', 9)]);
    c.gates[2]!.reject(new Error('disk full'));
    await expect(failed).rejects.toThrow('disk full');
  });

  it('rejects every waiter of a failed batch, and keeps writing later batches', async () => {
    const c = controllable();
    const w = new CheckinWriter(c.apply, { flushDelayMs: 0 });
    const a = w.record(rec('d1', 1));
    c.gates[0]!.reject(new Error('disk full'));
    await expect(a).rejects.toThrow('disk full');
    const b = w.record(rec('d1', 2));
    expect(c.calls).toHaveLength(2);
    c.gates[1]!.resolve();
    await expect(b).resolves.toBeUndefined();
  });

  it('waits flushDelayMs to gather more when configured, and flush() writes everything', async () => {
    const c = controllable();
    const w = new CheckinWriter(c.apply, { flushDelayMs: 10_000 });
    const p = w.record(rec('d1', 1));
    expect(c.calls).toHaveLength(0);
    const flushed = w.flush();
    expect(c.calls).toHaveLength(1);
    c.gates[0]!.resolve();
    await flushed;
    await p;
    await w.close();
    await expect(w.record(rec('d1', 2))).rejects.toThrow(/closed/);
  });

  it('keeps minGapMs between the starts of two writes when busy, and writes at once after a quiet gap', async () => {
    const c = controllable();
    let clock = 0;
    const w = new CheckinWriter(c.apply, { flushDelayMs: 0, minGapMs: 30, now: () => clock });
    const first = w.record(rec('d1', 1));
    expect(c.calls).toHaveLength(1); // idle: at once
    c.gates[0]!.resolve();
    await first;
    clock = 5;
    const held = [w.record(rec('d2', 1)), w.record(rec('d3', 1))];
    expect(c.calls).toHaveLength(1); // 5 ms after the last start: held for the rest of the gap, gathering
    await vi.waitFor(() => expect(c.calls).toHaveLength(2), { timeout: 5000 }); // the gap's timer (25 ms real time)
    expect(c.calls.map((b) => b.map((u) => u.deviceId))).toEqual([['d1'], ['d2', 'd3']]);
    c.gates[1]!.resolve();
    await Promise.all(held);
    await new Promise((r) => setImmediate(r)); // the finished write lets go of the writer
    clock = 1000;
    const late = w.record(rec('d1', 2));
    expect(c.calls).toHaveLength(3); // long after the last start: at once again
    c.gates[2]!.resolve();
    await late;
  });
});

describe('latest sequence', () => {
  it('stays visible while queued, while being written and after it is written', async () => {
    const c = controllable();
    const w = new CheckinWriter(c.apply, { flushDelayMs: 0 });
    const first = w.record(rec('d1', 4));
    expect(w.latestSeq('d1')).toBe(4);
    void w.record(rec('d1', 5));
    expect(w.latestSeq('d1')).toBe(5);
    c.gates[0]!.resolve();
    await first;
    expect(w.latestSeq('d1')).toBe(5);
    await new Promise((r) => setImmediate(r));
    c.gates[1]!.resolve();
    await w.flush();
    expect(w.latestSeq('d1')).toBe(5);
    expect(w.latestSeq('d2')).toBe(0);
  });
});
