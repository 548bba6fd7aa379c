import { afterEach, describe, expect, it, vi } from 'vitest';
import { waitFor } from '../../test/support/harness.js';
import { HEARTBEAT_SLICES, MAX_QUIET_PASSES, quietPassesBeforePing, SessionRegistry, type LiveSession } from '../session-registry.js';

class FakeSession implements LiveSession {
  pings = 0;
  readonly alive = true;
  readonly fingerprint = 'f';
  constructor(
    readonly deviceId: string,
    private readonly onPing: () => void,
  ) {}
  close(): void {}
  heartbeat(): void {
    this.pings += 1;
    this.onPing();
  }
}

let registry: SessionRegistry<FakeSession> | undefined;
afterEach(() => registry?.closeAll(1001, 'test over'));

describe('quiet passes before a ping', () => {
  it('covers the check-in interval and one pass more, so punctual agents are never pinged, within bounds', () => {
    expect(quietPassesBeforePing(30_000, 60)).toBe(3); // the defaults
    expect(quietPassesBeforePing(30_000, 10)).toBe(2);
    expect(quietPassesBeforePing(30_000, 30)).toBe(2);
    expect(quietPassesBeforePing(30_000, 3600)).toBe(MAX_QUIET_PASSES); // idle mappings in middleboxes
    expect(quietPassesBeforePing(3_600_000, 1)).toBe(2);
  });
});

describe('session registry heartbeat', () => {
  it('pings every session once per interval, a share per tick rather than all at once', async () => {
    registry = new SessionRegistry<FakeSession>();
    const r = registry;
    let pinged = 0;
    let largestBurst = 0;
    let burst = 0;
    const onPing = (): void => {
      pinged += 1;
      if (burst === 0) setImmediate(() => (burst = 0));
      burst += 1;
      largestBurst = Math.max(largestBurst, burst);
    };
    const sessions = Array.from({ length: 90 }, (_, i) => new FakeSession(`dev_${i}`, onPing));
    for (const s of sessions) r.register(s, 4004);
    r.startHeartbeat(HEARTBEAT_SLICES * 100); // ticks of 100 ms
    await waitFor(() => sessions.every((s) => s.pings >= 1) || undefined, 'every session pinged once', 10_000);
    expect(largestBurst).toBe(90 / HEARTBEAT_SLICES);
    expect(Math.max(...sessions.map((s) => s.pings))).toBe(1);
    expect(pinged).toBe(90);
  });

  it('pings a fleet smaller than the number of ticks once per interval too, not once per tick', () => {
    vi.useFakeTimers();
    try {
      registry = new SessionRegistry<FakeSession>();
      const sessions = Array.from({ length: 3 }, (_, i) => new FakeSession(`dev_${i}`, () => undefined));
      for (const s of sessions) registry.register(s, 4004);
      registry.startHeartbeat(HEARTBEAT_SLICES * 100);
      vi.advanceTimersByTime(HEARTBEAT_SLICES * 100);
      expect(sessions.map((s) => s.pings)).toEqual([1, 1, 1]);
      vi.advanceTimersByTime(HEARTBEAT_SLICES * 100 * 2);
      expect(sessions.map((s) => s.pings)).toEqual([3, 3, 3]);
    } finally {
      registry?.closeAll(1001, 'test over');
      registry = undefined;
      vi.useRealTimers();
    }
  });
});
