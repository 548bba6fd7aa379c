import { afterEach, describe, expect, it } from 'vitest';
import { createCa } from '../../common/pki.js';
import { Harness, waitFor } from '../../test/support/harness.js';
import { HealthReporter } from '../health/report.js';
import { HealthQueries } from '../storage/health-queries.js';
import { addDevice, customerOf, health, linkedServer, observe, portOf } from './health-support.js';

const h = new Harness();
afterEach(() => h.cleanup());

const MIN = 60_000;

describe('GET /api/v1/health', () => {
  it('shows both listeners bound, every customer with presence counts and last check-in, and no problems when all is well', async () => {
    const { s, group } = await linkedServer(h, { checkinIntervalSec: 30 });
    const agent = await s.enrollAgent({ group: 'Northwind/Contoso/Acme', hostname: 'acme-1' });
    const c = await s.rawClient(agent);
    await c.open();
    c.hello(agent.deviceId);
    await c.waitMessage('welcome');
    c.send({ type: 'checkin', seq: 1, sentAt: Date.now(), uptimeSec: 5 });
    await c.waitMessage('ack');
    await s.server.writer.flush(); // the report reads the devices table, which the check-in journal feeds within a second
    await addDevice(s, group('Acme'), 'dev_acme_late', Date.now() - 70_000);
    await addDevice(s, group('Beta'), 'dev_beta_new', null);

    const r = await health(s);
    expect(r.ports.map((p) => [p.role, p.port, p.listening, p.expectedExposure, p.required])).toEqual([
      ['agent', s.server.agentPort, true, 'public', true],
      ['console', s.server.consolePort, true, 'public', false],
    ]);
    expect(portOf(r, 'agent').observed).toMatchObject({ customersReaching: 1, customersFailing: 0, failingSince: null });
    expect(portOf(r, 'agent').seen.customers).toBe(1);
    expect(r.customers.map((x) => x.name)).toEqual(['Acme', 'Beta', 'Gamma']);
    expect(customerOf(r, 'Acme')).toMatchObject({ groupPath: 'All/Northwind/Contoso/Acme', status: 'not_set_up', dark: false, problems: 0, unreachable: [] });
    expect(customerOf(r, 'Acme').devices).toEqual({ online: 1, late: 1, offline: 0, never_connected: 0, total: 2 });
    expect(Date.parse(customerOf(r, 'Acme').lastCheckinAt!)).toBeGreaterThan(Date.now() - MIN);
    expect(customerOf(r, 'Beta')).toMatchObject({ lastCheckinAt: null, dark: false, devices: { never_connected: 1, total: 1 } });
    expect(r.totals).toMatchObject({ customers: 3, customersWithProblems: 0, total: 3, online: 1, late: 1, never_connected: 1 });
    expect(r.certificates.map((x) => [x.name, x.expiringSoon])).toEqual([
      ['server', false],
      ['ca', false],
    ]);
    expect(r.alerts).toEqual([]);
  });

  it('needs an API token, and records the addresses of console requests as sightings, refused ones included', async () => {
    const s = await h.startServer();
    expect(await s.server.storage.evidence.sightingsSince(0)).toEqual([]);
    expect((await s.api('GET', '/api/v1/health', undefined, null)).status).toBe(401);
    const seen = await waitFor(async () => (await s.server.storage.evidence.sightingsSince(0)).filter((x) => x.role === 'console'), 'a console sighting');
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatchObject({ deviceId: null, groupId: null });
    expect(seen[0]!.address).toMatch(/127\.0\.0\.1$/);
    expect(portOf(await health(s), 'console').seen.addresses).toBe(1);
  });

  it('lists a customer whose agents all went offline as dark, problems first', async () => {
    const { s, group } = await linkedServer(h);
    await addDevice(s, group('Gamma'), 'dev_gamma_1', Date.now() - 2 * 86_400_000);
    await addDevice(s, group('Gamma'), 'dev_gamma_2', Date.now() - 3 * 86_400_000);
    await addDevice(s, group('Beta'), 'dev_beta_never', null);
    const r = await health(s);
    expect(r.customers.map((x) => x.name)).toEqual(['Gamma', 'Acme', 'Beta']);
    expect(customerOf(r, 'Gamma')).toMatchObject({ dark: true, problems: 1, devices: { offline: 2, total: 2 } });
    expect(customerOf(r, 'Beta')).toMatchObject({ dark: false, problems: 0 });
  });

  it('calls a failure server-wide when every customer fails at the same step, and customer-wide once another customer gets through', async () => {
    const { s, group, agentPort } = await linkedServer(h);
    const t0 = Date.now() - 30 * MIN;
    await observe(s, { groupId: group('Acme'), deviceId: 'dev_a1', port: agentPort, role: 'agent', ok: false, failureClass: 'TCP_TIMEOUT', step: 'tcp', at: t0 });
    await observe(s, { groupId: group('Beta'), deviceId: null, sourceAddress: '198.51.100.7', port: agentPort, role: 'agent', ok: false, failureClass: 'TCP_REFUSED', step: 'tcp', at: t0 + MIN });
    let r = await health(s);
    const agent = portOf(r, 'agent');
    expect(agent.observed).toMatchObject({ customersReaching: 0, customersFailing: 2, failingSince: new Date(t0).toISOString() });
    expect(agent.serverWide).toMatchObject({ step: 'tcp', since: new Date(t0).toISOString() });
    expect(agent.serverWide!.message).toMatch(/our firewall or the NAT port forwarding/);
    expect(customerOf(r, 'Acme').unreachable).toEqual([expect.objectContaining({ role: 'agent', port: agentPort, required: true, cause: 'server_wide', step: 'tcp', failing: 1, sample: ['dev_a1'] })]);
    expect(customerOf(r, 'Beta').unreachable[0]).toMatchObject({ cause: 'server_wide', sample: ['addr:198.51.100.7'] });

    await observe(s, { groupId: group('Gamma'), deviceId: 'dev_g1', port: agentPort, role: 'agent', ok: true });
    r = await health(s);
    expect(portOf(r, 'agent').serverWide).toBeNull();
    expect(portOf(r, 'agent').observed).toMatchObject({ customersReaching: 1, customersFailing: 2 });
    expect(customerOf(r, 'Beta').unreachable[0]).toMatchObject({ cause: 'customer_wide', failureClass: 'TCP_REFUSED', since: new Date(t0 + MIN).toISOString() });
    expect(customerOf(r, 'Beta').unreachable[0]!.remedy).toMatch(/Connection refused/);
    // The one device of a customer fails: its network is to blame; one of two, and the other unheard from: too little evidence.
    await addDevice(s, group('Acme'), 'dev_a1', null);
    expect(customerOf(await health(s), 'Acme').unreachable[0]).toMatchObject({ cause: 'customer_wide' });
    await addDevice(s, group('Acme'), 'dev_a2', null);
    expect(customerOf(await health(s), 'Acme').unreachable[0]).toMatchObject({ cause: 'unknown' });
  });

  it('calls a failure single-device when other devices of the customer reach the port, and forgets it when the device gets through', async () => {
    const { s, group, agentPort } = await linkedServer(h);
    await observe(s, { groupId: group('Acme'), deviceId: 'dev_a1', port: agentPort, role: 'agent', ok: true });
    await observe(s, { groupId: group('Acme'), deviceId: 'dev_a2', port: agentPort, role: 'agent', ok: false, failureClass: 'PROXY_INTERCEPTED', step: 'tls' });
    let acme = customerOf(await health(s), 'Acme');
    expect(acme.unreachable[0]).toMatchObject({ cause: 'single_device', failing: 1, observers: 2, sample: ['dev_a2'] });
    expect(portOf(await health(s), 'agent').observed).toMatchObject({ customersReaching: 1, customersFailing: 0, customersPartlyFailing: 1 });
    // The same device probes its LAN name in vain but reaches the public one: it reaches the port.
    await observe(s, { groupId: group('Acme'), deviceId: 'dev_a2', port: agentPort, role: 'agent', ok: true, at: Date.now() - 1000 });
    await observe(s, { groupId: group('Acme'), deviceId: 'dev_a2', port: agentPort, role: 'agent', ok: false, failureClass: 'DNS_NXDOMAIN', step: 'dns', host: 'rollcall.lan', at: Date.now() - 500 });
    acme = customerOf(await health(s), 'Acme');
    expect(acme).toMatchObject({ problems: 0, unreachable: [] });
  });

  it('flags a restricted console port that customers reach, by their probes or by their agents addresses on the console', async () => {
    const { s, group, consolePort } = await linkedServer(h, { consoleExposure: 'restricted' });
    await observe(s, { groupId: group('Beta'), deviceId: 'dev_b1', port: consolePort, role: 'console', ok: false, failureClass: 'TCP_TIMEOUT', step: 'tcp' });
    let r = await health(s);
    expect(portOf(r, 'console')).toMatchObject({ expectedExposure: 'restricted', required: false, flag: null });
    expect(customerOf(r, 'Beta')).toMatchObject({ problems: 0, unreachable: [] });

    const at = Date.now() - 5 * MIN;
    await observe(s, { groupId: group('Acme'), deviceId: 'dev_a1', port: consolePort, role: 'console', ok: true, at });
    const ev = s.server.storage.evidence;
    await ev.recordSighting({ role: 'agent', address: '203.0.113.77', deviceId: 'dev_g1', groupId: group('Gamma'), at: Date.now() - 10 * MIN });
    await ev.recordSighting({ role: 'console', address: '203.0.113.77', deviceId: null, groupId: null, at: Date.now() - 2 * MIN });
    r = await health(s);
    expect(portOf(r, 'console').flag).toMatchObject({ kind: 'restricted_port_reachable', customers: 2, since: new Date(at).toISOString() });
    expect(portOf(r, 'console').flag!.message).toBe(`the console port ${consolePort} is declared restricted, but 2 customer networks reach it`);
    expect(portOf(r, 'console').seen.customers).toBe(1);
    expect(customerOf(r, 'Acme').reachesRestricted).toEqual([{ role: 'console', port: consolePort, since: new Date(at).toISOString() }]);
    expect(customerOf(r, 'Gamma').reachesRestricted).toHaveLength(1);
    expect(customerOf(r, 'Beta').reachesRestricted).toEqual([]);
  });

  it('shows a public host that resolves publicly, to a private address only, or not at all, without leaving loopback', async () => {
    const asked: string[] = [];
    const answers: Record<string, string[]> = { 'rollcall.example.test': ['203.0.113.10'], 'lan.example.test': ['10.1.2.3'], 'mixed.example.test': ['203.0.113.11', '192.168.1.5'] };
    const { s } = await linkedServer(
      h,
      { publicHosts: ['rollcall.example.test', 'lan.example.test', 'mixed.example.test', 'gone.example.test', '198.51.100.20'] },
      {
        resolveHost: async (host) => {
          asked.push(host);
          const a = answers[host];
          if (!a) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
          return a;
        },
      },
    );
    const hosts = (await health(s)).publicHosts;
    expect(hosts.map((x) => [x.host, x.failure, x.addresses])).toEqual([
      ['rollcall.example.test', null, ['203.0.113.10']],
      ['lan.example.test', 'DNS_PRIVATE', ['10.1.2.3']],
      ['mixed.example.test', null, ['203.0.113.11', '192.168.1.5']],
      ['gone.example.test', 'DNS_NXDOMAIN', []],
      ['198.51.100.20', null, ['198.51.100.20']],
    ]);
    expect(hosts[1]!.message).toMatch(/resolves only to private addresses \(10\.1\.2\.3 \(10\.0\.0\.0\/8 private\)\)/);
    expect(hosts[2]!.privateAddresses).toEqual(['192.168.1.5 (192.168.0.0/16 private)']);
    expect(asked.sort()).toEqual(['gone.example.test', 'lan.example.test', 'mixed.example.test', 'rollcall.example.test']);
    await health(s);
    expect(asked).toHaveLength(4); // answers are kept for a minute
  });

  it('shows a listener that is no longer bound', async () => {
    const { s } = await linkedServer(h);
    expect(s.server.listeners().map((l) => l.listening)).toEqual([true, true]);
    await s.close();
    expect(s.server.listeners().map((l) => [l.role, l.listening])).toEqual([
      ['agent', false],
      ['console', false],
    ]);
  });
});

describe('the report builder', () => {
  it('lists certificates that expire within 30 days, and counts agents whose certificate does', async () => {
    const { s, group } = await linkedServer(h);
    await addDevice(s, group('Acme'), 'dev_expiring', Date.now(), Date.now() + 10 * 86_400_000);
    await addDevice(s, group('Acme'), 'dev_fine', Date.now());
    const ca = createCa({ commonName: 'Short-lived CA', validityDays: 40, bits: 2048, now: new Date(Date.now() - 20 * 86_400_000) });
    const reporter = new HealthReporter({
      queries: new HealthQueries([s.server.storage.db]),
      consoleExposure: 'public',
      listeners: () => s.server.listeners(),
      certificates: () => [
        { name: 'server', certPem: s.server.pki.server.certPem },
        { name: 'ca', certPem: ca.certPem },
      ],
      publicHosts: { current: async () => [] },
      presenceOf: () => 'online',
      now: Date.now,
    });
    const r = await reporter.build();
    expect(r.certificates[0]).toMatchObject({ name: 'server', expiringSoon: false });
    expect(r.certificates[1]).toMatchObject({ name: 'ca', subject: 'Short-lived CA', expiringSoon: true });
    expect(r.certificates[1]!.daysLeft).toBeGreaterThanOrEqual(19);
    expect(r.certificates[1]!.daysLeft).toBeLessThanOrEqual(20);
    expect(r.agentCertificatesExpiring).toBe(1);
    expect(r.totals.online).toBe(2);
  });
});
