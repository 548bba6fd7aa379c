/**
 * After a server crash (no SERVER_RESTARTING notice) an agent retries once
 * at its quick backoff, then spreads its reconnects over the fleet-sized
 * window the server advertised in `welcome` (protocol 4): a whole fleet
 * does not come back in one wave. A real server process is killed with
 * SIGKILL under an in-process agent whose random source is fixed, so the
 * delays it schedules are exact.
 */
import path from 'node:path';
import { afterAll, describe, expect, it, onTestFailed } from 'vitest';
import { restartWindowMs } from '../../server/restart-spread.js';
import { AgentState } from '../../agent/state.js';
import { Harness } from '../support/harness.js';
import { assertBuilt, eventually, freePort, Processes, ServerFixture } from './processes.js';

const h = new Harness();
const procs = new Processes();
afterAll(async () => {
  await procs.killAll();
  await h.cleanup();
});

/** A server process with one enrolled in-process agent (fixed random source, 50-200 ms backoff) that got its first ack. */
async function connectedAgent(group: string, fingerprint: string) {
  assertBuilt();
  onTestFailed(() => void process.stderr.write(`\nprocess output at failure:\n${procs.report()}\n`));
  const dataDir = await h.tempDir('rollcall-spread-data-');
  const stateDir = path.join(await h.tempDir('rollcall-spread-agent-'), 'state');
  const fixture = new ServerFixture(procs, dataDir, { agent: await freePort(), console: await freePort() });
  await fixture.start();
  await fixture.enroll(group, stateDir);
  const backoff = { baseMs: 50, capMs: 200 };
  const { running } = await h.runAgent({ state: new AgentState(stateDir), fingerprint }, { backoff, random: () => 0.999 });
  await eventually(() => (running.status.status.state === 'connected' && running.status.status.lastAckedSeq >= 1 ? true : undefined), 'a first ack', 20_000, 20);
  // Each delay the agent schedules from now on, by the failed-attempt count it followed.
  const delays = new Map<number, number>();
  const timer = setInterval(() => {
    const st = running.status.status;
    if (st.state === 'backoff' && st.nextAttemptAt && !delays.has(st.failedAttempts)) delays.set(st.failedAttempts, Date.parse(st.nextAttemptAt) - Date.parse(st.updatedAt));
  }, 2);
  h.defer(() => clearInterval(timer));
  return { fixture, backoff, delays };
}

describe('reconnect spread after a crash', { timeout: 60_000 }, () => {
  it('retries once quickly, then draws from the fleet window the server advertised', async () => {
    const { fixture, backoff, delays } = await connectedAgent('Customers/Spread', 'b'.repeat(64));
    fixture.server!.signal('SIGKILL');
    await eventually(() => (delays.size >= 2 ? true : undefined), 'two scheduled retries', 20_000, 10);

    const first = Math.min(...delays.keys());
    // The drop itself: the quick first retry (attempt 0: floor(0.999 * 50)).
    expect(delays.get(first)).toBeLessThanOrEqual(49);
    // The first retry found the server gone: from now on the window is the fleet's (one agent: the 5 s floor).
    const spread = restartWindowMs(1);
    expect(spread).toBeGreaterThan(backoff.capMs);
    const second = delays.get(first + 1)!;
    expect(second).toBeGreaterThanOrEqual(Math.floor(0.999 * spread) - 5);
    expect(second).toBeLessThanOrEqual(Math.floor(0.999 * spread));
  });
});
