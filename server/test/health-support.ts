/**
 * Helpers for the health tests: a server with a linked MSP structure, and
 * devices, observations and sightings written straight into its storage to
 * build situations.
 */
import crypto from 'node:crypto';
import type { HostResolver } from '../health/public-hosts.js';
import type { HealthAnswer } from '../health-api.js';
import type { CustomerHealth, PortHealth } from '../health/report-types.js';
import type { Observation } from '../storage/evidence-store.js';
import type { Harness, TestServer } from '../../test/support/harness.js';
import { company, writeExport } from './msp-support.js';

/** Three customers under one MSP of the account Northwind. */
export const TREE = [company('m1', 'acct-1', 1006, 'Contoso'), company('c1', 'm1', 1007, 'Acme'), company('c2', 'm1', 1007, 'Beta'), company('c3', 'm1', 1007, 'Gamma')];

/** A started server with the tree linked; `group(name)` is a customer's group id. */
export interface HealthFixture {
  readonly s: TestServer;
  readonly group: (customer: 'Acme' | 'Beta' | 'Gamma') => string;
  readonly agentPort: number;
  readonly consolePort: number;
}

/** Starts a server (overrides as for startServer) and links the tree from a file export. */
export async function linkedServer(
  h: Harness,
  overrides: Record<string, unknown> = {},
  opts: { now?: () => number; resolveHost?: HostResolver } = {},
): Promise<HealthFixture> {
  const s = await h.startServer(overrides, opts);
  const file = await writeExport(await h.tempDir(), TREE);
  const res = await s.api('POST', '/api/v1/msp/link', { source: 'file', file });
  if (res.status !== 201) throw new Error(`link failed: ${JSON.stringify(res.body)}`);
  const customers = (await s.api<{ customers: { name: string; groupId: string }[] }>('GET', '/api/v1/customers')).body.customers;
  const ids = new Map(customers.map((c) => [c.name, c.groupId]));
  return { s, group: (name) => ids.get(name)!, agentPort: s.server.agentPort, consolePort: s.server.consolePort };
}

/** Inserts an enrolled device with its last contact (null: never connected). */
export async function addDevice(s: TestServer, groupId: string, id: string, lastContactAt: number | null, certNotAfter = Date.now() + 300 * 86_400_000): Promise<string> {
  await s.server.storage.devices.insert({
    id,
    certSerial: `health-${crypto.randomBytes(6).toString('hex')}`,
    certNotAfter,
    groupId,
    placementReason: null,
    hostname: id,
    fingerprint: null,
    agentVersion: 'test',
    enrolledAt: Date.now() - 86_400_000,
    tokenId: null,
  });
  if (lastContactAt !== null) await s.server.storage.db.run('UPDATE devices SET last_checkin_at = ?, last_connected_at = ?, interval_sec = 60 WHERE id = ?', [lastContactAt, lastContactAt, id]);
  return id;
}

/** Records one observation of a port. */
export async function observe(
  s: TestServer,
  o: { groupId: string; deviceId: string | null; port: number; role?: 'agent' | 'console' | null; ok: boolean; failureClass?: string; step?: string; at?: number; source?: Observation['source']; sourceAddress?: string; host?: string },
): Promise<void> {
  const at = o.at ?? Date.now() - 60_000;
  await s.server.storage.evidence.record([
    {
      source: o.source ?? (o.deviceId ? 'agent_probe' : 'portcheck'),
      deviceId: o.deviceId,
      groupId: o.groupId,
      targetHost: o.host ?? 'rollcall.example.test',
      port: o.port,
      role: o.role === undefined ? null : o.role,
      ok: o.ok,
      failureClass: o.ok ? null : (o.failureClass ?? 'TCP_TIMEOUT'),
      step: o.ok ? null : (o.step ?? 'tcp'),
      detail: null,
      sourceAddress: o.sourceAddress ?? '203.0.113.50',
      observedAt: at,
      reportedAt: at,
    },
  ]);
}

/** GET /api/v1/health, expecting 200. */
export async function health(s: TestServer): Promise<HealthAnswer> {
  const res = await s.api<HealthAnswer>('GET', '/api/v1/health');
  if (res.status !== 200) throw new Error(`health answered ${res.status}: ${JSON.stringify(res.body)}`);
  return res.body;
}

/** A customer of a report by name. */
export const customerOf = (r: HealthAnswer, name: string): CustomerHealth => r.customers.find((c) => c.name === name)!;

/** A port of a report by role. */
export const portOf = (r: HealthAnswer, role: 'agent' | 'console'): PortHealth => r.ports.find((p) => p.role === role)!;
