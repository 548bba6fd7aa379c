/**
 * Enrollment through the real `POST /v1/enroll` route: every way a token,
 * a CSR or the body itself can be wrong, the failure rate limit, concurrent
 * use of a limited token, placement when the token's group is gone, and
 * what crosses the wire. Every refusal is logged with its reason, and no log
 * line ever carries a token.
 */
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import https from 'node:https';
import path from 'node:path';
import forge from 'node-forge';
import { afterEach, describe, expect, it } from 'vitest';
import { enrollAgent } from '../../agent/enroll.js';
import { AgentState } from '../../agent/state.js';
import { ENROLL_PATH, MAX_ENROLL_BODY_BYTES, type EnrollResponse } from '../../common/enroll-api.js';
import { requestJson, type JsonResponse } from '../../common/https-json.js';
import { certInfo, createCsr, generateKeyPair, isIssuedBy } from '../../common/pki.js';
import { Harness, testPkiDir, type TestServer } from '../../test/support/harness.js';

const h = new Harness();
afterEach(() => h.cleanup());

const FINGERPRINT = 'c'.repeat(64);

/** A fresh 2048-bit key and a CSR for it, as an agent makes them. */
function agentKeyAndCsr(hostname = 'pc-1'): { keyPem: string; publicKeyPem: string; csr: string } {
  const keys = generateKeyPair(2048);
  return { keyPem: keys.privateKeyPem, publicKeyPem: keys.publicKeyPem, csr: createCsr(keys.privateKeyPem, hostname) };
}

function enrollBody(token: string, csr: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { token, csr, hostname: 'pc-1', fingerprint: FINGERPRINT, agentVersion: '0.1.0', ...extra };
}

/** Posts a body to the enrollment route, verifying the server against our CA. */
function postEnroll(s: TestServer, body: unknown): Promise<JsonResponse> {
  return requestJson({ host: '127.0.0.1', port: s.server.agentPort, path: ENROLL_PATH, ca: s.server.pki.ca.certPem, body });
}

/** Posts raw bytes (for bodies that are not JSON at all). */
function postRaw(s: TestServer, payload: Buffer): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: '127.0.0.1',
        port: s.server.agentPort,
        path: ENROLL_PATH,
        method: 'POST',
        ca: s.server.pki.ca.certPem,
        agent: false,
        timeout: 10_000,
        headers: { 'content-type': 'application/json', 'content-length': String(payload.length) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString('utf8') || 'null') }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error('no answer within 10 s')));
    req.on('error', reject);
    req.end(payload);
  });
}

/** Creates an enrollment token through the console API; returns its id and secret. */
async function createToken(s: TestServer, opts: { group?: string; ttlSec?: number; maxUses?: number } = {}): Promise<{ id: string; secret: string }> {
  const group = opts.group ?? 'Customers/Enroll';
  await s.api('POST', '/api/v1/groups', { path: group });
  const res = await s.api<{ id: string; token: string }>('POST', '/api/v1/enrollment-tokens', { group, ttlSec: opts.ttlSec, maxUses: opts.maxUses });
  expect(res.status).toBe(201);
  return { id: res.body.id, secret: res.body.token };
}

async function tokenUses(s: TestServer, id: string): Promise<number> {
  return (await s.server.storage.enrollTokens.get(id))!.uses;
}

function errorCode(res: { body: unknown }): string | undefined {
  return (res.body as { error?: { code?: string } } | undefined)?.error?.code;
}

/** The refusal was logged with its reason and our address, and no log line carries any of the secrets. */
function expectRefusalLogged(s: TestServer, reason: string, secrets: readonly string[] = []): void {
  expect(s.logs.some((l) => l.msg === 'enrollment refused' && l.reason === reason && l.address === '127.0.0.1'), `"enrollment refused" for ${reason}`).toBe(true);
  expectNoSecretLogged(s, secrets);
}

function expectNoSecretLogged(s: TestServer, secrets: readonly string[]): void {
  const text = JSON.stringify(s.logs);
  for (const secret of secrets) {
    expect(text).not.toContain(secret);
    expect(text).not.toContain(secret.slice(4)); // the random part alone, in case a prefix was stripped
  }
}

/** A token that matches the pattern but was never issued. */
function unknownToken(): string {
  return `rce_${crypto.randomBytes(32).toString('base64url')}`;
}

describe('enrollment tokens', () => {
  it('enrolls with a valid token: the certificate is ours, for the CSR key, with the device id as common name', async () => {
    const s = await h.startServer();
    const token = await createToken(s, { group: 'Customers/Acme' });
    const agent = agentKeyAndCsr();

    const res = await postEnroll(s, enrollBody(token.secret, agent.csr));
    expect(res.status).toBe(200);
    const answer = res.body as EnrollResponse;
    expect(answer.deviceId).toMatch(/^dev_[0-9a-f]{20}$/);
    expect(certInfo(answer.certificate).subjectCommonName).toBe(answer.deviceId);
    expect(isIssuedBy(answer.certificate, s.server.pki.ca.certPem)).toBe(true);
    expect(new crypto.X509Certificate(answer.certificate).publicKey.export({ type: 'spki', format: 'pem' })).toBe(agent.publicKeyPem);
    expect(answer).toMatchObject({ caCertificate: s.server.pki.ca.certPem, group: { path: 'All/Customers/Acme' }, placementReason: null });
    expect(await tokenUses(s, token.id)).toBe(1);
    expect(s.logs.some((l) => l.msg === 'agent enrolled' && l.deviceId === answer.deviceId)).toBe(true);
    expectNoSecretLogged(s, [token.secret]);
  });

  it('refuses malformed tokens with 400 ENROLL_TOKEN_MALFORMED', async () => {
    const s = await h.startServer();
    const agent = agentKeyAndCsr();
    const malformed = ['', 'rce_short', `rca_${crypto.randomBytes(32).toString('base64url')}`, `rce_${'!'.repeat(43)}`, `${unknownToken()}x`];
    for (const token of malformed) {
      const res = await postEnroll(s, enrollBody(token, agent.csr));
      expect(res.status, JSON.stringify(token)).toBe(400);
      expect(errorCode(res), JSON.stringify(token)).toBe('ENROLL_TOKEN_MALFORMED');
    }
    expect(s.logs.filter((l) => l.msg === 'enrollment refused' && l.reason === 'ENROLL_TOKEN_MALFORMED')).toHaveLength(malformed.length);
    expectRefusalLogged(s, 'ENROLL_TOKEN_MALFORMED', malformed.filter((t) => t.length > 8));
    expect(await s.server.storage.devices.list()).toEqual([]);
  });

  it('refuses a well-formed token this server never issued with 401 ENROLL_TOKEN_UNKNOWN', async () => {
    const s = await h.startServer();
    const token = unknownToken();

    const res = await postEnroll(s, enrollBody(token, agentKeyAndCsr().csr));
    expect(res.status).toBe(401);
    expect(errorCode(res)).toBe('ENROLL_TOKEN_UNKNOWN');
    expectRefusalLogged(s, 'ENROLL_TOKEN_UNKNOWN', [token]);
    expect(await s.server.storage.devices.list()).toEqual([]);
  });

  it('accepts a token until its time-to-live has passed, then refuses it with 401 ENROLL_TOKEN_EXPIRED', async () => {
    let clock = Date.now();
    const s = await h.startServer({}, { now: () => clock });
    const token = await createToken(s, { ttlSec: 60 });

    clock += 59_000;
    const inTime = await postEnroll(s, enrollBody(token.secret, agentKeyAndCsr().csr));
    expect(inTime.status).toBe(200);

    clock += 1_000; // exactly the TTL: expired
    const late = await postEnroll(s, enrollBody(token.secret, agentKeyAndCsr().csr));
    expect(late.status).toBe(401);
    expect(errorCode(late)).toBe('ENROLL_TOKEN_EXPIRED');
    expect(await tokenUses(s, token.id)).toBe(1);
    expectRefusalLogged(s, 'ENROLL_TOKEN_EXPIRED', [token.secret]);
    expect(await s.server.storage.devices.list()).toHaveLength(1);
  });

  it('refuses a second enrollment with a single-use token with 401 ENROLL_TOKEN_USED_UP', async () => {
    const s = await h.startServer();
    const token = await createToken(s, { maxUses: 1 });

    expect((await postEnroll(s, enrollBody(token.secret, agentKeyAndCsr().csr))).status).toBe(200);
    const second = await postEnroll(s, enrollBody(token.secret, agentKeyAndCsr().csr));
    expect(second.status).toBe(401);
    expect(errorCode(second)).toBe('ENROLL_TOKEN_USED_UP');
    expect(await tokenUses(s, token.id)).toBe(1);
    expectRefusalLogged(s, 'ENROLL_TOKEN_USED_UP', [token.secret]);
    expect(await s.server.storage.devices.list()).toHaveLength(1);
  });

  it('refuses a revoked token with 401 ENROLL_TOKEN_REVOKED', async () => {
    const s = await h.startServer();
    const token = await createToken(s);
    const revoked = await s.api<{ revokedAt: string | null }>('POST', `/api/v1/enrollment-tokens/${token.id}/revoke`);
    expect(revoked.status).toBe(200);
    expect(revoked.body.revokedAt).not.toBeNull();

    const res = await postEnroll(s, enrollBody(token.secret, agentKeyAndCsr().csr));
    expect(res.status).toBe(401);
    expect(errorCode(res)).toBe('ENROLL_TOKEN_REVOKED');
    expect(await tokenUses(s, token.id)).toBe(0);
    expectRefusalLogged(s, 'ENROLL_TOKEN_REVOKED', [token.secret]);
    expect(await s.server.storage.devices.list()).toEqual([]);
  });
});

describe('certificate signing requests', () => {
  it('refuses a CSR that is not a PEM certificate request, or whose PEM does not parse, with 400 CSR_MALFORMED and keeps the token unused', async () => {
    const s = await h.startServer();
    const token = await createToken(s);
    for (const csr of ['not a csr', '-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n']) {
      const res = await postEnroll(s, enrollBody(token.secret, csr));
      expect(res.status, csr).toBe(400);
      expect(errorCode(res), csr).toBe('CSR_MALFORMED');
    }
    expect(await tokenUses(s, token.id)).toBe(0);
    expectRefusalLogged(s, 'CSR_MALFORMED', [token.secret]);
  });

  it('refuses a CSR for a 1024-bit RSA key with 400 CSR_WEAK_KEY', async () => {
    const s = await h.startServer();
    const token = await createToken(s);
    const weak = forge.pki.rsa.generateKeyPair(1024);
    const csr = forge.pki.createCertificationRequest();
    csr.publicKey = weak.publicKey;
    csr.setSubject([{ name: 'commonName', value: 'weak-pc' }]);
    csr.sign(weak.privateKey, forge.md.sha256.create());
    expect(csr.verify()).toBe(true); // well-formed and correctly signed: only the key size is wrong

    const res = await postEnroll(s, enrollBody(token.secret, forge.pki.certificationRequestToPem(csr)));
    expect(res.status).toBe(400);
    expect(errorCode(res)).toBe('CSR_WEAK_KEY');
    expect((res.body as { error: { message: string } }).error.message).toMatch(/1024 bits/);
    expect(await tokenUses(s, token.id)).toBe(0);
    expectRefusalLogged(s, 'CSR_WEAK_KEY', [token.secret]);
  });

  it('refuses a CSR whose signature was made by another key with 400 CSR_BAD_SIGNATURE', async () => {
    const s = await h.startServer();
    const token = await createToken(s);
    const signer = generateKeyPair(2048);
    const claimed = generateKeyPair(2048);
    const csr = forge.pki.certificationRequestFromPem(createCsr(signer.privateKeyPem, 'pc-1'));
    csr.publicKey = forge.pki.publicKeyFromPem(claimed.publicKeyPem);
    // forge re-emits the signed bytes it parsed unless told to rebuild them from the fields.
    (csr as unknown as { certificationRequestInfo: unknown }).certificationRequestInfo = null;
    const forgedPem = forge.pki.certificationRequestToPem(csr);
    const reparsed = forge.pki.certificationRequestFromPem(forgedPem);
    expect(forge.pki.publicKeyToPem(reparsed.publicKey!)).toBe(forge.pki.publicKeyToPem(forge.pki.publicKeyFromPem(claimed.publicKeyPem)));

    const res = await postEnroll(s, enrollBody(token.secret, forgedPem));
    expect(res.status).toBe(400);
    expect(errorCode(res)).toBe('CSR_BAD_SIGNATURE');
    expect(await tokenUses(s, token.id)).toBe(0);
    expectRefusalLogged(s, 'CSR_BAD_SIGNATURE', [token.secret]);
    expect(await s.server.storage.devices.list()).toEqual([]);
  });
});

describe('request bodies', () => {
  it('refuses bodies with missing, mistyped or extra fields with 400 BAD_REQUEST', async () => {
    const s = await h.startServer();
    const token = await createToken(s);
    const { csr } = agentKeyAndCsr();
    const full = enrollBody(token.secret, csr);
    const without = (field: string) => Object.fromEntries(Object.entries(full).filter(([k]) => k !== field));
    const bad: Record<string, unknown>[] = [
      without('csr'),
      without('hostname'),
      without('fingerprint'),
      { ...full, fingerprint: 'not-hex' },
      { ...full, hostname: 42 },
      { ...full, privateKey: 'x' },
    ];
    for (const body of bad) {
      const res = await postEnroll(s, body);
      expect(res.status, JSON.stringify(Object.keys(body))).toBe(400);
      expect(errorCode(res)).toBe('BAD_REQUEST');
    }
    expect(s.logs.filter((l) => l.msg === 'enrollment refused' && l.reason === 'BAD_REQUEST')).toHaveLength(bad.length);
    expect(await tokenUses(s, token.id)).toBe(0);
    expectRefusalLogged(s, 'BAD_REQUEST', [token.secret]);
  });

  it('refuses a body that is not JSON with 400 BAD_REQUEST and logs the refusal', async () => {
    const s = await h.startServer();
    const token = await createToken(s);

    const res = await postRaw(s, Buffer.from(`{"token":"${token.secret}",`));
    expect(res.status).toBe(400);
    expect(errorCode(res)).toBe('BAD_REQUEST');
    expect(await tokenUses(s, token.id)).toBe(0);
    expectRefusalLogged(s, 'BAD_REQUEST', [token.secret]);
  });

  it('refuses a body over 16 KiB with 413 and logs the refusal, while a body of exactly 16 KiB is read', async () => {
    const s = await h.startServer();
    const token = await createToken(s);
    const { csr } = agentKeyAndCsr();
    const sized = (bytes: number): Record<string, unknown> => {
      const base = Buffer.byteLength(JSON.stringify(enrollBody(token.secret, csr, { pad: '' })));
      return enrollBody(token.secret, csr, { pad: 'p'.repeat(bytes - base) });
    };
    expect(Buffer.byteLength(JSON.stringify(sized(MAX_ENROLL_BODY_BYTES)))).toBe(MAX_ENROLL_BODY_BYTES);

    const atLimit = await postEnroll(s, sized(MAX_ENROLL_BODY_BYTES));
    expect(atLimit.status).toBe(400); // read and validated: the extra field is refused, not the size
    expect(errorCode(atLimit)).toBe('BAD_REQUEST');

    const over = await postEnroll(s, sized(MAX_ENROLL_BODY_BYTES + 1));
    expect(over.status).toBe(413);
    expect(errorCode(over)).toBe('PAYLOAD_TOO_LARGE');
    expect(await tokenUses(s, token.id)).toBe(0);
    expectRefusalLogged(s, 'PAYLOAD_TOO_LARGE', [token.secret]);
  });
});

describe('failure rate limit', () => {
  it('answers 429 RATE_LIMITED with retry-after once an address has failed 3 times, even with a valid token, until the window ends', async () => {
    let clock = Date.now();
    const s = await h.startServer({ enrollFailuresPerWindow: 3, enrollFailureWindowMs: 60_000 }, { now: () => clock });
    const token = await createToken(s);
    for (let i = 0; i < 3; i += 1) {
      const res = await postEnroll(s, enrollBody(unknownToken(), agentKeyAndCsr().csr));
      expect(errorCode(res)).toBe('ENROLL_TOKEN_UNKNOWN');
    }

    const blocked = await postEnroll(s, enrollBody(token.secret, agentKeyAndCsr().csr));
    expect(blocked.status).toBe(429);
    expect(errorCode(blocked)).toBe('RATE_LIMITED');
    expect(blocked.headers['retry-after']).toBe('60');
    expect((blocked.body as { error: { retryAfterMs: number } }).error.retryAfterMs).toBe(60_000);
    expect(await tokenUses(s, token.id)).toBe(0);
    expectRefusalLogged(s, 'RATE_LIMITED', [token.secret]);

    clock += 30_000;
    const stillBlocked = await postEnroll(s, enrollBody(token.secret, agentKeyAndCsr().csr));
    expect(stillBlocked.status).toBe(429);
    expect(stillBlocked.headers['retry-after']).toBe('30');

    clock += 30_000;
    const afterWindow = await postEnroll(s, enrollBody(token.secret, agentKeyAndCsr().csr));
    expect(afterWindow.status).toBe(200);
    expect(await tokenUses(s, token.id)).toBe(1);
  });
});

describe('concurrent enrollments', () => {
  it('enrolls exactly 3 devices when 6 agents use a 3-use token at once', async () => {
    const s = await h.startServer();
    const token = await createToken(s, { group: 'Customers/Rush', maxUses: 3 });
    const csrs = Array.from({ length: 6 }, (_, i) => agentKeyAndCsr(`rush-${i}`).csr);

    const results = await Promise.all(csrs.map((csr, i) => postEnroll(s, enrollBody(token.secret, csr, { hostname: `rush-${i}` }))));
    const ok = results.filter((r) => r.status === 200);
    const refused = results.filter((r) => r.status !== 200);
    expect(ok).toHaveLength(3);
    expect(refused.map((r) => [r.status, errorCode(r)])).toEqual([
      [401, 'ENROLL_TOKEN_USED_UP'],
      [401, 'ENROLL_TOKEN_USED_UP'],
      [401, 'ENROLL_TOKEN_USED_UP'],
    ]);
    const ids = ok.map((r) => (r.body as EnrollResponse).deviceId);
    expect(new Set(ids).size).toBe(3);
    expect(await tokenUses(s, token.id)).toBe(3);
    const devices = await s.server.storage.devices.list();
    expect(devices.map((d) => d.id).sort()).toEqual([...ids].sort());
    expect(s.logs.filter((l) => l.msg === 'enrollment refused' && l.reason === 'ENROLL_TOKEN_USED_UP')).toHaveLength(3);
    expectNoSecretLogged(s, [token.secret]);
  });
});

describe('placement', () => {
  it("places a device in Lost & found, saying why, when its token's group was deleted", async () => {
    const s = await h.startServer();
    const group = await s.api<{ id: string; path: string }>('POST', '/api/v1/groups', { path: 'Customers/Gone' });
    expect(group.status).toBe(201);
    const token = await createToken(s, { group: 'Customers/Gone' });
    expect((await s.api('DELETE', `/api/v1/groups/${group.body.id}`)).status).toBe(204);

    const res = await postEnroll(s, enrollBody(token.secret, agentKeyAndCsr().csr));
    expect(res.status).toBe(200);
    const answer = res.body as EnrollResponse;
    expect(answer.group.path).toBe('All/Lost & found');
    expect(answer.placementReason).toBe("the enrollment token's group no longer exists");
    const view = await s.api<{ groupPath: string; placementReason: string | null }>('GET', `/api/v1/devices/${answer.deviceId}`);
    expect(view.body).toMatchObject({ groupPath: 'All/Lost & found', placementReason: "the enrollment token's group no longer exists" });
    expect(s.logs.some((l) => l.msg === 'agent enrolled' && l.deviceId === answer.deviceId && l.group === 'All/Lost & found')).toBe(true);
    expectNoSecretLogged(s, [token.secret]);
  });
});

/** An HTTPS front with the test server certificate that records request bodies and forwards them to the agent port. */
async function recordingFront(s: TestServer): Promise<{ address: string; bodies: string[] }> {
  const dir = testPkiDir();
  const read = (f: string): Promise<string> => fs.readFile(path.join(dir, f), 'utf8');
  const [key, cert, ca] = await Promise.all([read('server.key'), read('server.crt'), read('ca.crt')]);
  const bodies: string[] = [];
  const front = https.createServer({ key, cert: cert + ca }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      bodies.push(body.toString('utf8'));
      const upstream = https.request(
        { host: '127.0.0.1', port: s.server.agentPort, path: req.url, method: req.method, headers: req.headers, ca, agent: false },
        (up) => {
          res.writeHead(up.statusCode ?? 502, up.headers);
          up.pipe(res);
        },
      );
      upstream.on('error', (err) => res.writeHead(502).end(err.message));
      upstream.end(body);
    });
  });
  await new Promise<void>((resolve) => front.listen(0, '127.0.0.1', resolve));
  h.defer(
    () =>
      new Promise<void>((resolve) => {
        front.closeAllConnections();
        front.close(() => resolve());
      }),
  );
  const port = (front.address() as { port: number }).port;
  return { address: `127.0.0.1:${port}`, bodies };
}

describe('what the agent sends', () => {
  it("sends only a CSR: the agent's private key never appears in the enrollment request", async () => {
    const s = await h.startServer();
    const token = await createToken(s);
    const front = await recordingFront(s);
    const state = new AgentState(await h.tempDir('rollcall-agent-'));

    const identity = await enrollAgent({ servers: [front.address], caPin: s.server.pki.caPin, token: token.secret, state, fingerprint: FINGERPRINT, hostname: 'pc-wire' });
    const creds = await state.loadCredentials();

    expect(front.bodies).toHaveLength(1);
    const sent = JSON.parse(front.bodies[0]!) as Record<string, string>;
    expect(Object.keys(sent).sort()).toEqual(['agentVersion', 'csr', 'fingerprint', 'hostname', 'token']);
    expect(front.bodies[0]).not.toMatch(/PRIVATE KEY/);
    const keyBase64 = creds.keyPem.split('\n').filter((l) => l && !l.startsWith('-----'));
    expect(keyBase64.length).toBeGreaterThan(10);
    for (const line of keyBase64) expect(front.bodies[0]).not.toContain(line);
    const ourPublicKey = crypto.createPublicKey(creds.keyPem).export({ type: 'spki', format: 'pem' });
    const csrKey = forge.pki.certificationRequestFromPem(sent.csr!).publicKey!;
    expect(forge.pki.publicKeyToPem(csrKey).replace(/\r/g, '')).toBe(ourPublicKey);
    expect(certInfo(creds.certPem).subjectCommonName).toBe(identity.deviceId);
    expect(new crypto.X509Certificate(creds.certPem).publicKey.export({ type: 'spki', format: 'pem' })).toBe(ourPublicKey);
    expectNoSecretLogged(s, [token.secret]);
  });
});
