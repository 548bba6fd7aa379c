import { describe, expect, it } from 'vitest';
import { backoffDelay, DEFAULT_BACKOFF, newReconnectState, nextReconnectDelay, reconnectWelcomed, type ReconnectState } from '../backoff.js';

describe('full-jitter backoff', () => {
  const policy = { baseMs: 100, capMs: 1000 };

  it('draws from [0, min(cap, base * 2^attempt)]', () => {
    expect(backoffDelay(policy, 0, () => 0.999)).toBe(99);
    expect(backoffDelay(policy, 1, () => 0.999)).toBe(199);
    expect(backoffDelay(policy, 3, () => 0.5)).toBe(400);
    expect(backoffDelay(policy, 10, () => 0.999)).toBe(999);
    expect(backoffDelay(policy, 5, () => 0)).toBe(0);
  });

  it('never overflows for very large attempt numbers', () => {
    expect(backoffDelay(policy, 10_000, () => 0.5)).toBe(500);
    expect(backoffDelay(DEFAULT_BACKOFF, 1e9, () => 0.999)).toBeLessThanOrEqual(DEFAULT_BACKOFF.capMs);
  });

  it('uses a delay the server advised as a floor, even beyond the cap', () => {
    expect(backoffDelay(policy, 0, () => 0, 5000)).toBe(5000);
    expect(backoffDelay(policy, 4, () => 0.9, 10)).toBe(900);
    expect(backoffDelay(policy, 0, () => 0.5, -5)).toBe(50);
  });

  it('spreads a fleet over the whole window instead of in waves', () => {
    const values = Array.from({ length: 1000 }, (_, i) => backoffDelay(policy, 10, () => i / 1000));
    const buckets = new Array(10).fill(0) as number[];
    for (const v of values) buckets[Math.floor(v / 100)]! += 1;
    for (const b of buckets) expect(b).toBe(100);
  });

});

describe('an agent taking its place in its fleet\'s return', () => {
  const policy = { baseMs: 100, capMs: 1000 };
  const W = 60_000;
  const welcomed = (windowMs = W): ReconnectState => {
    const st = newReconnectState();
    reconnectWelcomed(st, windowMs);
    return st;
  };

  it('retries once quickly after a loss without notice, then takes a place in the whole window', () => {
    const st = welcomed();
    // The first retry stays quick, so a lone agent whose own network blinked is back at once.
    expect(nextReconnectDelay(policy, st, () => 0.999)).toBe(99);
    expect(nextReconnectDelay(policy, st, () => 0.999)).toBe(59_940);
    expect(st.sincePlaced).toBe(0);
  });

  it('takes the moment the server advised as its place', () => {
    const st = welcomed();
    expect(nextReconnectDelay(policy, st, () => 0.5, 42_000)).toBe(42_000);
    expect(st.sincePlaced).toBe(0);
  });

  it('after a failed attempt at its place draws a new place from the whole window, never below its backoff window', () => {
    const st = welcomed();
    nextReconnectDelay(policy, st, () => 0.5, 42_000); // placed by the notice
    for (let i = 0; i < 5; i += 1) expect(nextReconnectDelay(policy, st, () => 0.999_999) + 1).toBe(W);
    expect(st.sincePlaced).toBe(5);
    // A window smaller than the backoff window changes nothing; the advice is always a floor.
    const small = welcomed(10);
    nextReconnectDelay(policy, small, () => 0.5);
    expect(nextReconnectDelay(policy, small, () => 0.999)).toBe(199);
    expect(nextReconnectDelay(policy, st, () => 0, 5000)).toBe(5000);
  });

  it('starts afresh after a welcome', () => {
    const st = welcomed();
    nextReconnectDelay(policy, st, () => 0.5);
    nextReconnectDelay(policy, st, () => 0.5);
    nextReconnectDelay(policy, st, () => 0.5);
    reconnectWelcomed(st, 8000);
    expect(st).toEqual({ attempt: 0, windowMs: 8000, sincePlaced: -1 });
    expect(nextReconnectDelay(policy, st, () => 0.999)).toBe(99);
  });

  it('is plain backoff when the server advertised no window (protocol 3 and older)', () => {
    const st = newReconnectState();
    expect([0, 1, 2, 3].map(() => nextReconnectDelay(policy, st, () => 0.999))).toEqual([99, 199, 399, 799]);
  });

  it('spreads a fleet evenly over the fleet window (jitter after the cap, not capped after)', () => {
    const values = Array.from({ length: 1000 }, (_, i) => {
      const st = welcomed(100_000);
      nextReconnectDelay(policy, st, () => 0.5); // the quick retry
      return nextReconnectDelay(policy, st, () => i / 1000);
    });
    const buckets = new Array(10).fill(0) as number[];
    for (const v of values) buckets[Math.floor(v / 10_000)]! += 1;
    for (const b of buckets) expect(b).toBe(100);
  });
});
