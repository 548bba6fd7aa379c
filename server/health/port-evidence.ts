/**
 * Turns the stored port states (counts and failing groups per customer and
 * port) into what the cause rules read: per listener role, one
 * {@link CustomerPortEvidence} per customer with evidence. Pure.
 */
import type { ListenerRole } from '../../common/portcheck/types.js';
import type { FailingRow, OkCountRow } from '../storage/health-queries.js';
import type { CustomerPortEvidence, FailingGroup } from './cause.js';

/** Facts of one customer that the evidence needs. */
export interface CustomerFacts {
  /** Unrevoked devices. */
  readonly devices: number;
  /** Devices with a check-in or connect within the window. */
  readonly connected: number;
}

/** The bound ports, to give an observation without a role the role of its port. */
export interface PortRoles {
  readonly agent: number;
  readonly console: number;
}

/** The role an observation stands for: its own, else the listener on its port. */
export function roleOf(row: { role: string | null; port: number }, ports: PortRoles): ListenerRole | null {
  if (row.role === 'agent' || row.role === 'console') return row.role;
  if (row.port === ports.agent) return 'agent';
  if (row.port === ports.console) return 'console';
  return null;
}

interface Acc {
  ok: number;
  failing: FailingGroup[];
}

/**
 * Builds the evidence of every customer for one role. Customers without
 * any observation still appear for the agent port when they checked in.
 */
export function evidenceFor(
  role: ListenerRole,
  ports: PortRoles,
  customers: ReadonlyMap<string, CustomerFacts>,
  counts: readonly OkCountRow[],
  failing: readonly FailingRow[],
): CustomerPortEvidence[] {
  const acc = new Map<string, Acc>();
  const at = (groupId: string): Acc => {
    let a = acc.get(groupId);
    if (!a) acc.set(groupId, (a = { ok: 0, failing: [] }));
    return a;
  };
  for (const r of counts) {
    if (!customers.has(r.groupId) || roleOf(r, ports) !== role) continue;
    at(r.groupId).ok += r.ok;
  }
  for (const r of failing) {
    if (!customers.has(r.groupId) || roleOf(r, ports) !== role) continue;
    at(r.groupId).failing.push({
      failureClass: r.failureClass,
      step: r.step,
      observers: r.observers,
      devices: r.devices,
      since: r.since,
      sample: r.sample,
    });
  }
  const evidence: CustomerPortEvidence[] = [];
  for (const [groupId, facts] of customers) {
    const a = acc.get(groupId);
    const connected = role === 'agent' ? facts.connected : 0;
    if (!a && connected === 0) continue;
    evidence.push({ customerId: groupId, devices: facts.devices, ok: a?.ok ?? 0, connected, failing: a?.failing ?? [] });
  }
  return evidence;
}
