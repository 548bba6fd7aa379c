/**
 * Check-in records while offline: one per interval while the agent has no
 * live channel, none while connected, at the interval the server last gave
 * (or the override, else the default), with the last failure class.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { OfflineCheckins, type CheckinSink } from '../offline-checkins.js';

interface Recorded {
  readonly at: number;
  readonly data: { uptimeSec: number; reason?: string };
}

function sink(): CheckinSink & { records: Recorded[] } {
  const records: Recorded[] = [];
  return {
    records,
    add: (kind, data) => {
      expect(kind).toBe('checkin');
      records.push({ at: Date.now(), data });
      return Promise.resolve(records.length);
    },
  };
}

beforeEach(() => {
  vi.useFakeTimers({ now: 0 });
});
afterEach(() => {
  vi.useRealTimers();
});

describe('offline check-in records', () => {
  it('records one per interval while offline and none while connected', () => {
    const out = sink();
    const c = new OfflineCheckins(out, { defaultIntervalSec: 60, uptimeSec: () => 7 });
    c.offline();
    vi.advanceTimersByTime(59_999);
    expect(out.records).toEqual([]);
    vi.advanceTimersByTime(1);
    vi.advanceTimersByTime(120_000);
    expect(out.records).toEqual([
      { at: 60_000, data: { uptimeSec: 7 } },
      { at: 120_000, data: { uptimeSec: 7 } },
      { at: 180_000, data: { uptimeSec: 7 } },
    ]);
    // Connected (the server gives 30 s): live check-ins only, for as long as it lasts.
    c.setServerInterval(30);
    c.online();
    vi.advanceTimersByTime(600_000);
    expect(out.records).toHaveLength(3);
    // Lost again: the server's interval, the failure class, first record one interval later.
    c.offline('REFUSED');
    vi.advanceTimersByTime(90_000);
    expect(out.records.slice(3)).toEqual([
      { at: 810_000, data: { uptimeSec: 7, reason: 'REFUSED' } },
      { at: 840_000, data: { uptimeSec: 7, reason: 'REFUSED' } },
      { at: 870_000, data: { uptimeSec: 7, reason: 'REFUSED' } },
    ]);
    c.stop();
    vi.advanceTimersByTime(600_000);
    expect(out.records).toHaveLength(6);
  });

  it('keeps its cadence across repeated failures (at most one per interval) and takes the newest reason', () => {
    const out = sink();
    const c = new OfflineCheckins(out, { defaultIntervalSec: 10, uptimeSec: () => 1 });
    c.offline();
    for (let t = 0; t < 35; t += 1) {
      // A failed attempt every second (fast backoff) must not add records nor reset the timer.
      c.offline(t < 15 ? 'REFUSED' : 'TIMEOUT');
      vi.advanceTimersByTime(1000);
    }
    expect(out.records.map((r) => [r.at, r.data.reason])).toEqual([
      [10_000, 'REFUSED'],
      [20_000, 'TIMEOUT'],
      [30_000, 'TIMEOUT'],
    ]);
    c.stop();
  });

  it('uses --interval over the server and clears the reason once connected', () => {
    const out = sink();
    const c = new OfflineCheckins(out, { defaultIntervalSec: 60, intervalOverrideSec: 2, uptimeSec: () => 3 });
    c.setServerInterval(300);
    expect(c.intervalSec).toBe(2);
    c.offline('TLS');
    vi.advanceTimersByTime(2000);
    c.online();
    c.offline();
    vi.advanceTimersByTime(2000);
    expect(out.records).toEqual([
      { at: 2000, data: { uptimeSec: 3, reason: 'TLS' } },
      { at: 4000, data: { uptimeSec: 3 } },
    ]);
    c.stop();
    c.offline('REFUSED');
    vi.advanceTimersByTime(10_000);
    expect(out.records).toHaveLength(2);
  });
});
