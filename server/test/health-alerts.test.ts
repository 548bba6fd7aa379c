import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { captureLogger, Harness, waitFor } from '../../test/support/harness.js';
import { alertsFrom } from '../health/alerts.js';
import type { CustomerHealth, HealthReport, PortHealth } from '../health/report-types.js';
import { WebhookSender } from '../health/webhook.js';
import { addDevice, linkedServer, observe } from './health-support.js';

const h = new Harness();
afterEach(() => h.cleanup());

const MIN = 60_000;

/** Waits for a promise, failing after a deadline. */
async function within<T>(p: Promise<T>, what: string, ms = 10_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms)));
  try {
    return await Promise.race([p, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

type Reply = 'ok' | 'hang' | number;
interface Payload {
  version: number;
  event: 'raised' | 'resolved';
  instanceId: string;
  alert: { key: string; kind: string; subject: string; message: string; details: Record<string, unknown>; raisedAt: string; resolvedAt: string | null };
}

/** A webhook receiver on 127.0.0.1: `reply(n)` decides the answer to the n-th POST (from 1). */
async function receiver(reply: (n: number) => Reply = () => 'ok'): Promise<{ url: string; posts: Payload[] }> {
  const posts: Payload[] = [];
  const hanging: http.ServerResponse[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const r = reply(posts.push(JSON.parse(Buffer.concat(chunks).toString('utf8')) as Payload));
      if (r === 'hang') hanging.push(res);
      else res.writeHead(r === 'ok' ? 204 : r).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  h.defer(async () => {
    for (const res of hanging) res.destroy();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks/rollcall?token=secret`, posts };
}

describe('alerts', () => {
  it('raises an alert once, logs it and posts it to the webhook, then resolves it once', async () => {
    const hook = await receiver();
    const { s, group } = await linkedServer(h, { alertWebhookUrl: hook.url, alertIntervalMs: 3_600_000, alertGraceMs: 0 });
    const monitor = s.server.health.monitor;
    await addDevice(s, group('Gamma'), 'dev_g1', Date.now() - 2 * 86_400_000);

    const first = await monitor.evaluate();
    expect(first.raised.map((a) => [a.kind, a.subject])).toEqual([['customer_dark', 'Gamma']]);
    await waitFor(() => hook.posts.length === 1, 'the raised alert at the webhook');
    expect(hook.posts[0]).toMatchObject({ version: 1, event: 'raised', instanceId: s.server.storage.instanceId, alert: { kind: 'customer_dark', key: `customer_dark:${group('Gamma')}`, resolvedAt: null } });
    expect(hook.posts[0]!.alert.message).toMatch(/every agent of customer "Gamma" is offline/);
    const line = s.logs.find((l) => l.alert === 'customer_dark');
    expect(line).toMatchObject({ level: 40, key: `customer_dark:${group('Gamma')}` });
    expect(JSON.stringify(s.logs)).not.toContain('token=secret');
    expect((await s.api<{ alerts: { kind: string }[] }>('GET', '/api/v1/health')).body.alerts.map((a) => a.kind)).toEqual(['customer_dark']);

    expect((await monitor.evaluate()).raised).toEqual([]);
    await s.server.storage.db.run('UPDATE devices SET last_checkin_at = ? WHERE id = ?', [Date.now(), 'dev_g1']);
    const fixed = await monitor.evaluate();
    expect(fixed.resolved.map((a) => a.kind)).toEqual(['customer_dark']);
    await waitFor(() => hook.posts.length === 2, 'the resolution at the webhook');
    expect(hook.posts[1]).toMatchObject({ event: 'resolved', alert: { kind: 'customer_dark' } });
    expect(hook.posts[1]!.alert.resolvedAt).not.toBeNull();
    expect(await monitor.evaluate()).toEqual({ raised: [], resolved: [] });
    expect(hook.posts).toHaveLength(2);
  });

  it('evaluates on its own timer', async () => {
    const hook = await receiver();
    const { s, group } = await linkedServer(h, { alertWebhookUrl: hook.url, alertIntervalMs: 50, alertGraceMs: 0 });
    await addDevice(s, group('Acme'), 'dev_a1', Date.now() - 86_400_000);
    await waitFor(() => hook.posts.find((p) => p.alert.kind === 'customer_dark'), 'a timed evaluation to post an alert');
  });

  it('waits out the grace period after start before calling a customer dark, while agents reconnect', async () => {
    let clock = Date.now();
    const { s, group } = await linkedServer(h, { alertIntervalMs: 3_600_000, alertGraceMs: 10 * MIN }, { now: () => clock });
    await addDevice(s, group('Gamma'), 'dev_g1', clock - 2 * 86_400_000);
    expect((await s.server.health.monitor.evaluate()).raised).toEqual([]);
    clock += 10 * MIN;
    expect((await s.server.health.monitor.evaluate()).raised.map((a) => a.kind)).toEqual(['customer_dark']);
  });

  it('alerts a required port only after it failed for the configured minutes, once for all customers while the cause is server-wide', async () => {
    let clock = Date.now();
    const { s, group, agentPort } = await linkedServer(h, { portAlertAfterMin: 15, alertIntervalMs: 3_600_000 }, { now: () => clock });
    const monitor = s.server.health.monitor;
    const fail = (customer: 'Acme' | 'Beta', n: number) =>
      observe(s, { groupId: group(customer), deviceId: `dev_${customer}_${n}`, port: agentPort, role: 'agent', ok: false, failureClass: 'TCP_TIMEOUT', step: 'tcp', at: clock - 10 * MIN });
    for (const c of ['Acme', 'Beta'] as const) for (const n of [1, 2]) await fail(c, n);
    expect((await monitor.evaluate()).raised).toEqual([]);

    clock += 6 * MIN;
    const raised = (await monitor.evaluate()).raised;
    expect(raised.map((a) => a.key)).toEqual(['port_unreachable:all:agent']);
    expect(raised[0]!.details).toMatchObject({ cause: 'server_wide', customers: 2, step: 'tcp', failureClass: 'TCP_TIMEOUT' });

    await observe(s, { groupId: group('Gamma'), deviceId: 'dev_g1', port: agentPort, role: 'agent', ok: true, at: clock });
    const next = await monitor.evaluate();
    expect(next.raised.map((a) => a.key).sort()).toEqual([`port_unreachable:${group('Acme')}:agent`, `port_unreachable:${group('Beta')}:agent`].sort());
    expect(next.raised[0]!.details).toMatchObject({ cause: 'customer_wide', role: 'agent', port: agentPort });
    expect(next.resolved.map((a) => a.key)).toEqual(['port_unreachable:all:agent']);
  });

  it('never holds up a check-in while the webhook hangs', async () => {
    const hook = await receiver(() => 'hang');
    const { s, group } = await linkedServer(h, { alertWebhookUrl: hook.url, alertIntervalMs: 3_600_000, alertGraceMs: 0 });
    await addDevice(s, group('Gamma'), 'dev_g1', Date.now() - 2 * 86_400_000);
    const agent = await s.enrollAgent({ group: 'Northwind/Contoso/Acme' });
    const c = await s.rawClient(agent);
    await c.open();
    c.hello(agent.deviceId);
    await c.waitMessage('welcome');

    const started = Date.now();
    expect((await s.server.health.monitor.evaluate()).raised).toHaveLength(1);
    await waitFor(() => hook.posts.length === 1, 'the webhook to receive the hanging POST');
    c.send({ type: 'checkin', seq: 1, sentAt: Date.now(), uptimeSec: 1 });
    expect(await c.waitMessage('ack', 2000)).toEqual({ type: 'ack', seq: 1 });
    expect(Date.now() - started).toBeLessThan(2000);
    expect(s.server.health.webhook!.stats).toMatchObject({ delivered: 0, failed: 0 });
  });
});

describe('the webhook sender', () => {
  const sender = (url: string, extra: Partial<ConstructorParameters<typeof WebhookSender>[0]> = {}) => {
    const { log, lines } = captureLogger();
    const w = new WebhookSender({ url, log, backoff: { baseMs: 20, capMs: 100 }, random: () => 0.5, timeoutMs: 2000, ...extra });
    h.defer(() => w.close());
    return { w, lines };
  };

  it('retries a failing receiver with backoff until it accepts, in order', async () => {
    const hook = await receiver((n) => (n <= 2 ? 503 : 'ok'));
    const { w, lines } = sender(hook.url);
    w.send({ n: 1 });
    w.send({ n: 2 });
    await within(w.idle(), 'the queue to drain');
    expect(hook.posts).toEqual([{ n: 1 }, { n: 1 }, { n: 1 }, { n: 2 }]);
    expect(w.stats).toEqual({ delivered: 2, failed: 0, dropped: 0, attempts: 4 });
    const warnings = lines.filter((l) => l.msg === 'alert webhook failed');
    expect(warnings.map((l) => [l.attempt, l.reason, l.willRetry])).toEqual([
      [1, 'HTTP 503', true],
      [2, 'HTTP 503', true],
    ]);
    expect(warnings[0]!.target).toBe(new URL(hook.url).origin);
  });

  it('gives up after its attempts, and does not retry an answer that says the request is wrong', async () => {
    const always500 = await receiver(() => 500);
    const { w, lines } = sender(always500.url, { maxAttempts: 3 });
    w.send({ n: 1 });
    await within(w.idle(), 'the queue to drain');
    expect(w.stats).toMatchObject({ delivered: 0, failed: 1, attempts: 3 });
    expect(lines.find((l) => l.msg === 'alert webhook gave up on an alert')).toMatchObject({ level: 50, attempts: 3 });

    const badRequest = await receiver(() => 400);
    const second = sender(badRequest.url, { maxAttempts: 3 });
    second.w.send({ n: 1 });
    await within(second.w.idle(), 'the queue to drain');
    expect(second.w.stats).toMatchObject({ failed: 1, attempts: 1 });
  });

  it('times out a hanging receiver, keeps its queue bounded by dropping the oldest, and drops the rest on close', async () => {
    const hook = await receiver(() => 'hang');
    const { w } = sender(hook.url, { timeoutMs: 200, maxAttempts: 2, maxQueue: 2 });
    for (let n = 1; n <= 4; n += 1) expect(w.send({ n })).toBe(true);
    expect(w.stats.dropped).toBe(1); // n = 1 is in flight; 2 was dropped for 4
    await waitFor(() => hook.posts.length >= 2, 'the first payload to time out and be retried');
    expect(hook.posts.slice(0, 2)).toEqual([{ n: 1 }, { n: 1 }]);
    await within(w.close(), 'the sender to close');
    expect(w.stats.dropped).toBeGreaterThanOrEqual(2);
    expect(w.send({ n: 5 })).toBe(false);
  });
});

describe('alert conditions', () => {
  const port = (over: Partial<PortHealth> = {}): PortHealth => ({
    role: 'console',
    port: 8443,
    host: '0.0.0.0',
    listening: true,
    expectedExposure: 'restricted',
    required: false,
    observed: { customersReaching: 0, customersFailing: 0, customersPartlyFailing: 0, failingSince: null },
    seen: { addresses: 0, customers: 0 },
    serverWide: null,
    flag: null,
    ...over,
  });
  const customer = (over: Partial<CustomerHealth>): CustomerHealth => ({
    groupId: 'grp_x',
    name: 'X',
    groupPath: 'All/X',
    status: 'normal',
    devices: { online: 0, late: 0, offline: 2, never_connected: 0, total: 2 },
    lastCheckinAt: null,
    dark: false,
    unreachable: [],
    reachesRestricted: [],
    problems: 1,
    ...over,
  });
  const report = (over: Partial<HealthReport>): HealthReport => ({
    generatedAt: new Date().toISOString(),
    windowHours: 24,
    ports: [],
    publicHosts: [],
    certificates: [],
    agentCertificatesExpiring: 0,
    totals: { online: 0, late: 0, offline: 0, never_connected: 0, total: 0, customers: 0, customersWithProblems: 0 },
    customers: [],
    ...over,
  });
  const unreachable = (cause: 'single_device' | 'customer_wide', since: number) => ({
    role: 'agent' as const,
    port: 2222,
    required: true,
    since: new Date(since).toISOString(),
    cause,
    step: 'tcp',
    failureClass: 'TCP_TIMEOUT',
    failing: 1,
    observers: 3,
    sample: ['dev_1'],
    message: 'm',
    remedy: null,
  });

  it('raises restricted-port and certificate alerts, and none for single devices, fresh failures or unlinked customers', () => {
    const now = Date.now();
    const alerts = alertsFrom(
      report({
        ports: [port({ flag: { kind: 'restricted_port_reachable', customers: 3, since: new Date(now).toISOString(), message: 'reached' } })],
        certificates: [
          { name: 'server', subject: 'rollcall', notAfter: new Date(now + 300 * 86_400_000).toISOString(), daysLeft: 300, expiringSoon: false },
          { name: 'ca', subject: 'Rollcall CA', notAfter: new Date(now + 12 * 86_400_000).toISOString(), daysLeft: 12, expiringSoon: true },
        ],
        customers: [
          customer({ groupId: 'g1', name: 'One', unreachable: [unreachable('single_device', now - 60 * MIN)] }),
          customer({ groupId: 'g2', name: 'Two', unreachable: [unreachable('customer_wide', now - 5 * MIN)] }),
          customer({ groupId: 'g3', name: 'Three', unreachable: [unreachable('customer_wide', now - 20 * MIN)] }),
          customer({ groupId: 'g4', name: 'Four', status: 'unlinked', dark: true }),
          customer({ groupId: 'g5', name: 'Five', dark: true }),
        ],
      }),
      { portAlertAfterMs: 15 * MIN, now, darkAlerts: true },
    );
    expect(alerts.map((a) => a.key)).toEqual(['restricted_port_reachable:console', 'port_unreachable:g3:agent', 'customer_dark:g5', 'certificate_expiring:ca']);
    expect(alerts[3]!.message).toMatch(/^the CA certificate \(Rollcall CA\) expires on .* \(in 12 days\)$/);
  });

  it('raises one alert instead of one per customer when many customers go dark at once', () => {
    const now = Date.now();
    const dark = Array.from({ length: 6 }, (_, i) => customer({ groupId: `g${i}`, name: `C${i}`, dark: true }));
    const fine = Array.from({ length: 10 }, (_, i) => customer({ groupId: `f${i}`, name: `F${i}`, problems: 0, devices: { online: 1, late: 0, offline: 0, never_connected: 0, total: 1 } }));
    const many = alertsFrom(report({ customers: [...dark, ...fine] }), { portAlertAfterMs: 15 * MIN, now, darkAlerts: true });
    expect(many.map((a) => a.key)).toEqual(['customer_dark:many']);
    expect(many[0]).toMatchObject({ subject: '6 customers', details: { customers: 6, of: 16 } });
    expect(many[0]!.message).toBe('6 of 16 customers have no agent online: most likely our side (the server, its network or its certificate)');
    const few = alertsFrom(report({ customers: [...dark.slice(0, 4), ...fine] }), { portAlertAfterMs: 15 * MIN, now, darkAlerts: true });
    expect(few.map((a) => a.key)).toEqual(['customer_dark:g0', 'customer_dark:g1', 'customer_dark:g2', 'customer_dark:g3']);
    expect(alertsFrom(report({ customers: dark }), { portAlertAfterMs: 15 * MIN, now, darkAlerts: false })).toEqual([]);
  });
});
