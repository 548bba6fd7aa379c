import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import type { ListenerPort, ProbeResult } from '../../common/protocol.js';
import { waitFor } from '../../test/support/harness.js';
import { ProbeScheduler } from '../prober.js';

const ports: ListenerPort[] = [
  { port: 2222, role: 'agent', required: true },
  { port: 8443, role: 'console', required: false },
];

function setup(intervalMs = 60_000) {
  let clock = 0;
  const calls: string[] = [];
  const rounds: ProbeResult[][] = [];
  const scheduler = new ProbeScheduler(
    async (host, ps) => {
      calls.push(host);
      return ps.map((p) => ({ host, port: p.port, role: p.role, ok: p.port === 2222, ms: 1, at: clock }));
    },
    { setProbes: (r) => rounds.push([...r]) },
    intervalMs,
    pino({ level: 'silent' }),
    () => clock,
  );
  return { scheduler, calls, rounds, advance: (ms: number) => (clock += ms) };
}

describe('probe scheduler', () => {
  it('probes every host once when a channel first comes up, and reports every port', async () => {
    const t = setup();
    t.scheduler.onConnected(['a.example', 'b.example', 'a.example'], ports);
    await waitFor(() => t.rounds.length === 1, 'a probe round');
    expect(t.calls).toEqual(['a.example', 'b.example']);
    expect(t.rounds[0]!.map((r) => `${r.host}:${r.port}:${r.ok}`)).toEqual(['a.example:2222:true', 'a.example:8443:false', 'b.example:2222:true', 'b.example:8443:false']);
    await t.scheduler.stop();
  });

  it('does not probe again on a reconnect within the interval, unless an attempt failed in between', async () => {
    const t = setup();
    t.scheduler.onConnected(['a'], ports);
    await waitFor(() => t.rounds.length === 1, 'the first round');
    t.scheduler.onDisconnected();
    t.advance(1000);
    t.scheduler.onConnected(['a'], ports);
    expect(t.calls).toHaveLength(1);
    t.scheduler.onDisconnected();
    t.scheduler.noteFailure();
    t.scheduler.onConnected(['a'], ports);
    await waitFor(() => t.rounds.length === 2, 'a round right after a failure');
    t.advance(60_000);
    t.scheduler.onConnected(['a'], ports);
    await waitFor(() => t.rounds.length === 3, 'a round once the interval passed');
    await t.scheduler.stop();
  });

  it('probes again at the interval while connected, and stops when told', async () => {
    const t = setup(30);
    t.scheduler.onConnected(['a'], ports);
    await waitFor(() => t.rounds.length >= 3, 'periodic rounds', 5000);
    await t.scheduler.stop();
    const n = t.rounds.length;
    t.scheduler.onConnected(['a'], ports);
    expect(t.rounds.length).toBe(n);
  });
});
