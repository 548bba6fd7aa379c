import { afterEach, describe, expect, it } from 'vitest';
import { RollcallError } from '../../common/errors.js';
import { Harness } from '../../test/support/harness.js';
import { CLI_EXIT, rollcallMain } from '../cli.js';
import { resolveServerConfig } from '../config.js';
import type { HealthAnswer } from '../health-api.js';
import { addDevice, linkedServer, observe } from './health-support.js';

const h = new Harness();
afterEach(() => h.cleanup());

async function run(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await rollcallMain(argv, {}, { out: (t) => (out += `${t}\n`), err: (t) => (err += `${t}\n`) });
  return { code, out, err };
}

async function situation() {
  const f = await linkedServer(h, { consoleExposure: 'restricted', alertGraceMs: 0 });
  await f.s.server.writeLocalCliCredentials();
  await addDevice(f.s, f.group('Gamma'), 'dev_g1', Date.now() - 2 * 86_400_000);
  await addDevice(f.s, f.group('Acme'), 'dev_a1', Date.now());
  await observe(f.s, { groupId: f.group('Beta'), deviceId: null, sourceAddress: '198.51.100.9', port: f.agentPort, role: 'agent', ok: false, failureClass: 'TCP_REFUSED', step: 'tcp' });
  await observe(f.s, { groupId: f.group('Acme'), deviceId: 'dev_a1', port: f.agentPort, role: 'agent', ok: true });
  await observe(f.s, { groupId: f.group('Acme'), deviceId: 'dev_a1', port: f.consolePort, role: 'console', ok: true });
  await f.s.server.health.monitor.evaluate();
  return { ...f, d: ['--data-dir', f.s.dataDir] };
}

describe('rollcall health', () => {
  it('shows ports, hosts, certificates, the customers with problems and their probable causes, and open alerts', async () => {
    const { s, d } = await situation();
    const r = await run(['health', ...d]);
    expect(r.err).toBe('');
    expect(r.code).toBe(CLI_EXIT.OK);
    expect(r.out).toMatch(/^Health at \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ \(evidence of the last 24 h\)\n/);
    expect(r.out).toMatch(/ROLE +PORT +LISTENING +EXPOSURE +REACHING +FAILING +PARTLY +FAILING SINCE +SEEN ADDR\/CUST +NOTE/);
    expect(r.out).toMatch(new RegExp(`agent +${s.server.agentPort} +yes +public, required +1 +1 +0 `));
    expect(r.out).toMatch(new RegExp(`console +${s.server.consolePort} +yes +restricted .*FLAG: the console port ${s.server.consolePort} is declared restricted, but 1 customer network reaches it`));
    expect(r.out).toContain('Public hosts\n  none configured (--public-host)');
    expect(r.out).toMatch(/ {2}CA {6}Rollcall .*until .* \(in \d+ days\)/);
    expect(r.out).toContain('  agent certificates expiring within 30 days: 0');
    expect(r.out).toContain('Customers: 3, 3 with problems; devices: 2 (0 online, 1 late, 1 offline, 0 never connected)');
    expect(r.out).toContain('  Gamma (All/Northwind/Contoso/Gamma; not set up)\n    dark: every agent is offline (1); last check-in ');
    expect(r.out).toMatch(/ {2}Beta .*\n {4}agent port \d+ unreachable since .*: customer-wide \(the customer's network\), 1 of 1 observers failing\n {6}all 1 of the customer's observers fail \(TCP_REFUSED at the tcp step\)/);
    expect(r.out).toMatch(/ {6}what to do: Connection refused/);
    expect(r.out).toMatch(/ {6}e\.g\. addr:198\.51\.100\.9/);
    expect(r.out).toMatch(/ {4}reaches the restricted console port \d+ \(since /);
    expect(r.out).toMatch(/Open alerts\n(.*\n)*? {2}customer_dark {2}Gamma: every agent of customer "Gamma" is offline/);
  });

  it('prints the report as JSON with --json, and lists every customer with --all', async () => {
    const { d } = await situation();
    const json = await run(['health', '--json', ...d]);
    expect(json.code).toBe(CLI_EXIT.OK);
    const r = JSON.parse(json.out) as HealthAnswer;
    expect(Object.keys(r).sort()).toEqual(['agentCertificatesExpiring', 'alerts', 'certificates', 'customers', 'generatedAt', 'ports', 'publicHosts', 'totals', 'windowHours']);
    expect(r.ports.map((p) => p.role)).toEqual(['agent', 'console']);
    expect(Object.keys(r.ports[0]!).sort()).toEqual(['expectedExposure', 'flag', 'host', 'listening', 'observed', 'port', 'required', 'role', 'seen', 'serverWide']);
    expect(Object.keys(r.customers[0]!).sort()).toEqual(['dark', 'devices', 'groupId', 'groupPath', 'lastCheckinAt', 'name', 'problems', 'reachesRestricted', 'status', 'unreachable']);
    expect(r.alerts.map((a) => a.kind).sort()).toEqual(['customer_dark', 'restricted_port_reachable']);

    const quiet = await linkedServer(h);
    await quiet.s.server.writeLocalCliCredentials();
    const some = await run(['health', '--data-dir', quiet.s.dataDir]);
    expect(some.out).toContain('3 customers without problems (--all lists them)');
    expect(some.out).toContain('Open alerts: none');
    const all = await run(['health', '--all', '--data-dir', quiet.s.dataDir]);
    expect(all.out).toMatch(/CUSTOMER +GROUP +ONLINE +LATE +OFFLINE +NEVER +LAST CHECK-IN +PROBLEMS\nAcme +All\/Northwind\/Contoso\/Acme +0 +0 +0 +0 +- +-\n/);
  });

  it('refuses stray arguments with a usage error', async () => {
    const r = await run(['health', 'now']);
    expect(r.code).toBe(CLI_EXIT.USAGE);
    expect(r.err).toMatch(/unexpected argument "now"; usage: rollcall health \[--all\] \[--json\]/);
  });
});

describe('health configuration', () => {
  it('defaults to a public console, no webhook and port alerts after 15 minutes', () => {
    expect(resolveServerConfig({})).toMatchObject({ consoleExposure: 'public', alertWebhookUrl: null, portAlertAfterMin: 15, alertIntervalMs: 60_000, alertGraceMs: 600_000 });
  });

  it('reads the options from the environment, flags first', () => {
    const env = { ROLLCALL_CONSOLE_EXPOSURE: 'restricted', ROLLCALL_ALERT_WEBHOOK: 'https://hooks.example.test/x', ROLLCALL_PORT_ALERT_AFTER_MIN: '30' };
    expect(resolveServerConfig({}, env)).toMatchObject({ consoleExposure: 'restricted', alertWebhookUrl: 'https://hooks.example.test/x', portAlertAfterMin: 30 });
    expect(resolveServerConfig({ consoleExposure: 'public', portAlertAfterMin: '5' }, env)).toMatchObject({ consoleExposure: 'public', portAlertAfterMin: 5 });
  });

  it('lists every problem at once and never echoes the webhook URL', () => {
    let err: unknown;
    try {
      resolveServerConfig({ consoleExposure: 'hidden', alertWebhookUrl: 'ftp://user:secret@example.test/', portAlertAfterMin: '0' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(RollcallError);
    const message = (err as RollcallError).message;
    expect(message).toContain('console exposure must be public or restricted (got "hidden")');
    expect(message).toContain('alert webhook must be an http:// or https:// URL');
    expect(message).toContain('port alert delay (minutes) must be a whole number from 1 to 10080');
    expect(message).not.toContain('secret');
  });
});
