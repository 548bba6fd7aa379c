import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { closedPort } from '../../agent/test/net-fixtures.js';
import { requestJson } from '../../common/https-json.js';
import { PORTCHECK_REPORT_PATH } from '../../common/portcheck/report-api.js';
import type { PortcheckReport } from '../../common/portcheck/types.js';
import { Harness, type TestServer } from '../../test/support/harness.js';
import { CLI_EXIT, rollcallMain } from '../cli.js';
import { PORTCHECK_EXIT } from '../cli-portcheck.js';

const h = new Harness();
afterEach(() => h.cleanup());

async function run(argv: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await rollcallMain(argv, env, { out: (t) => (out += `${t}\n`), err: (t) => (err += `${t}\n`) });
  return { code, out, err };
}

/** Posts a body to the report route with optional headers. */
function postReport(s: TestServer, body: unknown, headers: Record<string, string> = {}) {
  return requestJson({ host: '127.0.0.1', port: s.server.agentPort, path: PORTCHECK_REPORT_PATH, method: 'POST', body, ca: s.server.pki.ca.certPem, headers });
}

/** A minimal valid report of one passing agent port. */
function smallReport(port: number): PortcheckReport {
  return {
    host: '127.0.0.1',
    startedAt: new Date().toISOString(),
    durationMs: 5,
    addresses: ['127.0.0.1'],
    ok: true,
    ports: [{ host: '127.0.0.1', port, role: 'agent', required: true, ok: true, steps: [{ step: 'tcp', ok: true, ms: 1, detail: 'connected' }] }],
  };
}

describe('rollcall portcheck', () => {
  it("exits 0 when every port passes, trusting the data directory's CA, and shows each step with its timing", async () => {
    const s = await h.startServer();
    const r = await run(['portcheck', '127.0.0.1', '--port', `${s.server.agentPort}:agent`, '--port', `${s.server.consolePort}:console`, '--data-dir', s.dataDir]);
    expect(r.err).toBe('');
    expect(r.code).toBe(PORTCHECK_EXIT.OK);
    expect(r.out).toMatch(/^127\.0\.0\.1 \(127\.0\.0\.1\): OK, all 2 ports passed in \d+ ms/);
    expect(r.out).toContain(`port ${s.server.agentPort} (agent, required): ok`);
    expect(r.out).toContain(`port ${s.server.consolePort} (console, required): ok`);
    expect(r.out).toMatch(/ {2}✓ identify +\d+ ms {2}Rollcall .*agent listener/);
    expect(r.out).toMatch(/ {2}✓ websocket +\d+ ms {2}reached; no agent certificate to go further/);
  });

  it('prints the report as JSON and exits 9 when a required port fails, with the class and remedy', async () => {
    const s = await h.startServer();
    const closed = await closedPort();
    const r = await run(['portcheck', '127.0.0.1', '--port', String(s.server.agentPort), '--port', String(closed), '--ca-pin', s.server.pki.caPin, '--json', '--timeout', '2s']);
    expect(r.code).toBe(PORTCHECK_EXIT.PORTCHECK_FAILED);
    const report = JSON.parse(r.out) as PortcheckReport;
    expect(Object.keys(report).sort()).toEqual(['addresses', 'durationMs', 'host', 'ok', 'ports', 'startedAt']);
    expect(report).toMatchObject({ host: '127.0.0.1', ok: false, addresses: ['127.0.0.1'] });
    expect(report.ports.map((p) => [p.port, p.role, p.required, p.ok])).toEqual([
      [s.server.agentPort, 'agent', true, true],
      [closed, 'agent', true, false],
    ]);
    expect(report.ports[1]!.failure).toMatchObject({ class: 'TCP_REFUSED', step: 'tcp', remedy: expect.stringMatching(/^Connection refused/) });
    const human = await run(['portcheck', '127.0.0.1', '--port', String(closed), '--ca-pin', s.server.pki.caPin]);
    expect(human.out).toContain(`port ${closed} (agent, required): FAILED: TCP_REFUSED`);
    expect(human.out).toMatch(/ {2}✗ tcp +\d+ ms {2}127\.0\.0\.1:\d+: connection refused {2}\[TCP_REFUSED\]\n {4}remedy: Connection refused/);
  });

  it('exits 2 for usage errors: no host, no trust, a bad port, a bad pin, --report without a token', async () => {
    const pin = `sha256:${'a'.repeat(64)}`;
    const cases = [
      ['portcheck'],
      ['portcheck', '127.0.0.1', '--data-dir', path.join(await h.tempDir(), 'missing')],
      ['portcheck', '127.0.0.1', '--port', 'http', '--ca-pin', pin],
      ['portcheck', '127.0.0.1', '--ca-pin', 'sha256:nope'],
      ['portcheck', '127.0.0.1', '--ca-pin', pin, '--report'],
      ['portcheck', '127.0.0.1', '--ca-pin', pin, '--timeout', 'soon'],
    ];
    for (const argv of cases) expect((await run(argv)).code, argv.join(' ')).toBe(CLI_EXIT.USAGE);
  });

  it("--report stores one observation per port for the token's group, from the source address, without using the token up", async () => {
    const s = await h.startServer();
    const token = await s.enrollmentToken('Customers/Acme');
    const groupId = (await s.server.storage.enrollTokens.findBySecret(token))!.groupId;
    const closed = await closedPort();
    const r = await run(['portcheck', '127.0.0.1', '--port', `${s.server.agentPort}:agent`, '--port', String(closed), '--ca-pin', s.server.pki.caPin, '--report'], {
      ROLLCALL_ENROLL_TOKEN: token,
    });
    expect(r.code).toBe(PORTCHECK_EXIT.PORTCHECK_FAILED);
    expect(r.out).toContain('report stored on the server: 2 observations');
    const stored = await s.server.storage.evidence.observationsSince(0);
    expect(stored.map((o) => [o.source, o.groupId, o.deviceId, o.port, o.role, o.ok, o.failureClass, o.step, o.sourceAddress])).toEqual([
      ['portcheck', groupId, null, s.server.agentPort, 'agent', true, null, null, '127.0.0.1'],
      ['portcheck', groupId, null, closed, 'agent', false, 'TCP_REFUSED', 'tcp', '127.0.0.1'],
    ]);
    expect(stored[1]!.detail).toMatch(/connection refused/);
    expect((await s.server.storage.enrollTokens.findBySecret(token))!.uses).toBe(0);
    expect(s.logs.find((l) => l.msg === 'portcheck report stored')).toMatchObject({ groupId, ports: 2, failed: 1, address: '127.0.0.1' });
    expect(JSON.stringify(s.logs)).not.toContain(token);
  });

  it('exits 10 when the check passes but the server refuses the token, and the server logs the refusal without the token', async () => {
    const s = await h.startServer();
    const wrong = `rce_${'x'.repeat(43)}`;
    const r = await run(['portcheck', '127.0.0.1', '--port', String(s.server.agentPort), '--data-dir', s.dataDir, '--report', '--token', wrong, '--json']);
    expect(r.code).toBe(PORTCHECK_EXIT.REPORT_FAILED);
    expect(JSON.parse(r.out)).toMatchObject({ ok: true });
    expect(r.err).toMatch(/^report not stored: the enrollment token is not known to this server \[PORTCHECK_TOKEN_INVALID\]/);
    expect(s.logs.find((l) => l.msg === 'portcheck report refused')).toMatchObject({ reason: 'PORTCHECK_TOKEN_INVALID', address: '127.0.0.1' });
    expect(JSON.stringify(s.logs)).not.toContain(wrong);
    expect(await s.server.storage.evidence.observationsSince(0)).toEqual([]);
  });
});

describe('POST /v1/portcheck/report', () => {
  it('refuses a missing, revoked or expired token with 401 and an oversized or malformed body with 400, and takes a used-up token', async () => {
    let clock = Date.now();
    const s = await h.startServer({}, { now: () => clock });
    const report = smallReport(s.server.agentPort);
    expect(await postReport(s, report)).toMatchObject({ status: 401, body: { error: { code: 'PORTCHECK_TOKEN_MISSING' } } });
    const revoked = await s.enrollmentToken();
    const id = (await s.server.storage.enrollTokens.findBySecret(revoked))!.id;
    await s.api('POST', `/api/v1/enrollment-tokens/${id}/revoke`, {});
    expect(await postReport(s, report, { authorization: `Bearer ${revoked}` })).toMatchObject({ status: 401, body: { error: { code: 'PORTCHECK_TOKEN_INVALID', message: 'the enrollment token was revoked' } } });
    const expiring = await s.enrollmentToken('Customers/Soon', { ttlSec: 60 });
    const good = await s.enrollmentToken('Customers/Other', { maxUses: 1 });
    await s.enrollAgent({ token: good }); // its only use
    clock += 120_000;
    expect(await postReport(s, report, { authorization: `Bearer ${expiring}` })).toMatchObject({ status: 401, body: { error: { code: 'PORTCHECK_TOKEN_INVALID', message: 'the enrollment token has expired' } } });
    const auth = { authorization: `Bearer ${good}` };
    const tooMany = { ...report, ports: Array.from({ length: 65 }, () => report.ports[0]!) };
    expect(await postReport(s, tooMany, auth)).toMatchObject({ status: 400, body: { error: { code: 'BAD_REQUEST' } } });
    expect(await postReport(s, { ...report, extra: 1 }, auth)).toMatchObject({ status: 400 });
    expect(await postReport(s, report, auth)).toMatchObject({ status: 201, body: { stored: 1 } });
    expect(await postReport(s, report, auth)).toMatchObject({ status: 201, body: { stored: 1 } });
  });

  it('answers 429 to an address after too many refused reports', async () => {
    const s = await h.startServer({ enrollFailuresPerWindow: 2 });
    const report = smallReport(s.server.agentPort);
    const bad = { authorization: `Bearer rce_${'y'.repeat(43)}` };
    expect((await postReport(s, report, bad)).status).toBe(401);
    expect((await postReport(s, report, bad)).status).toBe(401);
    const blocked = await postReport(s, report, bad);
    expect(blocked).toMatchObject({ status: 429, body: { error: { code: 'RATE_LIMITED' } } });
    expect(blocked.headers['retry-after']).toMatch(/^\d+$/);
  });
});
