/**
 * `rollcall health [--all] [--json]`: the port and visibility health
 * report from the console API. People get the ports, public host names and
 * certificates, then the customers with problems (with the probable cause
 * and what to do), then open alerts; --all lists every customer.
 */
import { formatTable, parseCommandArgs, usageError, type CliIo } from '../common/cli-support.js';
import { connectAdmin } from './admin-client.js';
import { ADMIN_FLAGS, adminTarget, when } from './cli-common.js';
import type { HealthAnswer } from './health-api.js';
import type { CustomerHealth, HealthReport, PortHealth } from './health/report-types.js';

const CAUSE_WORDS: Readonly<Record<string, string>> = {
  server_wide: 'server-wide (our side)',
  customer_wide: "customer-wide (the customer's network)",
  single_device: 'single device',
  unknown: 'unknown',
};

function portRows(ports: readonly PortHealth[]): string[][] {
  return ports.map((p) => {
    const note = [p.flag ? `FLAG: ${p.flag.message}` : '', p.serverWide ? `server-wide failure: ${p.serverWide.message}` : ''].filter(Boolean).join('; ');
    return [
      p.role,
      String(p.port),
      p.listening ? 'yes' : 'NO',
      `${p.expectedExposure}${p.required ? ', required' : ''}`,
      String(p.observed.customersReaching),
      String(p.observed.customersFailing),
      String(p.observed.customersPartlyFailing),
      when(p.observed.failingSince),
      `${p.seen.addresses}/${p.seen.customers}`,
      note,
    ];
  });
}

function hostLines(r: HealthReport): string[] {
  if (r.publicHosts.length === 0) return ['  none configured (--public-host): agents on other networks have no name to dial'];
  return r.publicHosts.map((h) => `  ${h.failure ? `${h.failure}: ` : ''}${h.message}`);
}

function certificateLines(r: HealthReport): string[] {
  const lines = r.certificates.map((c) => {
    const state = c.daysLeft < 0 ? 'EXPIRED' : c.expiringSoon ? `EXPIRES SOON, in ${c.daysLeft} days` : `in ${c.daysLeft} days`;
    return `  ${c.name === 'ca' ? 'CA    ' : 'server'}  ${c.subject}  until ${when(c.notAfter)} (${state})`;
  });
  lines.push(`  agent certificates expiring within 30 days: ${r.agentCertificatesExpiring}`);
  return lines;
}

function problemLines(c: CustomerHealth): string[] {
  const lines = [`  ${c.name} (${c.groupPath}; ${c.status.replace(/_/g, ' ')})`];
  if (c.dark) lines.push(`    dark: every agent is offline (${c.devices.offline}); last check-in ${when(c.lastCheckinAt)}`);
  for (const u of c.unreachable) {
    lines.push(`    ${u.role} port ${u.port} unreachable since ${when(u.since)}: ${CAUSE_WORDS[u.cause] ?? u.cause}, ${u.failing} of ${u.observers} observers failing`);
    lines.push(`      ${u.message}`);
    if (u.remedy) lines.push(`      what to do: ${u.remedy}`);
    if (u.sample.length > 0) lines.push(`      e.g. ${u.sample.join(', ')}`);
  }
  for (const r of c.reachesRestricted) lines.push(`    reaches the restricted ${r.role} port ${r.port} (since ${when(r.since)})`);
  return lines;
}

function customerRows(list: readonly CustomerHealth[]): string[][] {
  return list.map((c) => [
    c.name,
    c.groupPath,
    ...(['online', 'late', 'offline', 'never_connected'] as const).map((k) => String(c.devices[k])),
    when(c.lastCheckinAt),
    c.problems === 0 ? '-' : String(c.problems),
  ]);
}

/** Renders the report for people. */
export function renderHealth(r: HealthAnswer, all: boolean): string {
  const t = r.totals;
  const problems = r.customers.filter((c) => c.problems > 0);
  const out = [
    `Health at ${when(r.generatedAt)} (evidence of the last ${r.windowHours} h)`,
    '',
    'Ports',
    formatTable(['ROLE', 'PORT', 'LISTENING', 'EXPOSURE', 'REACHING', 'FAILING', 'PARTLY', 'FAILING SINCE', 'SEEN ADDR/CUST', 'NOTE'], portRows(r.ports)),
    '',
    'Public hosts',
    ...hostLines(r),
    '',
    'Certificates',
    ...certificateLines(r),
    '',
    `Customers: ${t.customers}, ${t.customersWithProblems} with problems; devices: ${t.total} (${t.online} online, ${t.late} late, ${t.offline} offline, ${t.never_connected} never connected)`,
  ];
  if (problems.length > 0) out.push('', 'Customers with problems', ...problems.flatMap(problemLines));
  const listed = all ? r.customers : problems;
  if (listed.length > 0) out.push('', formatTable(['CUSTOMER', 'GROUP', 'ONLINE', 'LATE', 'OFFLINE', 'NEVER', 'LAST CHECK-IN', 'PROBLEMS'], customerRows(listed)));
  if (!all && r.customers.length > problems.length) out.push(`${r.customers.length - problems.length} customers without problems (--all lists them)`);
  out.push('', r.alerts.length === 0 ? 'Open alerts: none' : 'Open alerts');
  for (const a of r.alerts) out.push(`  ${a.kind}  ${a.subject}: ${a.message} (since ${when(a.raisedAt)})`);
  return out.join('\n');
}

/** `rollcall health`. */
export async function healthCommand(args: string[], env: NodeJS.ProcessEnv, io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandArgs(args, { ...ADMIN_FLAGS, all: { type: 'boolean' } });
  if (positionals.length > 0) throw usageError(`unexpected argument "${positionals[0]}"; usage: rollcall health [--all] [--json]`);
  const api = await connectAdmin(adminTarget(values, env));
  const report = await api.call<HealthAnswer>('GET', '/api/v1/health');
  io.out(values.json ? JSON.stringify(report) : renderHealth(report, values.all ?? false));
  return 0;
}
