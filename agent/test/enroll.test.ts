import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import tls from 'node:tls';
import { afterEach, describe, expect, it } from 'vitest';
import { RollcallError } from '../../common/errors.js';
import { verifyChainAgainstPin } from '../../common/pinned-tls.js';
import { certInfo, issueServerCert, spkiPin } from '../../common/pki.js';
import { Harness, readTestCa, type TestServer } from '../../test/support/harness.js';
import { enrollAgent, type EnrollOptions } from '../enroll.js';
import { AgentState, STATE_FILES } from '../state.js';
import { closedPort, tlsServer } from './net-fixtures.js';

const h = new Harness();
afterEach(() => h.cleanup());

const FINGERPRINT = 'b'.repeat(64);

/** A state directory that does not exist yet, inside a temp dir removed at cleanup. */
async function freshStateDir(): Promise<string> {
  return path.join(await h.tempDir(), 'state');
}

async function rejection(p: Promise<unknown>): Promise<RollcallError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(RollcallError);
  return err as RollcallError;
}

function options(s: TestServer, state: AgentState, token: string, extra: Partial<EnrollOptions> = {}): EnrollOptions {
  return { servers: [s.agentAddress], caPin: s.server.pki.caPin, token, state, fingerprint: FINGERPRINT, hostname: 'enroll-test', ...extra };
}

/** Lists a directory, or returns null when it does not exist. */
async function listing(dir: string): Promise<string[] | null> {
  try {
    return await fs.readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

const mode = async (p: string): Promise<number> => (await fs.stat(p)).mode & 0o777;

describe('enrollAgent', () => {
  it('stores key, certificate, CA and identity, each 0600 in a 0700 directory, and the server knows the device', async () => {
    const s = await h.startServer();
    const state = new AgentState(await freshStateDir());
    const identity = await enrollAgent(options(s, state, await s.enrollmentToken('Customers/Acme')));

    expect(await mode(state.dir)).toBe(0o700);
    for (const name of ['key', 'cert', 'ca', 'identity', 'seq'] as const) {
      expect(await mode(state.file(name)), STATE_FILES[name]).toBe(0o600);
    }
    expect((await listing(state.dir))!.sort()).toEqual(['agent.crt', 'agent.key', 'ca.crt', 'identity.json', 'seq.json']);

    const creds = await state.loadCredentials();
    expect(creds.identity).toEqual(identity);
    expect(identity).toMatchObject({ servers: [s.agentAddress], caPin: s.server.pki.caPin, group: { path: 'All/Customers/Acme' } });
    expect(creds.caPem).toBe(s.server.pki.ca.certPem);
    expect(certInfo(creds.certPem).subjectCommonName).toBe(identity.deviceId);
    const ourKey = crypto.createPublicKey(creds.keyPem).export({ type: 'spki', format: 'pem' });
    expect(new crypto.X509Certificate(creds.certPem).publicKey.export({ type: 'spki', format: 'pem' })).toBe(ourKey);
    expect(await state.loadAckedSeq()).toBe(0);

    expect(await s.server.storage.devices.get(identity.deviceId)).toMatchObject({ hostname: 'enroll-test', fingerprint: FINGERPRINT, lastSeq: 0 });
    expect(s.logs.some((l) => l.msg === 'agent enrolled' && l.deviceId === identity.deviceId)).toBe(true);
  });

  it('tightens a state directory that already exists with looser permissions to 0700', async () => {
    const s = await h.startServer();
    const dir = await freshStateDir();
    await fs.mkdir(dir, { mode: 0o755 });
    await fs.chmod(dir, 0o755);
    const state = new AgentState(dir);
    await enrollAgent(options(s, state, await s.enrollmentToken()));
    expect(await mode(dir)).toBe(0o700);
  });

  it('refuses a server whose CA does not match the pin before sending the token, and writes nothing', async () => {
    const s = await h.startServer();
    const token = await s.enrollmentToken();
    const state = new AgentState(await freshStateDir());
    const foreignPin = spkiPin((await readTestCa('foreign-ca')).certPem);

    const err = await rejection(enrollAgent(options(s, state, token, { caPin: foreignPin })));
    expect(err.code).toBe('CA_PIN_MISMATCH');
    expect(err.message).toContain(foreignPin);

    expect(await listing(state.dir)).toBeNull();
    expect(s.logs.some((l) => l.msg === 'agent enrolled')).toBe(false);
    expect(s.logs.some((l) => l.msg === 'enrollment refused')).toBe(false);
    const tokens = await s.api<{ tokens: { uses: number }[] }>('GET', '/api/v1/enrollment-tokens');
    expect(tokens.body.tokens.map((t) => t.uses)).toEqual([0]);
    expect(await s.server.storage.devices.list()).toEqual([]);
  });

  it('refuses a malformed pin without dialling the server', async () => {
    const s = await h.startServer();
    const state = new AgentState(await freshStateDir());
    for (const pin of ['', 'sha256:xyz', `sha1:${'a'.repeat(64)}`, `sha256:${'a'.repeat(63)}`]) {
      const err = await rejection(enrollAgent(options(s, state, 'rce_whatever', { caPin: pin })));
      expect(err.code, pin).toBe('PIN_MALFORMED');
    }
    expect(await listing(state.dir)).toBeNull();
    expect(s.logs.some((l) => /enroll/.test(String(l.msg)))).toBe(false);
  });

  it('refuses to enroll over an existing enrollment without force, and keeps it', async () => {
    const s = await h.startServer();
    const state = new AgentState(await freshStateDir());
    const first = await enrollAgent(options(s, state, await s.enrollmentToken()));
    const before = await state.loadCredentials();

    const err = await rejection(enrollAgent(options(s, state, await s.enrollmentToken())));
    expect(err.code).toBe('ALREADY_ENROLLED');
    expect(err.message).toContain('--force');
    expect(await state.loadCredentials()).toEqual(before);
    expect(s.logs.filter((l) => l.msg === 'agent enrolled')).toHaveLength(1);

    const second = await enrollAgent(options(s, state, await s.enrollmentToken(), { force: true }));
    expect(second.deviceId).not.toBe(first.deviceId);
    expect((await state.loadCredentials()).identity.deviceId).toBe(second.deviceId);
  });

  it('refuses an unknown token with the server code and writes nothing', async () => {
    const s = await h.startServer();
    const state = new AgentState(await freshStateDir());
    const err = await rejection(enrollAgent(options(s, state, `rce_${'Z'.repeat(43)}`)));
    expect(err.code).toBe('ENROLL_TOKEN_UNKNOWN');
    expect(err.retryable).toBe(false);
    expect(await listing(state.dir)).toBeNull();
  });

  it('refuses a server whose certificate, though signed by the pinned CA, does not name the address dialled', async () => {
    const ca = await readTestCa();
    const elsewhere = issueServerCert(ca, { hosts: ['rollcall.other.example'] });
    const port = await tlsServer(h, { key: elsewhere.keyPem, cert: elsewhere.certPem + ca.certPem });
    const state = new AgentState(await freshStateDir());
    const err = await rejection(
      enrollAgent({ servers: [`127.0.0.1:${port}`], caPin: spkiPin(ca.certPem), token: 'rce_whatever', state, fingerprint: FINGERPRINT }),
    );
    expect(err.code).toBe('TLS_NAME_MISMATCH');
    expect(err.message).toContain('127.0.0.1');
    expect(await listing(state.dir)).toBeNull();
  });
});

describe('verifyChainAgainstPin', () => {
  async function presentedChain(s: TestServer): Promise<Buffer[]> {
    const socket = tls.connect({ host: '127.0.0.1', port: s.server.agentPort, ca: s.server.pki.ca.certPem });
    h.defer(() => socket.destroy());
    await new Promise<void>((resolve, reject) => {
      socket.once('secureConnect', () => resolve());
      socket.once('error', reject);
    });
    const leaf = socket.getPeerCertificate(true);
    socket.end();
    return [leaf.raw, leaf.issuerCertificate.raw];
  }

  it('returns the pinned CA for the names in the server certificate', async () => {
    const s = await h.startServer();
    const chain = await presentedChain(s);
    expect(spkiPin(verifyChainAgainstPin(chain, s.server.pki.caPin, '127.0.0.1'))).toBe(s.server.pki.caPin);
    expect(spkiPin(verifyChainAgainstPin(chain, s.server.pki.caPin, 'localhost'))).toBe(s.server.pki.caPin);
  });

  it('refuses a host name or address that is not in the certificate', async () => {
    const s = await h.startServer();
    const chain = await presentedChain(s);
    for (const host of ['rollcall.example.com', '127.0.0.2', 'localhost.evil.example']) {
      let err: unknown;
      try {
        verifyChainAgainstPin(chain, s.server.pki.caPin, host);
      } catch (e) {
        err = e;
      }
      expect(err, host).toBeInstanceOf(RollcallError);
      expect((err as RollcallError).code, host).toBe('TLS_NAME_MISMATCH');
    }
  });

  it('refuses a certificate outside its validity period', async () => {
    const s = await h.startServer();
    const chain = await presentedChain(s);
    const later = new Date(Date.now() + 400 * 86_400_000);
    expect(() => verifyChainAgainstPin(chain, s.server.pki.caPin, '127.0.0.1', later)).toThrow(expect.objectContaining({ code: 'TLS_EXPIRED' }));
  });

  it('tries the servers in order: an unreachable one hands over to the next, and all are kept for failover', async () => {
    const s = await h.startServer();
    const state = new AgentState(await freshStateDir());
    const dead = `127.0.0.1:${await closedPort()}`;
    const identity = await enrollAgent(options(s, state, await s.enrollmentToken('Customers/Acme'), { servers: [dead, s.agentAddress] }));
    expect(identity.servers).toEqual([dead, s.agentAddress]);
    expect(await s.server.storage.devices.get(identity.deviceId)).toBeDefined();
  });

  it("stops at a server's refusal of the token instead of trying the next, and names every failure when none answers", async () => {
    const s = await h.startServer();
    const dead = `127.0.0.1:${await closedPort()}`;
    const refused = await rejection(enrollAgent(options(s, new AgentState(await freshStateDir()), 'not-a-token', { servers: [s.agentAddress, dead] })));
    expect(refused.retryable).toBe(false);
    expect(refused.message).toMatch(/^enrollment refused/);
    expect(refused.message).not.toContain(dead);

    const otherDead = `127.0.0.1:${await closedPort()}`;
    const none = await rejection(enrollAgent(options(s, new AgentState(await freshStateDir()), 'whatever', { servers: [dead, otherDead] })));
    expect(none.message).toContain(`no server enrolled this computer (${dead}: `);
    expect(none.message).toContain(`${otherDead}: `);
    expect(none.retryable).toBe(true);
  });
});
