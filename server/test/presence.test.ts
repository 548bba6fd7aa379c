import { describe, expect, it } from 'vitest';
import { computeAgeBand, computePresence, PRESENCE_STATES, type PresenceInput } from '../presence.js';

const MIN = 60_000;
const DAY = 86_400_000;
const base: PresenceInput = { connected: true, closedCleanly: false, lastCheckinAt: 0, lastConnectedAt: 0, intervalSec: 60, now: 0 };

describe('presence rules', () => {
  it('is online while connected and check-ins are at most 1.5 intervals old', () => {
    expect(computePresence({ ...base, now: 90_000 })).toBe('online');
    expect(computePresence({ ...base, now: 90_001 })).toBe('late');
  });

  it('is late between 1.5 and 3 intervals, then offline, connected or not', () => {
    expect(computePresence({ ...base, now: 3 * MIN })).toBe('late');
    expect(computePresence({ ...base, now: 3 * MIN + 1 })).toBe('offline');
    expect(computePresence({ ...base, connected: false, now: 10_000 })).toBe('late');
    expect(computePresence({ ...base, connected: false, now: 4 * MIN })).toBe('offline');
  });

  it('is offline at once when the agent closed the channel cleanly', () => {
    expect(computePresence({ ...base, connected: false, closedCleanly: true, now: 1000 })).toBe('offline');
  });

  it('is never_connected for an enrolled device that never came, and uses the later contact', () => {
    expect(computePresence({ ...base, connected: false, lastCheckinAt: null, lastConnectedAt: null })).toBe('never_connected');
    expect(computePresence({ ...base, lastCheckinAt: null, lastConnectedAt: 1000, now: 2000 })).toBe('online');
    expect(computePresence({ ...base, lastCheckinAt: 0, lastConnectedAt: 5 * MIN, now: 5 * MIN + 1000 })).toBe('online');
    expect(PRESENCE_STATES).toEqual(['online', 'late', 'offline', 'never_connected']);
  });

  it('puts the last contact in the model age bands: 10 minutes, 2 days, 14 days', () => {
    expect(computeAgeBand(null, 0)).toBe('never');
    expect(computeAgeBand(0, 10 * MIN)).toBe('recent');
    expect(computeAgeBand(0, 10 * MIN + 1)).toBe('ok');
    expect(computeAgeBand(0, 2 * DAY)).toBe('ok');
    expect(computeAgeBand(0, 2 * DAY + 1)).toBe('warning');
    expect(computeAgeBand(0, 14 * DAY)).toBe('warning');
    expect(computeAgeBand(0, 14 * DAY + 1)).toBe('error');
  });
});
