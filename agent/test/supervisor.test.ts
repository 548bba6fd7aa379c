import fs from 'node:fs/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { captureLogger, Harness, waitFor, type EnrolledAgent, type LogLine, type TestServer } from '../../test/support/harness.js';
import type { AgentState } from '../state.js';
import type { AgentStatus } from '../status.js';
import { startAgent, type AgentRunOptions, type RunningAgent } from '../supervisor.js';
import { closedPort } from './net-fixtures.js';

const h = new Harness();
afterEach(() => h.cleanup());

const SMALL_BACKOFF = Object.freeze({ baseMs: 50, capMs: 500 });

/** Starts the reconnect loop for an enrolled state dir; stopped at cleanup. */
async function run(agent: Pick<EnrolledAgent, 'state' | 'fingerprint'>, extra: Partial<AgentRunOptions> = {}): Promise<RunningAgent> {
  const { log } = captureLogger();
  const running = await startAgent({
    state: agent.state,
    fingerprint: agent.fingerprint,
    backoff: SMALL_BACKOFF,
    connectTimeoutMs: 2000,
    ackTimeoutMs: 3000,
    intervalOverrideSec: 1,
    log,
    random: () => 0.5,
    ...extra,
  });
  h.defer(() => running.stop());
  return running;
}

/** The status file as `rollcall-agent status` reads it. */
async function statusOnDisk(state: AgentState): Promise<AgentStatus | undefined> {
  return state.readStatus<AgentStatus>();
}

/** Polls the agent's acknowledged sequence numbers and keeps every distinct value, in order. */
function recordAcks(agent: RunningAgent): number[] {
  const seen: number[] = [];
  const timer = setInterval(() => {
    const seq = agent.status.status.lastAckedSeq;
    if (seen[seen.length - 1] !== seq) seen.push(seq);
  }, 5);
  h.defer(() => clearInterval(timer));
  return seen;
}

async function storedDevice(s: TestServer, id: string) {
  return s.storedDevice(id);
}

/** Rewrites the server list an enrollment keeps (the failover order). */
async function setServers(state: AgentState, servers: string[]): Promise<void> {
  const file = state.file('identity');
  const identity = JSON.parse(await fs.readFile(file, 'utf8')) as Record<string, unknown>;
  await fs.writeFile(file, JSON.stringify({ ...identity, servers }));
}

describe('startAgent', () => {
  it('connects, checks in every interval, and keeps the acknowledged sequence number in status and seq.json', async () => {
    const s = await h.startServer();
    const agent = await s.enrollAgent({ group: 'Customers/Loop' });
    const running = await run(agent);

    await waitFor(() => running.status.status.lastAckedSeq >= 3, 'three acknowledged check-ins', 10_000);
    const onDisk = await waitFor(async () => {
      const st = await statusOnDisk(agent.state);
      return st && st.lastAckedSeq >= 3 ? st : undefined;
    }, 'the status file to show three acks');
    expect(onDisk).toMatchObject({
      state: 'connected',
      deviceId: agent.deviceId,
      group: 'All/Customers/Loop',
      server: s.agentAddress,
      pid: process.pid,
      intervalSec: 1,
      failedAttempts: 0,
      lastError: null,
      nextAttemptAt: null,
    });
    expect(onDisk.connectedSince).not.toBeNull();
    expect(onDisk.lastCheckinAt).not.toBeNull();
    expect((await fs.stat(agent.state.file('status'))).mode & 0o777).toBe(0o600);

    await waitFor(async () => (await agent.state.loadAckedSeq()) >= 3, 'seq.json to hold the third ack');
    const stored = await storedDevice(s, agent.deviceId);
    expect(stored.lastSeq).toBeGreaterThanOrEqual(3);
    expect(stored.checkinCount).toBe(stored.lastSeq);
  });

  it('comes back by itself after the server restarts on the same data and port, and never reuses a sequence number', async () => {
    const s1 = await h.startServer();
    const port = s1.server.agentPort;
    const agent = await s1.enrollAgent();
    const running = await run(agent);
    const acks = recordAcks(running);
    await waitFor(() => running.status.status.lastAckedSeq >= 2, 'two acknowledged check-ins', 10_000);

    await s1.close();
    const ackedBefore = running.status.status.lastAckedSeq;
    const down = await waitFor(async () => {
      const st = await statusOnDisk(agent.state);
      return st?.state === 'backoff' && st.lastError?.class === 'REFUSED' ? st : undefined;
    }, 'the status file to show backoff after a refused connection');
    expect(down.lastError).toMatchObject({ class: 'REFUSED', code: 'ECONNREFUSED' });
    expect(down.failedAttempts).toBeGreaterThanOrEqual(2); // the server's close, then at least one refusal
    expect(down.nextAttemptAt).not.toBeNull();
    expect(down.connectedSince).toBeNull();

    const s2 = await h.startServer({ agentPort: port }, { dataDir: s1.dataDir });
    const storedAtRestart = await storedDevice(s2, agent.deviceId);
    expect(storedAtRestart.lastSeq).toBeGreaterThanOrEqual(ackedBefore);
    await waitFor(() => running.status.status.state === 'connected' && running.status.status.lastAckedSeq >= storedAtRestart.lastSeq + 2, 'two acks from the new server', 15_000);

    const stored = await storedDevice(s2, agent.deviceId);
    expect(stored.lastSeq).toBeGreaterThanOrEqual(storedAtRestart.lastSeq + 2);
    expect(stored.checkinCount).toBe(stored.lastSeq);
    expect(acks.filter((seq, i) => i > 0 && seq <= acks[i - 1]!)).toEqual([]);
    expect(running.status.status.failedAttempts).toBe(0);
    expect(s2.logs.some((l) => l.msg === 'agent connected' && l.deviceId === agent.deviceId)).toBe(true);
  });

  it('ends with a terminal outcome and state "refused" when the device is revoked while connected', async () => {
    const s = await h.startServer();
    const agent = await s.enrollAgent();
    const running = await run(agent);
    await waitFor(() => running.status.status.lastAckedSeq >= 1, 'a first ack', 10_000);

    await s.api('POST', `/api/v1/devices/${agent.deviceId}/revoke`, {});
    const outcome = await running.done;
    expect(outcome).toMatchObject({ kind: 'terminal', failure: { class: 'REJECTED', code: 'REVOKED', terminal: true, retryable: false } });
    expect(await statusOnDisk(agent.state)).toMatchObject({ state: 'refused', connectedSince: null, lastError: { class: 'REJECTED', code: 'REVOKED' } });
    expect(s.logs.filter((l) => l.msg === 'agent rejected')).toEqual([]); // it did not try again
  });

  it('ends with a terminal outcome without retrying when a revoked device is refused at the upgrade', async () => {
    const s = await h.startServer();
    const agent = await s.enrollAgent();
    await s.api('POST', `/api/v1/devices/${agent.deviceId}/revoke`, {});
    const running = await run(agent);
    const outcome = await running.done;
    expect(outcome).toMatchObject({ kind: 'terminal', failure: { code: 'DEVICE_REVOKED', terminal: true } });
    expect((await statusOnDisk(agent.state))?.state).toBe('refused');
    expect(s.logs.filter((l) => l.msg === 'agent rejected')).toHaveLength(1);
  });

  it('closes cleanly on stop(), after which the server shows the device offline at once', async () => {
    const s = await h.startServer({ checkinIntervalSec: 60 });
    const agent = await s.enrollAgent();
    const running = await run(agent);
    await waitFor(() => running.status.status.lastAckedSeq >= 1, 'a first ack', 10_000);
    const online = await s.api<{ status: string }>('GET', `/api/v1/devices/${agent.deviceId}`);
    expect(online.body.status).toBe('online');

    expect(await running.stop()).toEqual({ kind: 'stopped' });
    expect(await statusOnDisk(agent.state)).toMatchObject({ state: 'stopped', connectedSince: null, nextAttemptAt: null });
    const view = await waitFor(async () => {
      const res = await s.api<{ status: string; connected: boolean }>('GET', `/api/v1/devices/${agent.deviceId}`);
      return res.body.connected ? undefined : res.body;
    }, 'the server to see the channel closed');
    expect(view.status).toBe('offline');
    expect(s.logs.some((l) => l.msg === 'agent disconnected' && l.closeCode === 1000)).toBe(true);
  });

  it('stops at once while waiting out a long backoff', async () => {
    const s = await h.startServer();
    const agent = await s.enrollAgent();
    await setServers(agent.state, [`127.0.0.1:${await closedPort()}`]);
    const running = await run(agent, { backoff: { baseMs: 30_000, capMs: 30_000 }, random: () => 0.99 });
    await waitFor(() => running.status.status.state === 'backoff', 'backoff');
    const started = Date.now();
    expect(await running.stop()).toEqual({ kind: 'stopped' });
    expect(Date.now() - started).toBeLessThan(1000);
  });

  it('moves on to the next server in its list when the first refuses', async () => {
    const s = await h.startServer();
    const agent = await s.enrollAgent();
    const dead = `127.0.0.1:${await closedPort()}`;
    await setServers(agent.state, [dead, s.agentAddress]);
    const running = await run(agent);
    await waitFor(() => running.status.status.lastAckedSeq >= 1, 'a first ack through the second server', 10_000);
    expect(running.status.status).toMatchObject({ state: 'connected', server: s.agentAddress, lastError: { class: 'REFUSED' } });
  });

  it('draws each delay from a window that doubles per failed attempt up to the cap', async () => {
    const s = await h.startServer();
    const agent = await s.enrollAgent();
    await setServers(agent.state, [`127.0.0.1:${await closedPort()}`]);
    const { log, lines } = captureLogger();
    const running = await run(agent, { backoff: { baseMs: 40, capMs: 160 }, random: () => 0.999, log });
    const ended = (): LogLine[] => lines.filter((l) => l.msg === 'connection ended');
    await waitFor(() => ended().length >= 5, 'five failed attempts', 10_000);
    // The delay each attempt drew is in its log line; the status shows when the next attempt is due.
    const delays = ended().slice(0, 5).map((l) => l.retryInMs);
    expect(running.status.status.failedAttempts).toBeGreaterThanOrEqual(5);
    const expected = [39, 79, 159, 159, 159]; // floor(0.999 * min(160, 40 * 2^n))
    expect(delays).toEqual(expected);
  });
});
