import { afterEach, describe, expect, it } from 'vitest';
import { CloseCode } from '../../common/close-codes.js';
import { Harness, waitFor, type EnrolledAgent, type RawClient, type TestServer } from '../../test/support/harness.js';
import { openFeed } from '../../test/support/console-client.js';
import net from 'node:net';
import path from 'node:path';
import { ENROLL_PATH } from '../../common/enroll-api.js';
import { requestJson } from '../../common/https-json.js';
import { createCsr, generateKeyPair } from '../../common/pki.js';
import { PORTCHECK_REPORT_PATH } from '../../common/portcheck/report-api.js';
import { Loadgen } from '../../scripts/loadgen.js';
import { openStorage } from '../storage/index.js';

// Agent workers run the compiled worker entry: `npm test` builds dist/ first.
const h = new Harness();
afterEach(() => h.cleanup());

async function clusterServer(extra: Record<string, unknown> = {}): Promise<TestServer> {
  return h.startServer({ agentWorkers: 2, ...extra });
}

/** A welcomed raw channel with a check-in helper that waits for the ack. */
async function openChannel(s: TestServer, agent: EnrolledAgent): Promise<{ client: RawClient; checkin(seq: number): Promise<void> }> {
  const client = await s.rawClient(agent);
  await client.open();
  client.hello(agent.deviceId);
  await client.waitMessage('welcome');
  return {
    client,
    checkin: async (seq) => {
      const from = client.messages.length;
      client.send({ type: 'checkin', seq, sentAt: Date.now(), uptimeSec: seq });
      expect(await client.waitMessage('ack', 5000, from)).toEqual({ type: 'ack', seq });
    },
  };
}

describe('agent workers', () => {
  it('enrolls agents through the workers, acks their check-ins once stored, and shows them in the registry and the live feed', async () => {
    const s = await clusterServer();
    expect(s.server.agentWorkers?.size).toBe(2);
    expect(s.server.listeners().find((l) => l.role === 'agent')).toMatchObject({ listening: true, port: s.server.agentPort });
    const feed = await openFeed(s, { bearer: s.adminToken });
    h.defer(() => feed.close());
    const agents = await Promise.all([1, 2, 3, 4].map((n) => s.enrollAgent({ hostname: `host-${n}` })));
    const channels = await Promise.all(agents.map((a) => openChannel(s, a)));
    expect(s.server.registry.size).toBe(4);
    for (const [i, ch] of channels.entries()) {
      await ch.checkin(1);
      await ch.checkin(2);
      expect((await s.storedDevice(agents[i]!.deviceId)).lastSeq).toBe(2);
    }
    const samples = await s.server.agentWorkers!.stats({ gc: false });
    expect(samples).toHaveLength(2);
    expect(samples.every((w) => w.pid !== process.pid && w.cpuUs > 0 && w.rssBytes > 0 && w.heapUsedBytes > 0)).toBe(true);
    expect(samples.reduce((n, w) => n + w.openChannels, 0)).toBe(4);
    // The certificates were read in the workers; the hellos reached the primary in batches.
    expect(samples.reduce((n, w) => n + w.lookups.local, 0)).toBe(4);
    expect(samples.reduce((n, w) => n + w.lookups.viaPrimary, 0)).toBe(0);
    expect(samples.reduce((n, w) => n + w.admits.hellos, 0)).toBe(4);
    expect(samples.reduce((n, w) => n + w.admits.batches, 0)).toBeLessThanOrEqual(4);
    await waitFor(() => feed.batches.flatMap((b) => b.items).filter((i) => i.kind === 'checkin').length >= 4 || undefined, 'check-ins in the live feed');
    const kinds = new Set(feed.batches.flatMap((b) => b.items).map((i) => i.kind));
    expect(kinds.has('connect')).toBe(true);
  });

  it('closes a revoked device\'s channel in its worker with 4003 and refuses its next upgrade', async () => {
    const s = await clusterServer();
    const agent = await s.enrollAgent();
    const ch = await openChannel(s, agent);
    const res = await s.api('POST', `/api/v1/devices/${agent.deviceId}/revoke`);
    expect(res.status).toBe(200);
    expect((await ch.client.waitClose()).code).toBe(CloseCode.REVOKED);
    await waitFor(() => s.server.registry.get(agent.deviceId) === undefined, 'the channel to leave the registry');
    const again = await s.rawClient(agent);
    const refusal = await again.waitRefusal();
    expect(refusal).toMatchObject({ status: 403, closeCodeHeader: String(CloseCode.REVOKED) });
    // Refused by the worker's own read of the revocation the primary committed.
    const lookups = (await s.server.agentWorkers!.stats({ gc: false })).map((w) => w.lookups);
    expect(lookups.reduce((n, l) => n + l.local, 0)).toBe(2);
    expect(lookups.reduce((n, l) => n + l.viaPrimary, 0)).toBe(0);
  });

  it('replaces the older channel of a device with 4004, whichever worker holds it', async () => {
    const s = await clusterServer();
    const agent = await s.enrollAgent();
    // Several rounds: the kernel picks the worker, so some land on the same one and some on the other.
    let older = await openChannel(s, agent);
    for (let round = 0; round < 4; round += 1) {
      const newer = await openChannel(s, agent);
      expect((await older.client.waitClose()).code).toBe(CloseCode.REPLACED);
      await newer.checkin(round + 1);
      older = newer;
    }
    await waitFor(() => s.server.registry.size === 1 || undefined, 'one channel left');
    expect(s.server.registry.get(agent.deviceId)).toBeDefined();
  });

  it('stores events and renews certificates in the primary for a worker\'s channel, and the renewed certificate connects', async () => {
    const s = await clusterServer();
    const agent = await s.enrollAgent();
    const ch = await openChannel(s, agent);
    ch.client.send({ type: 'events', events: [{ seq: 1, kind: 'synthetic', at: 1001, data: { n: 1 } }, { seq: 2, kind: 'synthetic', at: 1002, data: { n: 2 } }] });
    expect((await ch.client.waitMessage('events_ack')).upTo).toBe(2);
    ch.client.send({ type: 'renew', csr: 'not a CSR' });
    const refused = await ch.client.waitMessage('error');
    expect(refused.code).toMatch(/^CSR_/);
    const keys = generateKeyPair(2048);
    ch.client.send({ type: 'renew', csr: createCsr(keys.privateKeyPem, agent.deviceId) });
    const renewed = await ch.client.waitMessage('renewed');
    await ch.checkin(1); // the refused renewal left the channel open
    const fresh = await s.rawClient({ keyPem: keys.privateKeyPem, certPem: renewed.certificate });
    await fresh.open();
    fresh.hello(agent.deviceId);
    const welcome = await fresh.waitMessage('welcome');
    expect(welcome).toMatchObject({ lastEventSeq: 2, lastSeq: 1 });
    expect((await ch.client.waitClose()).code).toBe(CloseCode.REPLACED);
    // Only the renewed certificate's first use (a promotion, which writes) went to the primary.
    const lookups = (await s.server.agentWorkers!.stats({ gc: false })).map((w) => w.lookups);
    expect(lookups.reduce((n, l) => n + l.viaPrimary, 0)).toBe(1);
    expect(lookups.reduce((n, l) => n + l.local, 0)).toBe(1);
  });

  it('resumes a TLS session on whichever worker accepts the reconnect: every worker holds the one ticket key', async () => {
    const s = await clusterServer();
    const agent = await s.enrollAgent();
    const gen = new Loadgen({ host: '127.0.0.1', port: s.server.agentPort, caPem: s.server.pki.ca.certPem, keyPem: agent.keyPem, agents: [{ deviceId: agent.deviceId, certPem: agent.certPem }], handshakeTimeoutMs: 5000, backoff: { baseMs: 20, capMs: 200 } });
    h.defer(() => gen.stop());
    await gen.connectAll({ concurrency: 1, resume: false, deadlineMs: 10_000 });
    await waitFor(() => gen.sessionsHeld === 1 || undefined, 'a TLS session ticket');
    // Reconnects land on either worker (the kernel chooses); each one must resume.
    for (let round = 1; round <= 6; round += 1) {
      await gen.disconnectAll();
      await gen.connectAll({ concurrency: 1, resume: true, deadlineMs: 10_000 });
      expect(gen.stats.resumedConnects).toBe(round);
    }
    expect(gen.stats.fullConnects).toBe(1);
  });

  it('answers enrollment and portcheck reports from the primary through a worker, refusals with the same status and code', async () => {
    const s = await clusterServer();
    const post = (p: string, body: unknown, headers: Record<string, string> = {}) =>
      requestJson({ host: '127.0.0.1', port: s.server.agentPort, path: p, method: 'POST', body, ca: s.server.pki.ca.certPem, headers });
    const keys = generateKeyPair(2048);
    const enrollBody = (token: string) => ({ token, csr: createCsr(keys.privateKeyPem, 'pc-1'), hostname: 'pc-1', fingerprint: 'b'.repeat(64), agentVersion: '0.1.0' });
    const token = await s.enrollmentToken('Customers/Once', { maxUses: 1 });
    expect(await post(ENROLL_PATH, enrollBody(token))).toMatchObject({ status: 200 });
    expect(await post(ENROLL_PATH, enrollBody(token))).toMatchObject({ status: 401, body: { error: { code: 'ENROLL_TOKEN_USED_UP' } } });
    expect(await post(ENROLL_PATH, enrollBody(`rce_${'z'.repeat(43)}`))).toMatchObject({ status: 401, body: { error: { code: 'ENROLL_TOKEN_UNKNOWN' } } });
    await waitFor(() => s.logs.find((l) => l.msg === 'enrollment refused' && l.reason === 'ENROLL_TOKEN_USED_UP' && typeof l.worker === 'number'), 'the refusal logged by a worker');
    const report = {
      host: '127.0.0.1',
      startedAt: new Date().toISOString(),
      durationMs: 5,
      addresses: ['127.0.0.1'],
      ok: true,
      ports: [{ host: '127.0.0.1', port: s.server.agentPort, role: 'agent', required: true, ok: true, steps: [{ step: 'tcp', ok: true, ms: 1, detail: 'connected' }] }],
    };
    expect(await post(PORTCHECK_REPORT_PATH, report)).toMatchObject({ status: 401, body: { error: { code: 'PORTCHECK_TOKEN_MISSING' } } });
    expect(await post(PORTCHECK_REPORT_PATH, report, { authorization: `Bearer ${token}` })).toMatchObject({ status: 201, body: { stored: 1 } });
    expect(await s.server.storage.devices.list()).toHaveLength(1);
  });

  it('counts failed enrollments for the whole box: once an address has failed its limit on any workers, every worker answers 429', async () => {
    const s = await clusterServer({ enrollFailuresPerWindow: 3, enrollFailureWindowMs: 60_000 });
    const bystander = await openChannel(s, await s.enrollAgent({ hostname: 'bystander' }));
    // Each request on its own connection: the kernel spreads them over both workers.
    const post = (body: unknown) => requestJson({ host: '127.0.0.1', port: s.server.agentPort, path: ENROLL_PATH, method: 'POST', body, ca: s.server.pki.ca.certPem });
    const keys = generateKeyPair(2048);
    const enrollBody = (token: string) => ({ token, csr: createCsr(keys.privateKeyPem, 'pc-1'), hostname: 'pc-1', fingerprint: 'b'.repeat(64), agentVersion: '0.1.0' });
    for (let i = 0; i < 3; i += 1) expect(await post(enrollBody(`rce_${'y'.repeat(43)}`))).toMatchObject({ status: 401, body: { error: { code: 'ENROLL_TOKEN_UNKNOWN' } } });
    await waitFor(() => s.logs.find((l) => l.msg === 'too many failed enrollments from one address; every agent worker refuses it for now'), 'the primary to block the address');
    // Even a good token is refused now, on whichever worker takes the connection.
    const token = await s.enrollmentToken('Customers/Limited');
    const answers = [];
    for (let i = 0; i < 6; i += 1) answers.push(await post(enrollBody(token)));
    for (const a of answers) expect(a).toMatchObject({ status: 429, body: { error: { code: 'RATE_LIMITED' } } });
    await waitFor(
      () => s.logs.filter((l) => l.msg === 'enrollment refused' && l.reason === 'RATE_LIMITED' && typeof l.worker === 'number').length === 6 || undefined,
      'each refusal logged by its worker',
    );
    expect(await s.server.storage.devices.list()).toHaveLength(1); // the bystander only
    // Agents enrolled already keep being served.
    await bystander.checkin(1);
    // Workers forked again after a death start with the blocks in force.
    const old = await s.server.agentWorkers!.stats({ gc: false });
    for (const w of old) process.kill(w.pid, 'SIGKILL');
    await waitFor(async () => {
      const now = await s.server.agentWorkers!.stats({ gc: false }).catch(() => []);
      return (now.length === 2 && now.every((w) => !old.some((o) => o.pid === w.pid))) || undefined;
    }, 'both workers forked again', 20_000);
    const refusedBefore = s.logs.filter((l) => l.msg === 'enrollment refused' && l.reason === 'RATE_LIMITED').length;
    for (let i = 0; i < 6; i += 1) expect(await post(enrollBody(token))).toMatchObject({ status: 429, body: { error: { code: 'RATE_LIMITED' } } });
    await waitFor(
      () => s.logs.filter((l) => l.msg === 'enrollment refused' && l.reason === 'RATE_LIMITED').length === refusedBefore + 6 || undefined,
      'each refusal logged by the new workers',
    );
    expect(await s.server.storage.devices.list()).toHaveLength(1);
  });

  it('answers bad inputs as a single process does, logs them, and keeps serving others', async () => {
    const s = await clusterServer();
    const bystander = await openChannel(s, await s.enrollAgent({ hostname: 'bystander' }));
    const stray = await s.rawClient(s.strayCertificate('dev_nobody'));
    expect(await stray.waitRefusal()).toMatchObject({ status: 403, closeCodeHeader: String(CloseCode.UNKNOWN_DEVICE), body: { error: { code: 'DEVICE_UNKNOWN' } } });
    await waitFor(() => s.logs.find((l) => l.msg === 'agent rejected' && l.reason === 'DEVICE_UNKNOWN' && typeof l.worker === 'number'), 'the worker\'s rejection log line');
    const agent = await s.enrollAgent({ hostname: 'sloppy' });
    const ch = await openChannel(s, agent);
    ch.client.send('{"type":"checkin","seq":');
    expect((await ch.client.waitClose()).code).toBe(CloseCode.MALFORMED_FRAME);
    expect(ch.client.messages.at(-1)).toMatchObject({ type: 'error', code: 'MALFORMED_FRAME' });
    await waitFor(() => s.logs.find((l) => l.msg === 'closing agent channel' && l.errorCode === 'MALFORMED_FRAME'), 'the violation log line');
    await bystander.checkin(1);
    const enrolled = await s.api<{ error: { code: string } }>('POST', '/api/v1/devices/dev_nobody/revoke');
    expect(enrolled.status).toBe(404);
  });

  it('shows the agents of a killed worker disconnected, forks it again, and the agents come back', async () => {
    const s = await clusterServer();
    const agents = await Promise.all([1, 2, 3, 4, 5, 6].map((n) => s.enrollAgent({ hostname: `k-${n}` })));
    for (const a of agents) await h.runAgent(a);
    await waitFor(() => s.server.registry.size === 6 || undefined, 'six agents connected');
    const before = await s.server.agentWorkers!.stats({ gc: false });
    const victim = before.find((w) => w.openChannels > 0)!;
    process.kill(victim.pid, 'SIGKILL');
    const died = await waitFor(() => s.logs.find((l) => l.msg === 'agent worker died; its agents are disconnected' && l.signal === 'SIGKILL'), 'the death to be logged');
    // Its channels left the registry at once (not cleanly), whatever reconnected since.
    expect(died.sessionsLost).toBe(victim.openChannels);
    await waitFor(() => (s.server.agentWorkers!.size === 2 && s.server.registry.size === 6) || undefined, 'the worker back and every agent reconnected', 20_000);
    const after = await s.server.agentWorkers!.stats({ gc: false });
    expect(after.map((w) => w.pid)).not.toContain(victim.pid);
    expect(after).toHaveLength(2);
    expect(after.map((w) => w.handshakeShare)).toEqual([256, 256]); // the default budget (256 per agent-port process), split again
  });

  it('holds no more connections in their TLS handshake than the box\'s budget over all workers, shedding the excess before TLS', async () => {
    // 2 per agent-port process: a budget of 4 for the box, split over the two workers.
    const s = await clusterServer({ maxPendingHandshakes: 2, handshakeTimeoutMs: 60_000 });
    expect((await s.server.agentWorkers!.stats({ gc: false })).map((w) => w.handshakeShare)).toEqual([2, 2]);
    // TCP connections that never send a ClientHello stay in their handshake (until the long timeout): the kernel spreads them over both workers.
    let closed = 0;
    const sockets = Array.from({ length: 12 }, () => {
      const socket = net.connect(s.server.agentPort, '127.0.0.1');
      socket.on('error', () => undefined); // a shed connection may be reset
      socket.on('close', () => (closed += 1));
      h.defer(() => void socket.destroy());
      return socket;
    });
    const seen = await waitFor(async () => {
      const samples = await s.server.agentWorkers!.stats({ gc: false });
      return samples.reduce((n, w) => n + w.handshakes.admitted + w.handshakes.shed, 0) === 12 ? samples : undefined;
    }, 'every connection to reach a worker\'s gate');
    // Each worker held at most its share (with a budget per worker, one that got most connections would hold 4), the box at most 4.
    for (const w of seen) expect(w.handshakes.pending).toBeLessThanOrEqual(2);
    expect(seen.reduce((n, w) => n + w.handshakes.shed, 0)).toBeGreaterThanOrEqual(8);
    await waitFor(() => closed >= 8 || undefined, 'the shed connections closed at the client');
    await waitFor(() => s.logs.find((l) => l.msg === 'agent connections shed before TLS (server busy)' && typeof l.worker === 'number'), 'the shed log line');
    // Once the held handshakes end, agents get in again.
    for (const socket of sockets) socket.destroy();
    const agent = await s.enrollAgent();
    await (await openChannel(s, agent)).checkin(1);
  });

  it('tells every worker\'s agents which CAs to trust when a CA rotation starts, and new channels too', async () => {
    const s = await clusterServer();
    const agents = await Promise.all([1, 2, 3, 4].map((n) => s.enrollAgent({ hostname: `r-${n}` })));
    const channels = await Promise.all(agents.map((a) => openChannel(s, a)));
    const status = await s.server.ca.rotate(3_600_000);
    for (const ch of channels) {
      const trust = await ch.client.waitMessage('trust');
      expect(trust.caCertificates).toHaveLength(2);
    }
    const late = await openChannel(s, await s.enrollAgent({ hostname: 'late' }));
    expect((await late.client.waitMessage('trust')).caCertificates).toHaveLength(2);
    expect(status.nextCaPin).not.toBeNull();
  });

  it('ends close() with every acked check-in stored, after telling each agent when to come back, even when the workers got SIGTERM', async () => {
    const s = await clusterServer();
    const agents = await Promise.all([1, 2, 3].map((n) => s.enrollAgent({ hostname: `c-${n}` })));
    const channels = await Promise.all(agents.map((a) => openChannel(s, a)));
    for (const ch of channels) for (let seq = 1; seq <= 5; seq += 1) await ch.checkin(seq);
    // Ctrl-C and systemd signal every process of the group: workers leave the stop to the primary.
    for (const w of await s.server.agentWorkers!.stats({ gc: false })) process.kill(w.pid, 'SIGTERM');
    expect((await s.server.agentWorkers!.stats({ gc: false })).reduce((n, w) => n + w.openChannels, 0)).toBe(3);
    const notices = channels.map((ch) => ch.client.waitMessage('error', 10_000));
    await s.close();
    for (const n of await Promise.all(notices)) expect(n).toMatchObject({ code: 'SERVER_RESTARTING' });
    for (const ch of channels) expect((await ch.client.waitClose()).code).toBe(1001);
    const storage = await openStorage(path.join(s.dataDir, 'rollcall.db'), { synchronous: 'NORMAL' });
    try {
      for (const a of agents) expect((await storage.devices.get(a.deviceId))?.lastSeq).toBe(5);
    } finally {
      await storage.db.close();
    }
  });
});
