/**
 * Builds the health report: per listener port (bound? meant to be public?
 * reached from customers' networks?), per customer (presence counts, last
 * check-in, unreachable ports with a probable cause), public host names and
 * certificates. One pass over devices and a handful of aggregated queries,
 * never one per customer (see storage/health-queries.ts).
 */
import { certInfo } from '../../common/pki.js';
import type { ListenerRole } from '../../common/portcheck/types.js';
import { statusOf } from '../msp/customers.js';
import type { Presence } from '../presence.js';
import type { CustomerRow, DevicePresenceFacts, HealthQueries } from '../storage/health-queries.js';
import { probableCauses, reachesPort, type CauseVerdict, type CustomerPortEvidence } from './cause.js';
import { evidenceFor, roleOf, type CustomerFacts, type PortRoles } from './port-evidence.js';
import type { HostResolution } from './public-hosts.js';
import type { CertificateHealth, CustomerHealth, Exposure, HealthReport, ListenerState, PortHealth, UnreachablePort } from './report-types.js';

const DAY = 86_400_000;
const iso = (t: number | null): string | null => (t === null ? null : new Date(t).toISOString());

/** What the report builder reads. */
export interface HealthReportDeps {
  readonly queries: Pick<HealthQueries, 'customers' | 'nonCustomerGroups' | 'forEachDevice' | 'okCounts' | 'failing' | 'addressesSeen' | 'consoleReachedFrom'>;
  readonly consoleExposure: Exposure;
  readonly listeners: () => readonly ListenerState[];
  /** PEMs of the server certificate and the CA. */
  readonly certificates: () => readonly { readonly name: 'server' | 'ca'; readonly certPem: string }[];
  readonly publicHosts: { current(): Promise<readonly HostResolution[]> };
  /** The presence rule of every other view (server.ts builds it from the session registry). */
  readonly presenceOf: (d: DevicePresenceFacts) => Presence;
  readonly now: () => number;
  /** Evidence older than this is ignored (default 24 h). */
  readonly windowMs?: number;
}

type Counts = Record<Presence | 'total', number>;
const zero = (): Counts => ({ online: 0, late: 0, offline: 0, never_connected: 0, total: 0 });

interface CustomerAcc extends CustomerFacts {
  devices: number;
  connected: number;
  counts: Counts;
  lastCheckinAt: number | null;
}

/** Certificates of this server with their expiry. */
export function certificateHealth(certs: readonly { name: 'server' | 'ca'; certPem: string }[], now: number): CertificateHealth[] {
  return certs.map(({ name, certPem }) => {
    const info = certInfo(certPem);
    const daysLeft = Math.floor((info.notAfter.getTime() - now) / DAY);
    return { name, subject: info.subjectCommonName, notAfter: info.notAfter.toISOString(), daysLeft, expiringSoon: daysLeft < 30 };
  });
}

function customerPaths(groups: readonly { id: string; parentId: string | null; name: string }[]): (parentId: string | null, name: string) => string {
  const byId = new Map(groups.map((g) => [g.id, g]));
  const memo = new Map<string, string>();
  const pathOf = (id: string, depth = 0): string => {
    const known = memo.get(id);
    if (known !== undefined) return known;
    const g = byId.get(id);
    const p = !g ? '' : g.parentId && depth < 64 ? `${pathOf(g.parentId, depth + 1)}/${g.name}` : g.name;
    memo.set(id, p);
    return p;
  };
  return (parentId, name) => (parentId ? `${pathOf(parentId)}/${name}` : name);
}

/** What the device pass found. */
interface DeviceCounts {
  readonly byGroup: Map<string, CustomerAcc>;
  readonly totals: Counts;
  readonly certsExpiring: number;
}

/** What the ports need to know about the customers. */
interface PortInputs {
  readonly evidence: Readonly<Record<ListenerRole, readonly CustomerPortEvidence[]>>;
  readonly verdictOf: Readonly<Record<ListenerRole, ReadonlyMap<string, CauseVerdict>>>;
  readonly restrictedReach: ReadonlyMap<string, number>;
  readonly addresses: ReadonlyMap<string, number>;
  readonly customersSeen: Readonly<Record<ListenerRole, number>>;
}

const earliest = (times: Iterable<number>): number | null => {
  let min: number | null = null;
  for (const t of times) if (min === null || t < min) min = t;
  return min;
};

/** Builds health reports; one per call, nothing cached but host resolution. */
export class HealthReporter {
  private readonly windowMs: number;

  constructor(private readonly deps: HealthReportDeps) {
    this.windowMs = deps.windowMs ?? DAY;
  }

  /** Builds the report now. */
  async build(): Promise<HealthReport> {
    const { deps } = this;
    const now = deps.now();
    const since = now - this.windowMs;
    const listeners = deps.listeners();
    const ports: PortRoles = { agent: listeners.find((l) => l.role === 'agent')?.port ?? 0, console: listeners.find((l) => l.role === 'console')?.port ?? 0 };
    const devices = this.countDevices(since, now); // first, so that its scans are first in every connection's queue
    const [customers, groups, counted, counts, failing, addresses, consoleReach, hosts] = await Promise.all([
      deps.queries.customers(),
      deps.queries.nonCustomerGroups(),
      devices,
      deps.queries.okCounts(since),
      deps.queries.failing(since, deps.consoleExposure === 'restricted' ? ports.console : null),
      deps.queries.addressesSeen(since),
      deps.queries.consoleReachedFrom(since),
      deps.publicHosts.current(),
    ]);
    const acc = new Map<string, CustomerAcc>(customers.map((c) => [c.groupId, counted.byGroup.get(c.groupId) ?? { devices: 0, connected: 0, counts: zero(), lastCheckinAt: null }]));
    const evidence = { agent: evidenceFor('agent', ports, acc, counts, failing), console: evidenceFor('console', ports, acc, counts, failing) };
    const byCustomer = (list: readonly CauseVerdict[]): Map<string, CauseVerdict> => new Map(list.map((v) => [v.customerId, v]));
    const verdictOf = { agent: byCustomer(probableCauses(evidence.agent, true)), console: byCustomer(probableCauses(evidence.console, false)) };

    // Restricted console: reached when a customer's observer got through, or its agents' addresses hit the console.
    const restrictedReach = new Map<string, number>();
    if (deps.consoleExposure === 'restricted') {
      const reachedAt = (groupId: string, at: number): void => {
        if (acc.has(groupId)) restrictedReach.set(groupId, Math.min(restrictedReach.get(groupId) ?? at, at));
      };
      for (const r of counts) if (roleOf(r, ports) === 'console') reachedAt(r.groupId, r.firstOkAt);
      for (const r of consoleReach) reachedAt(r.groupId, r.firstSeenAt);
    }
    const customersSeen = { agent: [...acc.values()].filter((a) => a.connected > 0).length, console: consoleReach.filter((r) => acc.has(r.groupId)).length };
    const inputs: PortInputs = { evidence, verdictOf, restrictedReach, addresses, customersSeen };
    const pathOf = customerPaths(groups);
    const out = customers.map((c) => this.customerHealth(c, pathOf(c.parentGroupId, c.groupName), acc.get(c.groupId)!, inputs, ports));
    out.sort((x, y) => (y.problems > 0 ? 1 : 0) - (x.problems > 0 ? 1 : 0) || (x.groupPath < y.groupPath ? -1 : x.groupPath > y.groupPath ? 1 : 0));
    return {
      generatedAt: new Date(now).toISOString(),
      windowHours: this.windowMs / 3_600_000,
      ports: listeners.map((l) => this.portHealth(l, inputs)),
      publicHosts: hosts,
      certificates: certificateHealth(deps.certificates(), now),
      agentCertificatesExpiring: counted.certsExpiring,
      totals: { ...counted.totals, customers: out.length, customersWithProblems: out.filter((c) => c.problems > 0).length },
      customers: out,
    };
  }

  private exposure(role: ListenerRole): Exposure {
    return role === 'agent' ? 'public' : this.deps.consoleExposure;
  }

  /** One pass over every device: presence counts, last check-in and recent contact per group. */
  private async countDevices(since: number, now: number): Promise<DeviceCounts> {
    const byGroup = new Map<string, CustomerAcc>();
    const totals = zero();
    let certsExpiring = 0;
    await this.deps.queries.forEachDevice(now + 30 * DAY, (groupId, d, certExpiring) => {
      let a = byGroup.get(groupId);
      if (!a) byGroup.set(groupId, (a = { devices: 0, connected: 0, counts: zero(), lastCheckinAt: null }));
      const p = this.deps.presenceOf(d);
      a.counts[p] += 1;
      a.counts.total += 1;
      a.devices += 1;
      totals[p] += 1;
      totals.total += 1;
      if (certExpiring) certsExpiring += 1;
      if ((d.lastCheckinAt ?? 0) >= since || (d.lastConnectedAt ?? 0) >= since) a.connected += 1;
      if (d.lastCheckinAt !== null && (a.lastCheckinAt === null || d.lastCheckinAt > a.lastCheckinAt)) a.lastCheckinAt = d.lastCheckinAt;
    });
    return { byGroup, totals, certsExpiring };
  }

  private portHealth(l: ListenerState, inputs: PortInputs): PortHealth {
    const agentPort = l.role === 'agent';
    const ev = inputs.evidence[l.role];
    const failingCustomers = ev.filter((e) => e.failing.length > 0 && !reachesPort(e, agentPort));
    const verdicts = inputs.verdictOf[l.role];
    const serverWide = [...verdicts.values()].find((v) => v.cause === 'server_wide');
    const failingSince = earliest(failingCustomers.map((e) => verdicts.get(e.customerId)!.since));
    const reach = inputs.restrictedReach;
    return {
      ...l,
      expectedExposure: this.exposure(l.role),
      required: agentPort,
      observed: {
        customersReaching: ev.filter((e) => reachesPort(e, agentPort)).length,
        customersFailing: failingCustomers.length,
        customersPartlyFailing: ev.filter((e) => e.failing.length > 0 && reachesPort(e, agentPort)).length,
        failingSince: iso(failingSince),
      },
      seen: { addresses: inputs.addresses.get(l.role) ?? 0, customers: inputs.customersSeen[l.role] },
      serverWide: serverWide
        ? { step: serverWide.step, failureClass: serverWide.failureClass, since: iso(failingSince ?? serverWide.since)!, message: serverWide.message, remedy: serverWide.remedy }
        : null,
      flag:
        this.exposure(l.role) === 'restricted' && reach.size > 0
          ? {
              kind: 'restricted_port_reachable',
              customers: reach.size,
              since: iso(earliest(reach.values()))!,
              message: `the ${l.role} port ${l.port} is declared restricted, but ${reach.size === 1 ? '1 customer network reaches' : `${reach.size} customer networks reach`} it`,
            }
          : null,
    };
  }

  private customerHealth(c: CustomerRow, groupPath: string, a: CustomerAcc, inputs: PortInputs, ports: PortRoles): CustomerHealth {
    const unreachable: UnreachablePort[] = [];
    for (const role of ['agent', 'console'] as const) {
      const v = inputs.verdictOf[role].get(c.groupId);
      if (!v || this.exposure(role) === 'restricted') continue;
      const { customerId: _id, since: at, ...rest } = v;
      unreachable.push({ role, port: ports[role], required: role === 'agent', since: iso(at)!, ...rest });
    }
    const reached = inputs.restrictedReach.get(c.groupId);
    const reachesRestricted = reached === undefined ? [] : [{ role: 'console' as const, port: ports.console, since: iso(reached)! }];
    const dark = a.counts.offline > 0 && a.counts.online + a.counts.late === 0;
    return {
      groupId: c.groupId,
      name: c.name,
      groupPath,
      status: statusOf(c, c.accountLinked),
      devices: a.counts,
      lastCheckinAt: iso(a.lastCheckinAt),
      dark,
      unreachable,
      reachesRestricted,
      problems: (dark ? 1 : 0) + unreachable.length + reachesRestricted.length,
    };
  }
}
