import { describe, expect, it } from 'vitest';
import { RollcallError } from '../../common/errors.js';
import { AdmitBatcher, type AdmitItem } from '../cluster/admit-batcher.js';
import { handshakeShares } from '../cluster/handshake-budget.js';
import type { AdmitDecision, HelloFacts } from '../session-admission.js';

const hello = (deviceId: string): HelloFacts => ({
  deviceId,
  groupId: 'grp_root',
  address: '127.0.0.1',
  at: 1000,
  protocol: 4,
  connect: { fingerprint: 'fp', agentVersion: '1.0.0', hostname: deviceId, os: 'linux', at: 1000, address: '127.0.0.1', intervalSec: 60 },
});
const refusal = (retryAfterMs: number): AdmitDecision => ({ admitted: false, maxAgents: 1, retryAfterMs });
const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('hello admissions of an agent worker', () => {
  it('sends the hellos of one event-loop turn in one call and gives each its own decision, in order', async () => {
    const calls: number[][] = [];
    let answer: (d: AdmitDecision[]) => void = () => undefined;
    const batcher = new AdmitBatcher((items: AdmitItem[]) => {
      calls.push(items.map((i) => i.sid));
      return new Promise<AdmitDecision[]>((resolve) => (answer = resolve));
    });
    const first = [1, 2, 3].map((sid) => batcher.admit({ sid, hello: hello(`dev_${sid}`) }));
    await turn();
    expect(calls).toEqual([[1, 2, 3]]);
    answer([refusal(10), refusal(20), refusal(30)]);
    expect((await Promise.all(first)).map((d) => (d.admitted ? 0 : d.retryAfterMs))).toEqual([10, 20, 30]);
    const later = batcher.admit({ sid: 4, hello: hello('dev_4') });
    await turn();
    expect(calls).toEqual([[1, 2, 3], [4]]);
    answer([refusal(40)]);
    expect(await later).toMatchObject({ retryAfterMs: 40 });
    expect(batcher.stats).toEqual({ batches: 2, hellos: 4 });
  });

  it('fails every hello of a batch whose call failed or was answered with the wrong count', async () => {
    const failing = new AdmitBatcher(() => Promise.reject(new RollcallError('RPC_CHANNEL_CLOSED', 'the IPC channel closed')));
    const failed = await Promise.allSettled([failing.admit({ sid: 1, hello: hello('dev_a') }), failing.admit({ sid: 2, hello: hello('dev_b') })]);
    expect(failed.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    const short = new AdmitBatcher(async () => [refusal(1)]);
    const wrong = await Promise.allSettled([short.admit({ sid: 1, hello: hello('dev_a') }), short.admit({ sid: 2, hello: hello('dev_b') })]);
    expect(wrong.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    expect(String((wrong[0] as PromiseRejectedResult).reason)).toMatch(/answered 1 admissions for 2 hellos/);
  });
});

describe('the box\'s handshake budget split over agent workers', () => {
  it('never hands out more than the budget in all, as evenly as whole numbers allow', () => {
    expect([...handshakeShares(256, [1, 2]).values()]).toEqual([128, 128]);
    expect(handshakeShares(256, [3, 1, 2])).toEqual(new Map([[1, 86], [2, 85], [3, 85]]));
    for (const n of [1, 2, 3, 7, 9]) {
      const shares = [...handshakeShares(256, Array.from({ length: n }, (_, i) => i + 1)).values()];
      expect(shares.reduce((a, b) => a + b, 0)).toBe(256);
      expect(Math.max(...shares) - Math.min(...shares)).toBeLessThanOrEqual(1);
    }
  });

  it('gives a surviving worker the share of one that stopped, and every worker at least one', () => {
    expect(handshakeShares(256, [2])).toEqual(new Map([[2, 256]]));
    expect([...handshakeShares(2, [1, 2, 3]).values()]).toEqual([1, 1, 1]);
    expect(handshakeShares(10, []).size).toBe(0);
  });
});
