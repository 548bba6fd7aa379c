import { afterEach, describe, expect, it } from 'vitest';
import { waitFor } from '../../test/support/harness.js';
import { HEARTBEAT_SLICES, SessionRegistry, type LiveSession } from '../session-registry.js';

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
});
