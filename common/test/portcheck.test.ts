import dns from 'node:dns';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { closedPort, nxdomainResolver, silentTcpServer, tlsServer } from '../../agent/test/net-fixtures.js';
import { Harness, readTestCa } from '../../test/support/harness.js';
import { runPortcheck, type PortcheckOptions } from '../portcheck/engine.js';
import { privateRange } from '../portcheck/dns-step.js';
import type { PortResult } from '../portcheck/types.js';
import { issueServerCert, spkiPin } from '../pki.js';

const h = new Harness();
afterEach(() => h.cleanup());

const ONE_AGENT_PORT = (port: number): PortcheckOptions['ports'] => [{ port, role: 'agent', required: true }];

/** Our test CA's certificate as trust. */
async function ourTrust(): Promise<{ caPem: string }> {
  return { caPem: (await readTestCa('ca')).certPem };
}

/** A plain HTTP service (no TLS) on 127.0.0.1. */
async function plainHttpService(): Promise<number> {
  const server = http.createServer((_req, res) => res.end('hello from a web server\n'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  h.defer(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return (server.address() as AddressInfo).port;
}

/** A TLS server on 127.0.0.1 presenting `chain` (leaf first) that answers nothing after the handshake. */
function tlsWith(keyPem: string, chain: string[]): Promise<number> {
  return tlsServer(h, { key: keyPem, cert: chain.join('') });
}

function only(report: { ports: readonly PortResult[] }): PortResult {
  expect(report.ports).toHaveLength(1);
  return report.ports[0]!;
}

const stepNames = (p: PortResult): string[] => p.steps.map((s) => s.step);

describe('runPortcheck against a real Rollcall server', () => {
  it('passes every step on both listeners, with timings, and reaches the agent channel without a certificate', async () => {
    const s = await h.startServer();
    const report = await runPortcheck({
      host: '127.0.0.1',
      ports: [
        { port: s.server.agentPort, role: 'agent', required: true },
        { port: s.server.consolePort, role: 'console', required: false },
      ],
      trust: { pin: s.server.pki.caPin },
      expectInstanceId: s.server.storage.instanceId,
    });
    expect(report.ok).toBe(true);
    expect(report.addresses).toEqual(['127.0.0.1']);
    const [agent, console] = report.ports;
    expect(stepNames(agent!)).toEqual(['dns', 'tcp', 'tls', 'identify', 'websocket']);
    expect(stepNames(console!)).toEqual(['dns', 'tcp', 'tls', 'identify']);
    for (const step of [...agent!.steps, ...console!.steps]) {
      expect(step.ok, step.detail).toBe(true);
      expect(step.ms).toBeGreaterThanOrEqual(0);
    }
    expect(agent!.steps[3]!.detail).toContain(`instance ${s.server.storage.instanceId}, agent listener`);
    expect(agent!.steps[4]!.detail).toBe('reached; no agent certificate to go further');
    expect(console!.steps[3]!.detail).toContain('console listener');
    expect(report.durationMs).toBeGreaterThanOrEqual(0);
  });

  it("completes the diagnose round trip with the agent's certificate and leaves no failure", async () => {
    const s = await h.startServer();
    const agent = await s.enrollAgent();
    const report = await runPortcheck({
      host: 'localhost',
      ports: ONE_AGENT_PORT(s.server.agentPort),
      trust: { caPem: agent.caPem },
      clientCert: { certPem: agent.certPem, keyPem: agent.keyPem },
    });
    const port = only(report);
    expect(port.failure).toBeUndefined();
    expect(port.steps[4]!.detail).toMatch(new RegExp(`^diagnose round trip in \\d+ ms: instance ${s.server.storage.instanceId}, device ${agent.deviceId}, seen from 127\\.0\\.0\\.1$`));
  });

  it("reports a revoked agent's certificate as WS_REJECTED with the server's reason", async () => {
    const s = await h.startServer();
    const agent = await s.enrollAgent();
    expect((await s.api('POST', `/api/v1/devices/${agent.deviceId}/revoke`, {})).status).toBe(200);
    const port = only(
      await runPortcheck({ host: '127.0.0.1', ports: ONE_AGENT_PORT(s.server.agentPort), trust: { caPem: agent.caPem }, clientCert: { certPem: agent.certPem, keyPem: agent.keyPem } }),
    );
    expect(port.failure).toMatchObject({ class: 'WS_REJECTED', step: 'websocket' });
    expect(port.failure!.message).toContain('HTTP 403 DEVICE_REVOKED');
    expect(port.failure!.remedy).toMatch(/re-enrolled/);
  });

  it('reports the console listener answering on the agent port as WRONG_SERVICE', async () => {
    const s = await h.startServer();
    const port = only(await runPortcheck({ host: '127.0.0.1', ports: ONE_AGENT_PORT(s.server.consolePort), trust: { pin: s.server.pki.caPin } }));
    expect(port.failure).toMatchObject({ class: 'WRONG_SERVICE', step: 'identify' });
    expect(port.failure!.message).toMatch(/^the console listener answered on the agent port/);
    expect(stepNames(port)).toEqual(['dns', 'tcp', 'tls', 'identify']);
  });

  it('reports another Rollcall instance as WRONG_SERVICE when the expected instance is known', async () => {
    const s = await h.startServer();
    const port = only(
      await runPortcheck({ host: '127.0.0.1', ports: ONE_AGENT_PORT(s.server.agentPort), trust: { pin: s.server.pki.caPin }, expectInstanceId: 'srv_someone_else' }),
    );
    expect(port.failure).toMatchObject({ class: 'WRONG_SERVICE' });
    expect(port.failure!.message).toContain(`another Rollcall server answers (instance ${s.server.storage.instanceId}; expected srv_someone_else)`);
  });

  it('flags a private answer behind a public name as DNS_PRIVATE and still runs and passes every other step', async () => {
    const s = await h.startServer({ publicHosts: ['rollcall.example.test'] });
    const report = await runPortcheck({
      host: 'rollcall.example.test',
      ports: ONE_AGENT_PORT(s.server.agentPort),
      trust: { pin: s.server.pki.caPin },
      resolve: async () => ['127.0.0.1', '10.1.2.3'],
    });
    const port = only(report);
    expect(report.ok).toBe(false);
    expect(report.addresses).toEqual(['127.0.0.1', '10.1.2.3']);
    expect(port.failure).toMatchObject({ class: 'DNS_PRIVATE', step: 'dns' });
    expect(port.failure!.message).toContain('10.1.2.3 (10.0.0.0/8 private)');
    expect(port.steps.slice(1).map((st) => [st.step, st.ok])).toEqual([
      ['tcp', true],
      ['tls', true],
      ['identify', true],
      ['websocket', true],
    ]);
    expect(port.steps[1]!.detail).toBe(`connected to 127.0.0.1:${s.server.agentPort}`);
    const allowed = only(
      await runPortcheck({ host: 'rollcall.example.test', ports: ONE_AGENT_PORT(s.server.agentPort), trust: { pin: s.server.pki.caPin }, resolve: async () => ['127.0.0.1', '10.1.2.3'], allowPrivate: true }),
    );
    expect(allowed.ok).toBe(true);
    expect(allowed.steps[0]!.detail).toContain('private answers allowed');
  });
});

describe('runPortcheck failure classes', () => {
  it('reports a closed port as TCP_REFUSED and skips the later steps', async () => {
    const port = only(await runPortcheck({ host: '127.0.0.1', ports: ONE_AGENT_PORT(await closedPort()), trust: await ourTrust() }));
    expect(port.failure).toMatchObject({ class: 'TCP_REFUSED', step: 'tcp' });
    expect(port.failure!.message).toMatch(/connection refused$/);
    expect(stepNames(port)).toEqual(['dns', 'tcp']);
  });

  it('reports a port that accepts and never answers TLS as TLS_HANDSHAKE_FAILED after the step timeout', async () => {
    const port = only(await runPortcheck({ host: '127.0.0.1', ports: ONE_AGENT_PORT(await silentTcpServer(h)), trust: await ourTrust(), stepTimeoutMs: 300 }));
    expect(port.failure).toMatchObject({ class: 'TLS_HANDSHAKE_FAILED', step: 'tls' });
    expect(port.failure!.message).toBe('the port accepted the connection, but no TLS answer came within 300 ms');
    expect(port.steps[2]!.ms).toBeGreaterThanOrEqual(290);
  });

  it('reports a plain HTTP service as WRONG_SERVICE', async () => {
    const port = only(await runPortcheck({ host: '127.0.0.1', ports: ONE_AGENT_PORT(await plainHttpService()), trust: await ourTrust() }));
    expect(port.failure).toMatchObject({ class: 'WRONG_SERVICE', step: 'tls' });
    expect(port.failure!.message).toMatch(/^no TLS here: a plain HTTP service answers \("HTTP\/1\.1 200 OK"\)$/);
  });

  it('reports a certificate from another CA for another name as TLS_UNTRUSTED', async () => {
    const foreign = await readTestCa('foreign-ca');
    const leaf = issueServerCert(foreign, { hosts: ['intranet.example.test'] });
    const port = only(await runPortcheck({ host: '127.0.0.1', ports: ONE_AGENT_PORT(await tlsWith(leaf.keyPem, [leaf.certPem, foreign.certPem])), trust: { pin: spkiPin((await ourTrust()).caPem) } }));
    expect(port.failure).toMatchObject({ class: 'TLS_UNTRUSTED', step: 'tls' });
    expect(port.failure!.message).toContain('issued by "Someone Else CA": not our Rollcall CA');
  });

  it('reports a leaf from another CA whose issuer was not sent as TLS_UNTRUSTED, even when it names the host', async () => {
    const foreign = await readTestCa('foreign-ca');
    const leaf = issueServerCert(foreign, { hosts: ['127.0.0.1'] });
    const port = only(await runPortcheck({ host: '127.0.0.1', ports: ONE_AGENT_PORT(await tlsWith(leaf.keyPem, [leaf.certPem])), trust: await ourTrust() }));
    expect(port.failure).toMatchObject({ class: 'TLS_UNTRUSTED' });
  });

  it("reports another CA's certificate for the dialled name, sent with that CA, as PROXY_INTERCEPTED", async () => {
    const foreign = await readTestCa('foreign-ca');
    const leaf = issueServerCert(foreign, { hosts: ['localhost'] });
    const port = only(await runPortcheck({ host: 'localhost', ports: ONE_AGENT_PORT(await tlsWith(leaf.keyPem, [leaf.certPem, foreign.certPem])), trust: await ourTrust() }));
    expect(port.failure).toMatchObject({ class: 'PROXY_INTERCEPTED', step: 'tls' });
    expect(port.failure!.message).toContain('was made for localhost by another certificate authority');
    expect(port.failure!.remedy).toMatch(/TLS inspection/);
  });

  it('reports an expired server certificate as TLS_EXPIRED', async () => {
    const ca = await readTestCa('ca');
    const leaf = issueServerCert(ca, { hosts: ['127.0.0.1'], now: new Date(Date.now() - 30 * 86_400_000), validityDays: 1 });
    const port = only(await runPortcheck({ host: '127.0.0.1', ports: ONE_AGENT_PORT(await tlsWith(leaf.keyPem, [leaf.certPem, ca.certPem])), trust: { caPem: ca.certPem } }));
    expect(port.failure).toMatchObject({ class: 'TLS_EXPIRED', step: 'tls' });
    expect(port.failure!.message).toMatch(/not valid now/);
  });

  it('reports a certificate that does not name the host as TLS_NAME_MISMATCH', async () => {
    const ca = await readTestCa('ca');
    const leaf = issueServerCert(ca, { hosts: ['other.example.test'] });
    const port = only(await runPortcheck({ host: '127.0.0.1', ports: ONE_AGENT_PORT(await tlsWith(leaf.keyPem, [leaf.certPem])), trust: { caPem: ca.certPem } }));
    expect(port.failure).toMatchObject({ class: 'TLS_NAME_MISMATCH', step: 'tls' });
    expect(port.failure!.message).toContain('for other.example.test');
  });

  it('reports a name that does not resolve as DNS_NXDOMAIN, from a real resolver answer, on every port', async () => {
    const server = await nxdomainResolver(h);
    const resolve = async (host: string): Promise<string[]> => {
      const resolver = new dns.promises.Resolver({ timeout: 2000, tries: 1 });
      resolver.setServers([server]);
      return resolver.resolve4(host);
    };
    const report = await runPortcheck({
      host: 'nothing-here.example.test',
      ports: [
        { port: 2222, role: 'agent', required: true },
        { port: 8443, role: 'console', required: false },
      ],
      trust: await ourTrust(),
      resolve,
    });
    expect(report.ok).toBe(false);
    expect(report.addresses).toEqual([]);
    for (const port of report.ports) {
      expect(port.failure).toMatchObject({ class: 'DNS_NXDOMAIN', step: 'dns' });
      expect(stepNames(port)).toEqual(['dns']);
    }
  });

  it('reports a resolver that never answers as DNS_TIMEOUT within the step timeout', async () => {
    const report = await runPortcheck({
      host: 'slow.example.test',
      ports: ONE_AGENT_PORT(2222),
      trust: await ourTrust(),
      stepTimeoutMs: 200,
      resolve: () => new Promise<string[]>(() => undefined),
    });
    expect(only(report).failure).toMatchObject({ class: 'DNS_TIMEOUT' });
  });

  it('refuses invalid options with a usage error', async () => {
    await expect(runPortcheck({ host: '127.0.0.1', ports: [], trust: await ourTrust() })).rejects.toMatchObject({ code: 'USAGE' });
    await expect(runPortcheck({ host: '127.0.0.1', ports: ONE_AGENT_PORT(1), trust: { pin: 'nope' } })).rejects.toMatchObject({ code: 'PIN_MALFORMED' });
  });
});

describe('privateRange', () => {
  it('names the non-public ranges and leaves public addresses alone', () => {
    expect(privateRange('172.20.1.1')).toBe('172.16.0.0/12 private');
    expect(privateRange('100.64.0.9')).toBe('100.64.0.0/10 carrier-grade NAT');
    expect(privateRange('::ffff:192.168.1.5')).toBe('192.168.0.0/16 private');
    expect(privateRange('fd12::1')).toBe('fc00::/7 unique local');
    expect(privateRange('169.254.3.4')).toBe('169.254.0.0/16 link-local');
    expect(privateRange('203.0.113.5')).toBeUndefined();
    expect(privateRange('2001:db8::1')).toBeUndefined();
  });
});
