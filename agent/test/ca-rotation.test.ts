/**
 * CA rotation end to end: an agent connected during the overlap learns
 * the new CA over its channel, renews from it and keeps working after the
 * cutover; an agent offline during the whole overlap gets CA_PIN_MISMATCH
 * with its remedy, and `rollcall-agent repin` with the new pin brings it
 * back without re-enrollment.
 */
import fs from 'node:fs/promises';
import tls from 'node:tls';
import { afterEach, describe, expect, it } from 'vitest';
import { isIssuedBy } from '../../common/pki.js';
import { Harness, waitFor, type EnrolledAgent, type TestServer } from '../../test/support/harness.js';
import { agentMain } from '../cli.js';
import { splitPems } from '../state.js';
import type { RunningAgent } from '../supervisor.js';

const h = new Harness();
afterEach(() => h.cleanup());

async function run(agent: Pick<EnrolledAgent, 'state' | 'fingerprint'>): Promise<RunningAgent> {
  return (await h.runAgent(agent)).running;
}

interface CaStatus {
  caPin: string;
  nextCaPin: string | null;
  cutoverAt: string | null;
  previousCaTrusted: boolean;
}

async function rotate(s: TestServer, overlapSec: number): Promise<{ status: CaStatus; newCaPem: string }> {
  const res = await s.api<CaStatus>('POST', '/api/v1/ca/rotate', { overlapSec });
  expect(res.status).toBe(200);
  return { status: res.body, newCaPem: (s.server.pki.next?.ca ?? s.server.pki.ca).certPem };
}

/** The CA certificate the agent port presents now. */
function presentedIssuer(s: TestServer, trust: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = tls.connect({ host: '127.0.0.1', port: s.server.agentPort, ca: trust }, () => {
      socket.end();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

describe('CA rotation', () => {
  it('lets a connected agent learn the new CA during the overlap, renew from it, and keep connecting after the cutover', async () => {
    const s = await h.startServer();
    const oldCaPem = s.server.pki.ca.certPem;
    const agent = await s.enrollAgent();
    const running = await run(agent);
    await waitFor(() => running.status.status.lastAckedSeq >= 1, 'a first ack', 10_000);

    const { status, newCaPem } = await rotate(s, 6);
    expect(status).toMatchObject({ caPin: s.server.pki.caPin, nextCaPin: expect.stringMatching(/^sha256:/), previousCaTrusted: false });
    expect(await presentedIssuer(s, oldCaPem)).toBe(true); // the overlap: the old certificate is still presented

    await waitFor(async () => {
      const cert = await fs.readFile(agent.state.file('cert'), 'utf8');
      return isIssuedBy(cert, newCaPem) && running.status.status.state === 'connected';
    }, 'the agent to renew its certificate from the new CA', 15_000);
    const trusted = splitPems(await fs.readFile(agent.state.file('ca'), 'utf8'));
    expect(trusted.map((p) => p.trim())).toEqual([newCaPem.trim(), oldCaPem.trim()]);

    await waitFor(() => s.server.pki.next === null, 'the cutover', 15_000);
    expect(await presentedIssuer(s, newCaPem)).toBe(true);
    expect(await presentedIssuer(s, oldCaPem)).toBe(false);
    expect((await s.api<CaStatus>('GET', '/api/v1/ca')).body).toEqual({ caPin: status.nextCaPin, nextCaPin: null, cutoverAt: null, previousCaTrusted: true });

    // A fresh connection after the cutover works with what the agent learned.
    const connects = () => s.logs.filter((l) => l.msg === 'agent connected' && l.deviceId === agent.deviceId).length;
    const before = connects();
    s.server.registry.get(agent.deviceId)!.close(1012, 'test: reconnect');
    await waitFor(() => connects() > before && running.status.status.state === 'connected', 'a reconnection with the new server certificate', 10_000);
    const acked = running.status.status.lastAckedSeq;
    await waitFor(() => running.status.status.lastAckedSeq > acked, 'a check-in after the cutover', 10_000);
  });

  it('tells an agent offline during the whole overlap CA_PIN_MISMATCH with the remedy, and repin brings it back', async () => {
    const s = await h.startServer();
    const oldPin = s.server.pki.caPin;
    const agent = await s.enrollAgent();
    const { status, newCaPem } = await rotate(s, 1);
    await waitFor(() => s.server.pki.next === null, 'the cutover', 10_000);

    const first = await run(agent);
    const seen = await waitFor(() => (first.status.status.lastError?.code === 'CA_PIN_MISMATCH' ? first.status.status : undefined), 'CA_PIN_MISMATCH in status', 10_000);
    expect(seen.lastError).toMatchObject({ class: 'TLS', message: expect.stringMatching(/rotated its CA while this agent was offline/), remedy: expect.stringMatching(/rollcall-agent repin --ca-pin/) });
    expect(seen.state).toBe('backoff'); // not terminal: it may be a proxy in between, and repin fixes it
    await first.stop();

    const out: string[] = [];
    const err: string[] = [];
    const io = { out: (t: string) => out.push(t), err: (t: string) => err.push(t) };
    expect(await agentMain(['repin', '--ca-pin', oldPin, '--state-dir', agent.state.dir], {}, io)).toBe(4);
    expect(err.join()).toMatch(/CA_PIN_MISMATCH/);
    expect(await agentMain(['repin', '--ca-pin', status.nextCaPin!, '--state-dir', agent.state.dir], {}, io)).toBe(0);
    expect(out.join()).toMatch(/now trusting the CA sha256:/);
    expect((await agent.state.loadCredentials()).identity.caPin).toBe(status.nextCaPin);

    const second = await run(agent);
    await waitFor(() => second.status.status.lastAckedSeq >= 1, 'check-ins after repin', 10_000);
    await waitFor(async () => isIssuedBy(await fs.readFile(agent.state.file('cert'), 'utf8'), newCaPem), 'a certificate from the new CA', 15_000);
  });

  it('refuses a second rotation while one is running', async () => {
    const s = await h.startServer();
    await rotate(s, 3600);
    const again = await s.api<{ error: { code: string } }>('POST', '/api/v1/ca/rotate', { overlapSec: 60 });
    expect(again).toMatchObject({ status: 409, body: { error: { code: 'CA_ROTATION_RUNNING' } } });
    const bad = await s.api('POST', '/api/v1/ca/rotate', { overlapSec: 0 });
    expect(bad.status).toBe(400);
  });
});

describe('probes and diagnose during a CA rotation', () => {
  it('judge the presented certificate by whichever trusted CA issued it', async () => {
    const s = await h.startServer();
    const agent = await s.enrollAgent();
    const running = await run(agent);
    await waitFor(() => running.status.status.lastAckedSeq >= 1, 'a first ack', 10_000);
    await rotate(s, 3600);
    await waitFor(async () => splitPems(await fs.readFile(agent.state.file('ca'), 'utf8')).length === 2, 'the agent to trust both CAs', 10_000);
    await running.stop();
    const out: string[] = [];
    const code = await agentMain(['diagnose', '--state-dir', agent.state.dir, '--json'], {}, { out: (t) => out.push(t), err: (t) => out.push(t) });
    const diagnosis = JSON.parse(out.join('')) as { ok: boolean; servers: { ports: { ok: boolean; failure?: { class: string } }[] }[] };
    expect(diagnosis.servers[0]!.ports[0]).toMatchObject({ ok: true });
    expect(code).toBe(0);
  });
});
