import dns from 'node:dns';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { CloseCode } from '../../common/close-codes.js';
import { requestJson } from '../../common/https-json.js';
import { fetchPinnedCa } from '../../common/pinned-tls.js';
import { generateKeyPair, issueClientCert, issueServerCert, spkiPin } from '../../common/pki.js';
import { CHECKIN_PATH, serverMessageDecoder } from '../../common/protocol.js';
import { Harness, readTestCa, type TestServer } from '../../test/support/harness.js';
import { enrollAgent } from '../enroll.js';
import { classifyClose, classifyError, classifyUpgradeRefusal, FAILURE_CLASSES, remedyFor } from '../errors.js';
import { AgentState } from '../state.js';
import { formatStatus } from '../status.js';
import { closedPort, firstError, nxdomainResolver, plainHttpServer, silentTcpServer, tlsServer } from './net-fixtures.js';

const h = new Harness();
afterEach(() => h.cleanup());

const DAY = 86_400_000;

/** Opens a WebSocket the way the agent does and returns the first error it emits. */
function wsError(url: string, opts: ConstructorParameters<typeof WebSocket>[2]): Promise<Error & { code?: string }> {
  const ws = new WebSocket(url, { perMessageDeflate: false, ...opts });
  h.defer(() => ws.terminate());
  return firstError(ws);
}

function checkinUrl(port: number): string {
  return `wss://127.0.0.1:${port}${CHECKIN_PATH}`;
}

/** Opens a check-in channel for an enrolled agent and waits for its welcome. */
async function welcomedClient(s: TestServer, agent: { deviceId: string; keyPem: string; certPem: string }) {
  const c = await s.rawClient(agent);
  await c.open();
  c.hello(agent.deviceId);
  await c.waitMessage('welcome');
  return c;
}

describe('classifyError', () => {
  it('puts a real connection refusal on a closed loopback port in REFUSED', async () => {
    const socket = net.connect({ host: '127.0.0.1', port: await closedPort() });
    const err = await firstError(socket);
    expect(err.code).toBe('ECONNREFUSED');
    expect(classifyError(err)).toMatchObject({ class: 'REFUSED', code: 'ECONNREFUSED', retryable: true });
    expect(classifyError(err).terminal).toBeFalsy();
  });

  it('puts a real NXDOMAIN answer for a .invalid name in DNS, without a query leaving the machine', async () => {
    // /etc/resolv.conf points off the machine, so the resolver used here is a loopback one that answers NXDOMAIN.
    const resolver = new dns.promises.Resolver({ timeout: 2000, tries: 1 });
    resolver.setServers([await nxdomainResolver(h)]);
    const lookup = (host: string, opts: { all?: boolean }, cb: (err: Error | null, address?: unknown, family?: number) => void): void => {
      resolver.resolve4(host).then(
        (addrs) => (opts.all ? cb(null, addrs.map((address) => ({ address, family: 4 }))) : cb(null, addrs[0], 4)),
        (err: Error) => cb(err),
      );
    };
    const socket = net.connect({ host: 'nonexistent.invalid', port: 2222, lookup: lookup as net.LookupFunction });
    const err = await firstError(socket);
    expect(err.code).toBe('ENOTFOUND');
    expect(classifyError(err)).toMatchObject({ class: 'DNS', code: 'ENOTFOUND', retryable: true });
  });

  it('puts the errors getaddrinfo reports for an unknown or unreachable name in DNS', () => {
    // Built with the shape Node gives them: resolving for real would send the query off this machine.
    const shaped = (code: string, errno: number) =>
      Object.assign(new Error(`getaddrinfo ${code} nonexistent.invalid`), { errno, code, syscall: 'getaddrinfo', hostname: 'nonexistent.invalid' });
    for (const [code, errno] of [['ENOTFOUND', -3008], ['EAI_AGAIN', -3001], ['EAI_FAIL', -3007]] as const) {
      expect(classifyError(shaped(code, errno)), code).toMatchObject({ class: 'DNS', code, message: `getaddrinfo ${code} nonexistent.invalid`, retryable: true });
    }
  });

  it('puts a WebSocket opening handshake that never completes in TIMEOUT', async () => {
    const port = await silentTcpServer(h);
    const err = await wsError(checkinUrl(port), { handshakeTimeout: 200 });
    expect(classifyError(err)).toMatchObject({ class: 'TIMEOUT', retryable: true });
  });

  it('puts the pinned CA fetch and JSON request timeouts in TIMEOUT', async () => {
    const port = await silentTcpServer(h);
    const ca = await readTestCa();
    const pinErr = await fetchPinnedCa('127.0.0.1', port, spkiPin(ca.certPem), 200).catch((e: unknown) => e);
    expect(classifyError(pinErr)).toMatchObject({ class: 'TIMEOUT', code: 'TIMEOUT' });
    const reqErr = await requestJson({ host: '127.0.0.1', port, path: '/', ca: ca.certPem, timeoutMs: 200 }).catch((e: unknown) => e);
    expect(classifyError(reqErr)).toMatchObject({ class: 'TIMEOUT', code: 'TIMEOUT' });
  });

  it('puts a server certificate from another CA in TLS', async () => {
    const s = await h.startServer();
    const foreign = await readTestCa('foreign-ca');
    const err = await wsError(checkinUrl(s.server.agentPort), { ca: foreign.certPem });
    expect(err.code).toMatch(/CERT|SELF_SIGNED|UNABLE_TO/);
    expect(classifyError(err)).toMatchObject({ class: 'TLS', code: err.code, retryable: true });
  });

  it('puts a server certificate that does not name the dialled host in TLS', async () => {
    const s = await h.startServer();
    const err = await wsError(checkinUrl(s.server.agentPort), { ca: s.server.pki.ca.certPem, servername: 'not-in-the-cert.example' } as ConstructorParameters<typeof WebSocket>[2]);
    expect(err.code).toBe('ERR_TLS_CERT_ALTNAME_INVALID');
    expect(classifyError(err)).toMatchObject({ class: 'TLS', code: 'ERR_TLS_CERT_ALTNAME_INVALID' });
  });

  it('puts an expired server certificate in TLS', async () => {
    const ca = await readTestCa();
    const expired = issueServerCert(ca, { hosts: ['127.0.0.1'], validityDays: 1, now: new Date(Date.now() - 10 * DAY) });
    const port = await tlsServer(h, { key: expired.keyPem, cert: expired.certPem + ca.certPem });
    const err = await wsError(checkinUrl(port), { ca: ca.certPem });
    expect(err.code).toBe('CERT_HAS_EXPIRED');
    expect(classifyError(err)).toMatchObject({ class: 'TLS', code: 'CERT_HAS_EXPIRED' });
  });

  it('puts a plain-HTTP answer on the TLS port in TLS', async () => {
    const port = await plainHttpServer(h);
    const err = await wsError(checkinUrl(port), { ca: (await readTestCa()).certPem });
    expect(err.code).toMatch(/^(EPROTO|ERR_SSL_)/); // OpenSSL's "wrong version number"
    expect(err.message).toMatch(/SSL/);
    expect(classifyError(err)).toMatchObject({ class: 'TLS', code: err.code });
  });

  it('puts a server that demands a client certificate we did not send in TLS', async () => {
    const ca = await readTestCa();
    const cert = issueServerCert(ca, { hosts: ['127.0.0.1'] });
    const port = await tlsServer(h, { key: cert.keyPem, cert: cert.certPem, ca: ca.certPem, requestCert: true, rejectUnauthorized: true });
    const err = await wsError(checkinUrl(port), { ca: ca.certPem });
    expect(err.code).toMatch(/^ERR_SSL_/);
    expect(classifyError(err)).toMatchObject({ class: 'TLS', code: err.code });
  });

  it('puts a CA pin mismatch from a real pinned fetch in TLS', async () => {
    const s = await h.startServer();
    const foreignPin = spkiPin((await readTestCa('foreign-ca')).certPem);
    const err = await fetchPinnedCa('127.0.0.1', s.server.agentPort, foreignPin).catch((e: unknown) => e);
    expect(classifyError(err)).toMatchObject({ class: 'TLS', code: 'CA_PIN_MISMATCH' });
  });

  it('puts a refused enrollment token in REJECTED and says it is not worth retrying', async () => {
    const s = await h.startServer();
    const state = new AgentState(`${await h.tempDir()}/state`);
    const err = await enrollAgent({ servers: [s.agentAddress], caPin: s.server.pki.caPin, token: `rce_${'A'.repeat(43)}`, state, fingerprint: 'f'.repeat(64) }).catch(
      (e: unknown) => e,
    );
    expect(classifyError(err)).toMatchObject({ class: 'REJECTED', code: 'ENROLL_TOKEN_UNKNOWN', retryable: false });
  });

  it('puts a frame the server should never send in PROTOCOL', () => {
    let err: unknown;
    try {
      serverMessageDecoder().decode('{"type":"welcome"}');
    } catch (e) {
      err = e;
    }
    expect(classifyError(err)).toMatchObject({ class: 'PROTOCOL', code: 'MALFORMED_FRAME' });
  });

  it('puts a frame larger than the agent accepts in PROTOCOL', async () => {
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    h.defer(() => new Promise((resolve) => wss.close(resolve)));
    await new Promise<void>((resolve) => wss.once('listening', () => resolve()));
    wss.on('connection', (peer) => {
      peer.on('error', () => undefined);
      peer.send('x'.repeat(4096));
    });
    const err = await wsError(`ws://127.0.0.1:${(wss.address() as net.AddressInfo).port}`, { maxPayload: 1024 });
    expect(err.code).toBe('WS_ERR_UNSUPPORTED_MESSAGE_LENGTH');
    expect(classifyError(err)).toMatchObject({ class: 'PROTOCOL', code: 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH', retryable: true });
  });

  it('puts anything it cannot recognise in CLOSED with the code UNKNOWN', () => {
    expect(classifyError('a bare string')).toMatchObject({ class: 'CLOSED', code: 'UNKNOWN', message: 'a bare string', retryable: true });
    expect(classifyError(undefined)).toMatchObject({ class: 'CLOSED', code: 'UNKNOWN' });
  });
});

describe('classifyClose', () => {
  it('ends for good when a live channel is closed because the device was revoked', async () => {
    const s = await h.startServer();
    const agent = await s.enrollAgent();
    const c = await welcomedClient(s, agent);
    expect((await s.api('POST', `/api/v1/devices/${agent.deviceId}/revoke`, {})).status).toBe(200);
    const close = await c.waitClose();
    expect(close.code).toBe(CloseCode.REVOKED);
    expect(classifyClose(close.code, close.reason)).toEqual({ class: 'REJECTED', code: 'REVOKED', message: close.reason, retryable: false, terminal: true });
  });

  it('ends for good on an unknown-device close', () => {
    expect(classifyClose(CloseCode.UNKNOWN_DEVICE, 'hello names a device other than the certificate')).toMatchObject({
      class: 'REJECTED',
      code: 'UNKNOWN_DEVICE',
      retryable: false,
      terminal: true,
    });
  });

  it('retries after a real server shutdown close', async () => {
    const s = await h.startServer();
    const c = await welcomedClient(s, await s.enrollAgent());
    await s.close();
    const close = await c.waitClose();
    expect(close.code).toBe(1001);
    expect(classifyClose(close.code, close.reason)).toEqual({ class: 'CLOSED', code: 'CLOSE_1001', message: 'server shutting down', retryable: true, terminal: false });
  });

  it('retries after being replaced by a newer connection of the same device', async () => {
    const s = await h.startServer();
    const agent = await s.enrollAgent();
    const first = await welcomedClient(s, agent);
    await welcomedClient(s, agent);
    const close = await first.waitClose();
    expect(classifyClose(close.code, close.reason)).toMatchObject({ class: 'CLOSED', code: 'REPLACED', retryable: true, terminal: false });
  });

  it('puts a real malformed-frame close and an unsupported-version close in PROTOCOL', async () => {
    const s = await h.startServer();
    const agent = await s.enrollAgent();
    const c = await welcomedClient(s, agent);
    c.send('this is not json');
    const close = await c.waitClose();
    expect(classifyClose(close.code, close.reason)).toMatchObject({ class: 'PROTOCOL', code: 'MALFORMED_FRAME', retryable: true, terminal: false });

    const old = await s.rawClient(agent);
    await old.open();
    old.hello(agent.deviceId, { protocol: 99 });
    const refused = await old.waitClose();
    expect(classifyClose(refused.code, refused.reason)).toMatchObject({ class: 'PROTOCOL', code: 'UNSUPPORTED_VERSION', retryable: true });
  });

  it('keeps the delay the server advised with a rate-limit close', async () => {
    const s = await h.startServer({ maxFramesPerSec: 1, frameBurst: 2 });
    const c = await welcomedClient(s, await s.enrollAgent());
    for (let seq = 1; seq <= 5; seq += 1) c.send({ type: 'checkin', seq, sentAt: Date.now(), uptimeSec: 1 });
    const advice = await c.waitMessage('error');
    const close = await c.waitClose();
    expect(advice.retryAfterMs).toBeGreaterThan(0);
    expect(classifyClose(close.code, close.reason, advice.retryAfterMs)).toMatchObject({
      class: 'REJECTED',
      code: 'RATE_LIMITED',
      retryable: true,
      terminal: false,
      retryAfterMs: advice.retryAfterMs,
    });
  });

  it('names close codes that are not ours and describes an empty reason', () => {
    expect(classifyClose(1006, '')).toEqual({ class: 'CLOSED', code: 'CLOSE_1006', message: 'connection closed (1006)', retryable: true, terminal: false });
    expect(classifyClose(1009, 'too big')).toMatchObject({ class: 'PROTOCOL', code: 'CLOSE_1009' });
    expect(classifyClose(4999, 'odd')).toMatchObject({ class: 'CLOSED', code: 'CLOSE_4999', retryable: true });
  });
});

describe('classifyUpgradeRefusal', () => {
  it('ends for good when a revoked device is turned away before the upgrade', async () => {
    const s = await h.startServer();
    const agent = await s.enrollAgent();
    await s.api('POST', `/api/v1/devices/${agent.deviceId}/revoke`, {});
    const refusal = await (await s.rawClient(agent)).waitRefusal();
    expect(refusal).toMatchObject({ status: 403, closeCodeHeader: String(CloseCode.REVOKED) });
    expect(classifyUpgradeRefusal(refusal.status, refusal.body, refusal.closeCodeHeader)).toMatchObject({
      class: 'REJECTED',
      code: 'DEVICE_REVOKED',
      retryable: false,
      terminal: true,
    });
  });

  it('ends for good when the certificate belongs to no known device', async () => {
    const s = await h.startServer();
    const refusal = await (await s.rawClient(s.strayCertificate())).waitRefusal();
    expect(refusal.closeCodeHeader).toBe(String(CloseCode.UNKNOWN_DEVICE));
    expect(classifyUpgradeRefusal(refusal.status, refusal.body, refusal.closeCodeHeader)).toMatchObject({
      class: 'REJECTED',
      code: 'DEVICE_UNKNOWN',
      retryable: false,
      terminal: true,
    });
  });

  it('ends for good when the agent certificate has expired', async () => {
    const s = await h.startServer();
    const agent = await s.enrollAgent();
    const keys = generateKeyPair(2048);
    const old = issueClientCert(s.server.pki.ca, { publicKeyPem: keys.publicKeyPem, deviceId: agent.deviceId, validityDays: 1, now: new Date(Date.now() - 10 * DAY) });
    const refusal = await (await s.rawClient({ keyPem: keys.privateKeyPem, certPem: old.certPem })).waitRefusal();
    expect(refusal.body.error?.code).toBe('CLIENT_CERT_EXPIRED');
    expect(classifyUpgradeRefusal(refusal.status, refusal.body, refusal.closeCodeHeader)).toMatchObject({
      class: 'TLS',
      code: 'CLIENT_CERT_EXPIRED',
      retryable: false,
      terminal: true,
    });
  });

  it('retries when the agent certificate comes from another CA, since the server may be the wrong one', async () => {
    const s = await h.startServer();
    const foreign = await readTestCa('foreign-ca');
    const keys = generateKeyPair(2048);
    const cert = issueClientCert(foreign, { publicKeyPem: keys.publicKeyPem, deviceId: 'dev_foreign' });
    const refusal = await (await s.rawClient({ keyPem: keys.privateKeyPem, certPem: cert.certPem })).waitRefusal();
    const f = classifyUpgradeRefusal(refusal.status, refusal.body, refusal.closeCodeHeader);
    expect(f).toMatchObject({ class: 'TLS', code: 'CLIENT_CERT_UNTRUSTED', retryable: true });
    expect(f.terminal).toBeFalsy();
  });

  it('retries an overloaded or rate-limited refusal no sooner than advised', () => {
    expect(classifyUpgradeRefusal(429, { error: { code: 'RATE_LIMITED', message: 'slow down', retryAfterMs: 1500 } })).toEqual({
      class: 'REJECTED',
      code: 'RATE_LIMITED',
      message: 'slow down',
      retryable: true,
      retryAfterMs: 1500,
    });
    expect(classifyUpgradeRefusal(503, {})).toMatchObject({ class: 'REJECTED', code: 'HTTP_503', retryable: true });
  });

  it('describes a refusal without a JSON body by its status', () => {
    expect(classifyUpgradeRefusal(502, {})).toMatchObject({ class: 'REJECTED', code: 'HTTP_502', message: 'the server refused the connection (HTTP 502)', terminal: false });
  });
});

describe('failure classes', () => {
  it('are exactly the eight documented ones, each with a remedy sentence', () => {
    expect([...FAILURE_CLASSES]).toEqual(['DNS', 'REFUSED', 'TIMEOUT', 'TLS', 'PROXY', 'REJECTED', 'PROTOCOL', 'CLOSED']);
    for (const c of FAILURE_CLASSES) expect(remedyFor({ class: c, code: 'X' }), c).toMatch(/^[A-Z].{20,}\.$/);
    expect(remedyFor({ class: 'TLS', code: 'CA_PIN_MISMATCH' })).toMatch(/repin/);
    expect(remedyFor({ class: 'REJECTED', code: 'DEVICE_REVOKED' })).toMatch(/re-enroll/);
  });
});

describe('status for people', () => {
  it('shows the path, the last success, the error with its class and remedy, the outbox and the certificate', () => {
    const text = formatStatus(
      {
        state: 'backoff',
        deviceId: 'dev_1',
        group: 'All/Customers/Acme',
        server: 'rollcall.example:2222',
        path: 'proxy proxy.example:3128',
        pid: 1,
        since: '2026-11-21T00:00:00.000Z',
        updatedAt: '2026-11-21T00:00:00.000Z',
        intervalSec: 60,
        lastCheckinAt: '2026-11-21T00:00:00.000Z',
        lastAckedSeq: 7,
        connectedSince: null,
        nextAttemptAt: '2026-11-21T00:01:00.000Z',
        failedAttempts: 2,
        lastSuccessAt: '2026-11-21T00:00:00.000Z',
        lastError: { class: 'PROXY', code: 'PROXY_AUTH_REQUIRED', message: 'the proxy wants credentials', at: '2026-11-21T00:00:30.000Z', remedy: remedyFor({ class: 'PROXY', code: 'PROXY_AUTH_REQUIRED' }) },
        outbox: { pending: 3, bytes: 300, lastSeq: 40, dropped: 2, lastError: { code: 'OUTBOX_DISK_FULL', message: 'the disk is full', at: '2026-11-21T00:00:40.000Z' } },
        certificate: { serial: 'ABC', notAfter: '2029-01-01T00:00:00.000Z', renewAt: '2028-12-02T00:00:00.000Z' },
      },
      true,
    );
    expect(text).toContain('server:         rollcall.example:2222 (proxy proxy.example:3128)');
    expect(text).toContain('last success:   2026-11-21T00:00:00.000Z');
    expect(text).toContain('last error:     [PROXY] PROXY_AUTH_REQUIRED: the proxy wants credentials');
    expect(text).toMatch(/remedy: +The proxy wants credentials: set the proxy as http:\/\/user:password@host:port\./);
    expect(text).toContain('outbox:         3 event(s) to deliver, 300 bytes (last seq 40, 2 dropped when full)');
    expect(text).toContain('outbox error:   OUTBOX_DISK_FULL: the disk is full');
    expect(text).toContain('certificate:    serial ABC, expires 2029-01-01T00:00:00.000Z, renewal from 2028-12-02T00:00:00.000Z');
  });
});
