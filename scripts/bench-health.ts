/**
 * Benchmark of the health report: builds an MSP structure of N customers
 * and M devices directly in a temporary database (multi-row SQL: groups,
 * the account and its companies, devices, agent sightings, and each
 * device's latest probe of both ports: every 50th customer's network blocks
 * the agent port, every 20th device fails alone, the restricted console
 * port leaks to every 100th customer), then times the report builder. The goal: 10,000 customers and 100,000 devices in
 * under 200 ms.
 *
 *   const r = await benchHealth({ customers: 10_000, devices: 100_000 });
 *   r.ms   // median of the timed runs
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createCa, issueServerCert } from '../common/pki.js';
import { judgeResolution } from '../server/health/public-hosts.js';
import { HealthReporter } from '../server/health/report.js';
import { computePresence } from '../server/presence.js';
import { openDatabase, type Database, type Sql, type SqlValue } from '../server/storage/db.js';
import { HealthQueries } from '../server/storage/health-queries.js';
import { openStorage } from '../server/storage/index.js';
import { ROOT_GROUP_ID } from '../server/storage/migrations.js';

/** Size of the benchmark. */
export interface HealthBenchOptions {
  readonly customers: number;
  readonly devices: number;
  /** Timed runs after one untimed warm-up (default 5). */
  readonly runs?: number;
  /** Reader connections of the report (default 3, as the server opens). */
  readonly readers?: number;
}

/** What the benchmark measured. */
export interface HealthBenchResult {
  /** Median build time of the report, in milliseconds. */
  readonly ms: number;
  readonly runsMs: readonly number[];
  /** Median CPU time of a build, SQLite's threads included (more than `ms` when the queries ran in parallel). */
  readonly cpuMs: number;
  readonly customers: number;
  readonly devices: number;
  readonly observations: number;
  /** Customers with problems in the report, to show that it did real work. */
  readonly customersWithProblems: number;
  readonly setupMs: number;
}

const AGENT_PORT = 2222;
const CONSOLE_PORT = 8443;
const MSPS = 10;

async function insertRows(sql: Sql, head: string, rows: readonly SqlValue[][]): Promise<void> {
  const per = Math.max(1, Math.floor(30_000 / (rows[0]?.length ?? 1)));
  for (let i = 0; i < rows.length; i += per) {
    const chunk = rows.slice(i, i + per);
    await sql.run(`${head} VALUES ${chunk.map((r) => `(${r.map(() => '?').join(',')})`).join(',')}`, chunk.flat());
  }
}

/** Fills the database: every 50th customer's network blocks the agent port; every 20th device fails alone. */
async function populate(sql: Sql, o: HealthBenchOptions, now: number): Promise<{ observations: number; connected: Set<string> }> {
  const groups: SqlValue[][] = [['grp_bench', ROOT_GROUP_ID, 'Bench', 'static', now]];
  for (let m = 0; m < MSPS; m += 1) groups.push([`grp_m${m}`, 'grp_bench', `MSP ${m}`, 'static', now]);
  for (let c = 0; c < o.customers; c += 1) groups.push([`grp_c${c}`, `grp_m${c % MSPS}`, `Customer ${c}`, 'static', now]);
  await insertRows(sql, 'INSERT INTO groups (id, parent_id, name, kind, created_at)', groups);
  await sql.run(
    `INSERT INTO msp_accounts (id, portal, source, external_id, name, entity_type, root_group_id, linked, created_at, linked_at) VALUES ('acct_bench', 'msp', 'file', 'bench', 'Bench', 1004, 'grp_bench', 1, ?, ?)`,
    [now, now],
  );
  const companies: SqlValue[][] = [];
  for (let m = 0; m < MSPS; m += 1) companies.push([`grp_m${m}`, 'acct_bench', `m${m}`, 1006, `MSP ${m}`, 'Active', 1, null]);
  for (let c = 0; c < o.customers; c += 1) companies.push([`grp_c${c}`, 'acct_bench', `c${c}`, 1007, `Customer ${c}`, 'Active', 1, c % 3 === 0 ? null : 'done']);
  await insertRows(sql, 'INSERT INTO msp_companies (group_id, account_id, external_id, entity_type, upstream_name, upstream_status, present, setup)', companies);

  const devices: SqlValue[][] = [];
  const sightings: SqlValue[][] = [];
  const observations: SqlValue[][] = [];
  const connected = new Set<string>();
  for (let d = 0; d < o.devices; d += 1) {
    const c = d % o.customers;
    const id = `dev_${d.toString(16).padStart(20, '0')}`;
    const blocked = c % 50 === 7;
    const alone = !blocked && d % 20 === 3;
    const contact = blocked ? now - 3 * 86_400_000 : now - (d % 600) * 1000;
    if (!blocked && d % 10 !== 0) connected.add(id);
    devices.push([id, `serial${d}`, now + (d % 100 === 0 ? 10 : 300) * 86_400_000, `grp_c${c}`, `host-${d}`, now - 30 * 86_400_000, contact, contact, 60, `198.51.${c % 256}.${d % 256}`]);
    sightings.push(['agent', `198.51.${c % 256}.${(c >> 8) % 256}`, id, `grp_c${c}`, now - 86_400_000, contact]);
    const at = now - (d % 3600) * 1000;
    const fail = blocked || alone;
    observations.push(['agent_probe', id, `grp_c${c}`, 'rollcall.example.com', AGENT_PORT, 'agent', fail ? 0 : 1, fail ? 'TCP_TIMEOUT' : null, fail ? 'tcp' : null, null, '198.51.100.1', at, at]);
    // The console is restricted: it must fail from customers' networks, except from a few that leak through.
    const leaks = c % 100 === 11;
    observations.push(['agent_probe', id, `grp_c${c}`, 'rollcall.example.com', CONSOLE_PORT, 'console', leaks ? 1 : 0, leaks ? null : 'TCP_TIMEOUT', leaks ? null : 'tcp', null, '198.51.100.1', at, at]);
  }
  await insertRows(sql, 'INSERT INTO devices (id, cert_serial, cert_not_after, group_id, hostname, enrolled_at, last_connected_at, last_checkin_at, interval_sec, last_address)', devices);
  await insertRows(sql, 'INSERT INTO sightings (role, address, device_id, group_id, first_seen_at, last_seen_at)', sightings);
  await insertRows(
    sql,
    'INSERT INTO observations (source, device_id, group_id, target_host, port, role, ok, failure_class, step, detail, source_address, observed_at, reported_at)',
    observations,
  );
  return { observations: observations.length, connected };
}

/** Builds the data set and times the report builder. */
export async function benchHealth(o: HealthBenchOptions): Promise<HealthBenchResult> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'rollcall-bench-health-'));
  const file = path.join(dir, 'rollcall.db');
  const storage = await openStorage(file, { synchronous: 'NORMAL' });
  const readers: Database[] = [];
  try {
    const now = Date.now();
    const setupStart = performance.now();
    const { observations, connected } = await storage.db.transaction((tx) => populate(tx, o, now));
    await storage.db.exec('ANALYZE');
    const setupMs = performance.now() - setupStart;
    const ca = createCa({ commonName: 'Bench CA', bits: 2048 });
    const server = issueServerCert(ca, { hosts: ['rollcall.example.com'] });
    for (let i = 0; i < (o.readers ?? 3); i += 1) readers.push(await openDatabase(file));
    const reporter = new HealthReporter({
      queries: new HealthQueries(readers),
      consoleExposure: 'restricted',
      listeners: () => [
        { role: 'agent', port: AGENT_PORT, host: '0.0.0.0', listening: true },
        { role: 'console', port: CONSOLE_PORT, host: '0.0.0.0', listening: true },
      ],
      certificates: () => [
        { name: 'server', certPem: server.certPem },
        { name: 'ca', certPem: ca.certPem },
      ],
      publicHosts: { current: async () => [judgeResolution('rollcall.example.com', { addresses: ['203.0.113.10'] }, now)] },
      presenceOf: (d) =>
        computePresence({ connected: connected.has(d.id), closedCleanly: false, lastCheckinAt: d.lastCheckinAt, lastConnectedAt: d.lastConnectedAt, intervalSec: d.intervalSec ?? 60, now }),
      now: () => now,
    });
    let report = await reporter.build();
    const runsMs: number[] = [];
    const cpuMs: number[] = [];
    for (let i = 0; i < (o.runs ?? 5); i += 1) {
      const t = performance.now();
      const cpu = process.cpuUsage();
      report = await reporter.build();
      runsMs.push(performance.now() - t);
      const used = process.cpuUsage(cpu);
      cpuMs.push((used.user + used.system) / 1000);
    }
    const median = (xs: readonly number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    return {
      ms: median(runsMs),
      runsMs,
      cpuMs: median(cpuMs),
      customers: report.totals.customers,
      devices: report.totals.total,
      observations,
      customersWithProblems: report.totals.customersWithProblems,
      setupMs,
    };
  } finally {
    await Promise.all(readers.map((r) => r.close()));
    await storage.db.close();
    await fs.rm(dir, { recursive: true, force: true });
  }
}
