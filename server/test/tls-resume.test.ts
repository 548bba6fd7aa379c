import fs from 'node:fs/promises';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { Harness, waitFor, type EnrolledAgent, type TestServer } from '../../test/support/harness.js';
import { Loadgen } from '../../scripts/loadgen.js';
import { loadOrCreateTicketKey, rotateTicketKeyIfOld, ticketKeyFile } from '../tls-tickets.js';

const h = new Harness();
afterEach(() => h.cleanup());

function loadgenFor(s: TestServer, agent: EnrolledAgent, port = s.server.agentPort): Loadgen {
  const gen = new Loadgen({
    host: '127.0.0.1',
    port,
    caPem: s.server.pki.ca.certPem,
    keyPem: agent.keyPem,
    agents: [{ deviceId: agent.deviceId, certPem: agent.certPem }],
    handshakeTimeoutMs: 5000,
    backoff: { baseMs: 20, capMs: 200 },
  });
  h.defer(() => gen.stop());
  return gen;
}

/** Connects, waits for the TLS session ticket, and closes the channel. */
async function connectAndKeepTicket(gen: Loadgen): Promise<void> {
  await gen.connectAll({ concurrency: 1, resume: false, deadlineMs: 10_000 });
  await waitFor(() => gen.sessionsHeld === 1 || undefined, 'a TLS session ticket');
  await gen.disconnectAll();
}

describe('TLS session resumption across restarts', () => {
  it('keeps the ticket key in the data directory (0600) and resumes a session issued before the restart', async () => {
    const s = await h.startServer();
    const agent = await s.enrollAgent();
    const file = ticketKeyFile(s.dataDir);
    const keyBefore = await fs.readFile(file, 'utf8');
    expect((await fs.stat(file)).mode & 0o777).toBe(0o600);
    const port = s.server.agentPort;
    const gen = loadgenFor(s, agent);
    await connectAndKeepTicket(gen);
    expect(gen.stats.fullConnects).toBe(1);
    await s.close();

    const again = await h.startServer({ agentPort: port }, { dataDir: s.dataDir });
    expect(await fs.readFile(file, 'utf8')).toBe(keyBefore);
    await gen.connectAll({ concurrency: 1, resume: true, deadlineMs: 10_000 });
    expect(gen.stats.resumedConnects).toBe(1);
    await waitFor(() => again.server.registry.get(agent.deviceId), 'the resumed channel to be registered');
  });

  it('falls back to a full handshake when the key file was lost or is corrupt, and says so in the log', async () => {
    const s = await h.startServer();
    const agent = await s.enrollAgent();
    const port = s.server.agentPort;
    const gen = loadgenFor(s, agent);
    await connectAndKeepTicket(gen);
    await s.close();
    await fs.writeFile(ticketKeyFile(s.dataDir), '{"createdAt": 1, "keys": "not hex"}');

    const again = await h.startServer({ agentPort: port }, { dataDir: s.dataDir });
    expect(again.logs.some((l) => l.msg?.startsWith('TLS ticket key unreadable') && l.level === 40)).toBe(true);
    await gen.connectAll({ concurrency: 1, resume: true, deadlineMs: 10_000 });
    expect(gen.stats.resumedConnects).toBe(0);
    expect(gen.stats.fullConnects).toBe(2);
    const stored = JSON.parse(await fs.readFile(ticketKeyFile(s.dataDir), 'utf8')) as { keys: string };
    expect(stored.keys).toMatch(/^[0-9a-f]{96}$/);
  });

  it('refuses a resumed session whose certificate belongs to a device revoked since', async () => {
    const s = await h.startServer();
    const agent = await s.enrollAgent();
    const gen = loadgenFor(s, agent);
    await connectAndKeepTicket(gen);
    await waitFor(() => s.server.registry.size === 0 || undefined, 'the channel to close');
    expect((await s.api('POST', `/api/v1/devices/${agent.deviceId}/revoke`)).status).toBe(200);
    await expect(gen.connectAll({ concurrency: 1, resume: true, deadlineMs: 500 })).rejects.toThrow(/not connected/);
    expect(gen.stats.refused).toBeGreaterThan(0);
    expect(s.server.registry.size).toBe(0);
  });
});

describe('ticket key file', () => {
  it('rotates only keys older than the maximum age', async () => {
    const dir = await h.tempDir();
    const file = ticketKeyFile(dir);
    const first = await loadOrCreateTicketKey(file, 1000);
    expect(first.outcome).toBe('created');
    expect(await rotateTicketKeyIfOld(file, first.key, 1000 + 10, 100)).toBeUndefined();
    const next = await rotateTicketKeyIfOld(file, first.key, 1000 + 100, 100);
    expect(next?.keys.equals(first.key.keys)).toBe(false);
    const loaded = await loadOrCreateTicketKey(file, 5000);
    expect(loaded.outcome).toBe('loaded');
    expect(loaded.key.keys.equals(next!.keys)).toBe(true);
  });
});

describe('admission before TLS', () => {
  it('sheds connections beyond the pending-handshake limit before TLS, keeps serving admitted agents, and admits again once there is room', async () => {
    const s = await h.startServer({ maxPendingHandshakes: 2, handshakeTimeoutMs: 30_000 });
    const inside = await s.enrollAgent();
    const late = await s.enrollAgent();
    const insideGen = loadgenFor(s, inside);
    await insideGen.connectAll({ concurrency: 1, resume: false, deadlineMs: 10_000 });

    // Two TCP connections that never start TLS hold both handshake slots.
    const idle = await Promise.all(
      [0, 1].map(
        () =>
          new Promise<net.Socket>((resolve, reject) => {
            const sock = net.connect(s.server.agentPort, '127.0.0.1', () => resolve(sock));
            sock.once('error', reject);
          }),
      ),
    );
    const idleClosed = idle.map((sock) => new Promise<void>((resolve) => sock.once('close', () => resolve())));
    h.defer(() => idle.forEach((sock) => sock.destroy()));
    const lateGen = loadgenFor(s, late);
    await waitFor(async () => {
      await lateGen.connectAll({ concurrency: 1, resume: false, deadlineMs: 1 }).catch(() => undefined);
      return lateGen.stats.shedBeforeTls > 0 || undefined;
    }, 'a connection shed before TLS');
    expect(lateGen.stats.connected).toBe(0);
    await waitFor(() => s.logs.find((l) => l.msg === 'agent connections shed before TLS (server busy)'), 'the shed log line');

    // The admitted agent is still served.
    const steady = await insideGen.steady({ intervalMs: 50, durationMs: 200 });
    expect(steady.rttMs.length).toBeGreaterThan(0);
    expect(steady.unanswered).toBe(0);

    idle.forEach((sock) => sock.destroy());
    await Promise.all(idleClosed);
    await lateGen.connectAll({ concurrency: 1, resume: false, deadlineMs: 10_000 });
    expect(lateGen.stats.connected).toBe(1);
    await waitFor(() => s.server.registry.get(late.deviceId), 'the late agent to be registered');
  });
});
