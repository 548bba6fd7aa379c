/**
 * Certificate-level refusals on the agent port: every way a client can fail
 * to prove it is a known, current device, from no TLS at all to a hello that
 * names someone else. Each refusal must be clear on the wire, leave a log
 * line with its reason, and leave an already-connected agent untouched.
 */
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { CloseCode } from '../../common/close-codes.js';
import { certInfo, generateKeyPair, issueClientCert } from '../../common/pki.js';
import { Harness, readTestCa, waitFor, type LogLine, type TestServer } from '../../test/support/harness.js';

const h = new Harness();
afterEach(() => h.cleanup());

/** An agent that was connected and welcomed before the bad input arrived. */
interface HealthyAgent {
  readonly deviceId: string;
  /** Sends the next check-in and fails unless it is acked on the same, still open channel. */
  stillServed(): Promise<void>;
}

async function connectHealthyAgent(s: TestServer): Promise<HealthyAgent> {
  const agent = await s.enrollAgent({ group: 'Customers/Healthy', hostname: 'healthy-host' });
  const c = await s.rawClient(agent);
  await c.open();
  c.hello(agent.deviceId);
  await c.waitMessage('welcome');
  let seq = 0;
  const stillServed = async (): Promise<void> => {
    seq += 1;
    const from = c.messages.length;
    c.send({ type: 'checkin', seq, sentAt: Date.now(), uptimeSec: seq });
    expect(await c.waitMessage('ack', 5000, from)).toEqual({ type: 'ack', seq });
    expect(c.closeInfo).toBeUndefined();
    expect(s.server.registry.get(agent.deviceId)).toBeDefined();
    expect(await s.storedDevice(agent.deviceId)).toMatchObject({ lastSeq: seq, checkinCount: seq });
  };
  await stillServed();
  return { deviceId: agent.deviceId, stillServed };
}

/** The first captured log line with this message whose fields match. */
function findLog(s: TestServer, msg: string, fields: Record<string, unknown> = {}): LogLine | undefined {
  return s.logs.find((l) => l.msg === msg && Object.entries(fields).every(([k, v]) => l[k] === v));
}

function waitLog(s: TestServer, msg: string, fields: Record<string, unknown> = {}): Promise<LogLine> {
  return waitFor(() => findLog(s, msg, fields), `log line "${msg}" with ${JSON.stringify(fields)}`, 5000);
}

/** Resolves when the socket closes; rejects after the deadline. */
function waitSocketClose(socket: net.Socket, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    if (socket.closed) return resolve();
    const timer = setTimeout(() => reject(new Error(`socket still open after ${timeoutMs} ms`)), timeoutMs);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** A client certificate signed by `ca` for `deviceId`, with its key. */
function clientCert(ca: { certPem: string; keyPem: string }, deviceId: string, opts: { now?: Date; validityDays?: number } = {}) {
  const keys = generateKeyPair(2048);
  const issued = issueClientCert(ca, { publicKeyPem: keys.publicKeyPem, deviceId, ...opts });
  return { keyPem: keys.privateKeyPem, certPem: issued.certPem, serial: issued.serial, notAfter: issued.notAfter };
}

describe('check-in upgrade refusals', () => {
  it('refuses an upgrade without a client certificate with 401 CLIENT_CERT_MISSING', async () => {
    const s = await h.startServer();
    const healthy = await connectHealthyAgent(s);

    const c = await s.rawClient({});
    const refusal = await c.waitRefusal();
    expect(refusal.status).toBe(401);
    expect(refusal.body.error?.code).toBe('CLIENT_CERT_MISSING');
    expect(refusal.closeCodeHeader).toBeUndefined();
    expect(c.messages).toEqual([]);
    expect(findLog(s, 'agent rejected', { reason: 'CLIENT_CERT_MISSING', address: '127.0.0.1' })).toBeDefined();
    expect(s.server.registry.size).toBe(1);
    await healthy.stillServed();
  });

  it('refuses a certificate from another CA with 401 CLIENT_CERT_UNTRUSTED after a completed TLS handshake, even when it names a real device', async () => {
    const s = await h.startServer();
    const healthy = await connectHealthyAgent(s);
    // The server asks for but does not require a client certificate (enrollment has none yet), so the
    // handshake succeeds and the refusal is an HTTP answer naming the chain error, not a TLS alert.
    const forged = clientCert(await readTestCa('foreign-ca'), healthy.deviceId);

    const c = await s.rawClient(forged);
    const refusal = await c.waitRefusal();
    expect(refusal.status).toBe(401);
    expect(refusal.body.error?.code).toBe('CLIENT_CERT_UNTRUSTED');
    expect(refusal.body.error?.message).toContain('UNABLE_TO_VERIFY_LEAF_SIGNATURE');
    expect(refusal.closeCodeHeader).toBeUndefined();
    expect(c.messages).toEqual([]);
    const line = findLog(s, 'agent rejected', { reason: 'CLIENT_CERT_UNTRUSTED' });
    expect(line?.detail).toContain('UNABLE_TO_VERIFY_LEAF_SIGNATURE');
    expect(s.logs.some((l) => l.msg === 'TLS handshake failed')).toBe(false);
    expect(s.server.registry.size).toBe(1);
    await healthy.stillServed();
  });

  it('refuses an expired certificate of an enrolled device with 401 CLIENT_CERT_EXPIRED', async () => {
    const s = await h.startServer();
    const healthy = await connectHealthyAgent(s);
    const longAgo = new Date(Date.now() - 30 * 86_400_000);
    const expired = clientCert(await readTestCa('ca'), 'dev_expired', { now: longAgo, validityDays: 1 });
    expect(expired.notAfter.getTime()).toBeLessThan(Date.now());
    // Make the serial a known device, so only the validity period can be the reason for the refusal.
    const group = (await s.server.storage.groups.list())[0]!;
    await s.server.storage.devices.insert({
      id: 'dev_expired',
      certSerial: expired.serial,
      certNotAfter: expired.notAfter.getTime(),
      groupId: group.id,
      placementReason: null,
      hostname: 'old-host',
      fingerprint: null,
      agentVersion: null,
      enrolledAt: longAgo.getTime(),
      tokenId: null,
    });

    const c = await s.rawClient(expired);
    const refusal = await c.waitRefusal();
    expect(refusal.status).toBe(401);
    expect(refusal.body.error?.code).toBe('CLIENT_CERT_EXPIRED');
    expect(refusal.closeCodeHeader).toBeUndefined();
    expect(c.messages).toEqual([]);
    expect(findLog(s, 'agent rejected', { reason: 'CLIENT_CERT_EXPIRED' })).toBeDefined();
    expect(s.server.registry.get('dev_expired')).toBeUndefined();
    await healthy.stillServed();
  });

  it('closes a revoked device\'s live channel with 4003 at once and refuses its next upgrade with 403 and close code 4003', async () => {
    const s = await h.startServer();
    const healthy = await connectHealthyAgent(s);
    const agent = await s.enrollAgent({ hostname: 'to-revoke' });
    const live = await s.rawClient(agent);
    await live.open();
    live.hello(agent.deviceId);
    await live.waitMessage('welcome');
    live.send({ type: 'checkin', seq: 1, sentAt: Date.now(), uptimeSec: 1 });
    await live.waitMessage('ack');

    const res = await s.api<{ status: string; revokedAt: string | null }>('POST', `/api/v1/devices/${agent.deviceId}/revoke`);
    expect(res.status).toBe(200);
    expect(res.body.status).toBe('revoked');
    expect(res.body.revokedAt).not.toBeNull();
    // "At once": well inside the heartbeat interval, so only the revocation can have closed it.
    expect(await live.waitClose(2000)).toEqual({ code: CloseCode.REVOKED, reason: 'the device was revoked' });
    await waitLog(s, 'agent disconnected', { deviceId: agent.deviceId, closeCode: CloseCode.REVOKED });
    expect(findLog(s, 'device revoked', { deviceId: agent.deviceId })).toBeDefined();
    expect(s.server.registry.get(agent.deviceId)).toBeUndefined();

    const again = await s.rawClient(agent);
    const refusal = await again.waitRefusal();
    expect(refusal.status).toBe(403);
    expect(refusal.closeCodeHeader).toBe(String(CloseCode.REVOKED));
    expect(refusal.body.error?.code).toBe('DEVICE_REVOKED');
    expect(again.messages).toEqual([]);
    expect(findLog(s, 'agent rejected', { reason: 'DEVICE_REVOKED' })).toBeDefined();
    // The check-in made before the revocation is kept.
    expect(await s.storedDevice(agent.deviceId)).toMatchObject({ lastSeq: 1, checkinCount: 1 });
    await healthy.stillServed();
  });

  it('refuses a certificate from our CA whose serial belongs to no device with 403 DEVICE_UNKNOWN and close code 4002', async () => {
    const s = await h.startServer();
    const healthy = await connectHealthyAgent(s);

    const c = await s.rawClient(s.strayCertificate());
    const refusal = await c.waitRefusal();
    expect(refusal.status).toBe(403);
    expect(refusal.closeCodeHeader).toBe(String(CloseCode.UNKNOWN_DEVICE));
    expect(refusal.body.error?.code).toBe('DEVICE_UNKNOWN');
    expect(c.messages).toEqual([]);
    expect(findLog(s, 'agent rejected', { reason: 'DEVICE_UNKNOWN' })).toBeDefined();
    expect(s.server.registry.size).toBe(1);
    await healthy.stillServed();
  });

  it('refuses a certificate whose serial is known but whose common name is another device with 403 DEVICE_UNKNOWN', async () => {
    const s = await h.startServer();
    const healthy = await connectHealthyAgent(s);
    const stray = s.strayCertificate('dev_someone_else');
    const group = (await s.server.storage.groups.list())[0]!;
    await s.server.storage.devices.insert({
      id: 'dev_owner',
      certSerial: certInfo(stray.certPem).serial,
      certNotAfter: Date.now() + 86_400_000,
      groupId: group.id,
      placementReason: null,
      hostname: 'owner',
      fingerprint: null,
      agentVersion: null,
      enrolledAt: Date.now(),
      tokenId: null,
    });

    const c = await s.rawClient(stray);
    const refusal = await c.waitRefusal();
    expect(refusal.status).toBe(403);
    expect(refusal.closeCodeHeader).toBe(String(CloseCode.UNKNOWN_DEVICE));
    expect(refusal.body.error?.code).toBe('DEVICE_UNKNOWN');
    expect(findLog(s, 'agent rejected', { reason: 'DEVICE_UNKNOWN' })).toBeDefined();
    expect(s.server.registry.get('dev_owner')).toBeUndefined();
    await healthy.stillServed();
  });
});

describe('check-in channel identity after the upgrade', () => {
  it('closes with 4002 a channel whose hello names a device other than its certificate, without touching that device', async () => {
    const s = await h.startServer();
    const healthy = await connectHealthyAgent(s);
    const impostor = await s.enrollAgent({ hostname: 'impostor' });

    const c = await s.rawClient(impostor);
    await c.open();
    c.hello(healthy.deviceId);
    expect(await c.waitClose()).toMatchObject({ code: CloseCode.UNKNOWN_DEVICE });
    expect(c.messages).toEqual([{ type: 'error', code: 'UNKNOWN_DEVICE', message: 'hello names a device other than the certificate' }]);
    const line = await waitLog(s, 'closing agent channel', { deviceId: impostor.deviceId, closeCode: CloseCode.UNKNOWN_DEVICE });
    expect(line.reason).toBe('hello names a device other than the certificate');
    // Neither device was registered or replaced by the bad hello.
    expect(s.server.registry.get(impostor.deviceId)).toBeUndefined();
    expect((await s.server.storage.devices.get(healthy.deviceId))?.possibleCloneAt).toBeNull();
    await healthy.stillServed();
  });

  it('closes with 4006 HELLO_TIMEOUT a client that completes the upgrade and never says hello', async () => {
    const s = await h.startServer({ helloTimeoutMs: 200 });
    const healthy = await connectHealthyAgent(s);
    const silent = await s.enrollAgent({ hostname: 'silent' });

    const c = await s.rawClient(silent);
    await c.open();
    const openedAt = Date.now();
    expect(await c.waitClose(3000)).toEqual({ code: CloseCode.HELLO_TIMEOUT, reason: 'no hello before the deadline' });
    expect(Date.now() - openedAt).toBeGreaterThanOrEqual(150);
    expect(c.messages).toEqual([{ type: 'error', code: 'HELLO_TIMEOUT', message: 'no hello before the deadline' }]);
    await waitLog(s, 'closing agent channel', { deviceId: silent.deviceId, closeCode: CloseCode.HELLO_TIMEOUT, errorCode: 'HELLO_TIMEOUT' });
    expect(s.server.registry.get(silent.deviceId)).toBeUndefined();
    expect((await s.server.storage.devices.get(silent.deviceId))?.lastConnectedAt).toBeNull();
    await healthy.stillServed();
  });

  it('drops a client that opens TCP and never starts TLS once the handshake timeout passes, and logs why', async () => {
    const s = await h.startServer({ handshakeTimeoutMs: 300 });
    const healthy = await connectHealthyAgent(s);

    const socket = net.connect({ host: '127.0.0.1', port: s.server.agentPort });
    h.defer(() => socket.destroy());
    let received = 0;
    socket.on('data', (d: Buffer) => (received += d.length));
    socket.on('error', () => undefined); // a reset instead of a FIN is an acceptable way to be dropped
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    const connectedAt = Date.now();
    await waitSocketClose(socket, 5000);
    expect(Date.now() - connectedAt).toBeGreaterThanOrEqual(250);
    expect(received).toBe(0);
    const line = await waitLog(s, 'TLS handshake failed', { reason: 'ERR_TLS_HANDSHAKE_TIMEOUT' });
    expect(line.address).toBe('127.0.0.1');
    await healthy.stillServed();
  });
});
