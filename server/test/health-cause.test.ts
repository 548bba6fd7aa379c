import { describe, expect, it } from 'vitest';
import { probableCauses, type CustomerPortEvidence, type FailingGroup, type ProbableCause } from '../health/cause.js';

/** A failing group: `n` observers (all devices unless `devices` says otherwise). */
function fail(failureClass: string | null, step: string | null, n = 1, extra: Partial<FailingGroup> = {}): FailingGroup {
  return { failureClass, step, observers: n, devices: n, since: 1000, sample: Array.from({ length: Math.min(n, 3) }, (_, i) => `dev_${failureClass}_${i}`), ...extra };
}

/** A customer's evidence for one port. */
function cust(customerId: string, o: { devices?: number; ok?: number; connected?: number; failing?: FailingGroup[] } = {}): CustomerPortEvidence {
  return { customerId, devices: o.devices ?? 5, ok: o.ok ?? 0, connected: o.connected ?? 0, failing: o.failing ?? [] };
}

const TCP = (n = 1, extra: Partial<FailingGroup> = {}) => fail('TCP_TIMEOUT', 'tcp', n, extra);
const REFUSED = (n = 1) => fail('TCP_REFUSED', 'tcp', n);
const DNS = (n = 1) => fail('DNS_NXDOMAIN', 'dns', n);
const TLS = (cls: string, n = 1) => fail(cls, 'tls', n);

interface Case {
  readonly name: string;
  readonly agentPort: boolean;
  readonly customers: readonly CustomerPortEvidence[];
  /** Expected cause per failing customer; customers left out must get no verdict. */
  readonly expected: Readonly<Record<string, ProbableCause>>;
  /** Expected failure class per customer, where it matters. */
  readonly classes?: Readonly<Record<string, string | null>>;
}

const CASES: readonly Case[] = [
  { name: 'no customer fails: no verdicts', agentPort: true, customers: [cust('a', { ok: 3 }), cust('b', { connected: 2 })], expected: {} },
  { name: 'the only customer with evidence fails: unknown, ours cannot be told from theirs', agentPort: true, customers: [cust('a', { failing: [TCP(3)] }), cust('b')], expected: { a: 'unknown' } },
  { name: 'two customers fail at the tcp step: server-wide', agentPort: true, customers: [cust('a', { failing: [TCP(2)] }), cust('b', { failing: [REFUSED(1)] })], expected: { a: 'server_wide', b: 'server_wide' } },
  {
    name: 'three customers fail at the tls step with different classes: server-wide, with the commonest class',
    agentPort: true,
    customers: [cust('a', { failing: [TLS('TLS_UNTRUSTED', 2)] }), cust('b', { failing: [TLS('TLS_UNTRUSTED', 3)] }), cust('c', { failing: [TLS('TLS_NAME_MISMATCH', 1)] })],
    expected: { a: 'server_wide', b: 'server_wide', c: 'server_wide' },
    classes: { a: 'TLS_UNTRUSTED', c: 'TLS_UNTRUSTED' },
  },
  { name: 'every customer fails but at different steps: unknown', agentPort: true, customers: [cust('a', { failing: [DNS(2)] }), cust('b', { failing: [TCP(2)] })], expected: { a: 'unknown', b: 'unknown' } },
  { name: 'all of one customer fails while another reaches the port: customer-wide', agentPort: true, customers: [cust('a', { failing: [TCP(3)] }), cust('b', { ok: 4 })], expected: { a: 'customer_wide' } },
  { name: 'one device of five fails while four reach the port: single device', agentPort: false, customers: [cust('a', { ok: 4, failing: [REFUSED(1)] }), cust('b', { ok: 2 })], expected: { a: 'single_device' } },
  {
    name: 'one device of five fails and the others were not heard from: unknown',
    agentPort: false,
    customers: [cust('a', { devices: 5, failing: [TCP(1)] }), cust('b', { ok: 2 })],
    expected: { a: 'unknown' },
  },
  { name: 'the one device of a one-device customer fails while others reach: customer-wide', agentPort: false, customers: [cust('a', { devices: 1, failing: [TCP(1)] }), cust('b', { ok: 2 })], expected: { a: 'customer_wide' } },
  {
    name: 'a port check run from the customer network fails while others reach: customer-wide',
    agentPort: false,
    customers: [cust('a', { devices: 0, failing: [TCP(1, { devices: 0, sample: ['addr:203.0.113.7'] })] }), cust('b', { ok: 1 })],
    expected: { a: 'customer_wide' },
  },
  {
    name: 'on the agent port, devices that check in count as reaching it: single device',
    agentPort: true,
    customers: [cust('a', { connected: 3, failing: [TCP(1)] }), cust('b', { failing: [TCP(2)] })],
    expected: { a: 'single_device', b: 'customer_wide' },
  },
  {
    name: 'on the agent port, check-ins of the failing devices themselves prove nothing more: customer-wide',
    agentPort: true,
    customers: [cust('a', { connected: 2, failing: [TCP(2)] }), cust('b', { connected: 10 })],
    expected: { a: 'customer_wide' },
  },
  {
    name: 'on the console port, check-ins are no evidence: unknown for one failing device of five',
    agentPort: false,
    customers: [cust('a', { connected: 5, failing: [REFUSED(1)] }), cust('b', { ok: 3 })],
    expected: { a: 'unknown' },
  },
  {
    name: 'one customer partly reaches the port: no server-wide verdict for the others',
    agentPort: false,
    customers: [cust('a', { failing: [TCP(3)] }), cust('b', { ok: 1, failing: [TCP(2)] })],
    expected: { a: 'customer_wide', b: 'single_device' },
  },
  {
    name: 'customers without any evidence do not keep a server-wide verdict away',
    agentPort: false,
    customers: [cust('a', { failing: [REFUSED(2)] }), cust('b', { failing: [REFUSED(1)] }), cust('c'), cust('d')],
    expected: { a: 'server_wide', b: 'server_wide' },
  },
  {
    name: 'unclassified failures of every customer: server-wide without a class',
    agentPort: true,
    customers: [cust('a', { failing: [fail(null, null, 2)] }), cust('b', { failing: [fail(null, null, 1)] })],
    expected: { a: 'server_wide', b: 'server_wide' },
    classes: { a: null, b: null },
  },
  {
    name: 'mixed failures within a customer: the largest group speaks for it',
    agentPort: true,
    customers: [cust('a', { failing: [TCP(2), DNS(1)] }), cust('b', { ok: 1 })],
    expected: { a: 'customer_wide' },
    classes: { a: 'TCP_TIMEOUT' },
  },
];

describe('probable cause', () => {
  it.each(CASES)('$name', (c) => {
    const verdicts = probableCauses(c.customers, c.agentPort);
    expect(Object.fromEntries(verdicts.map((v) => [v.customerId, v.cause]))).toEqual(c.expected);
    for (const [id, cls] of Object.entries(c.classes ?? {})) expect(verdicts.find((v) => v.customerId === id)?.failureClass, id).toBe(cls);
  });

  it('reports the earliest failure, the counts, a sample of observers and the remedy', () => {
    const [v] = probableCauses([cust('a', { ok: 2, failing: [TCP(2, { since: 5000 }), DNS(1)] }), cust('b', { ok: 1 })], false);
    expect(v).toMatchObject({ customerId: 'a', cause: 'single_device', since: 1000, failing: 3, observers: 5, step: 'tcp', failureClass: 'TCP_TIMEOUT' });
    expect(v!.sample).toEqual(['dev_TCP_TIMEOUT_0', 'dev_TCP_TIMEOUT_1', 'dev_DNS_NXDOMAIN_0']);
    expect(v!.remedy).toMatch(/firewall drops the packets/);
    expect(v!.message).toMatch(/3 of the customer's observers fail \(TCP_TIMEOUT at the tcp step\) while 2 other observers/);
  });

  it('names our side in a server-wide sentence by the failing step', () => {
    const tcp = probableCauses([cust('a', { failing: [REFUSED(1)] }), cust('b', { failing: [REFUSED(1)] })], true);
    expect(tcp[0]!.message).toBe('every customer with evidence (2) fails at the tcp step (mostly TCP_REFUSED): most likely on our side, our firewall or the NAT port forwarding.');
    const tls = probableCauses([cust('a', { failing: [TLS('TLS_EXPIRED')] }), cust('b', { failing: [TLS('TLS_EXPIRED')] })], true);
    expect(tls[0]!.message).toMatch(/our server certificate/);
    expect(tls[0]!.remedy).toMatch(/restart the server to renew it/);
  });

  it('says why the evidence is too little', () => {
    const [alone] = probableCauses([cust('a', { failing: [TCP(2)] })], true);
    expect(alone!.message).toMatch(/no other customer has evidence/);
    const [steps] = probableCauses([cust('a', { failing: [DNS()] }), cust('b', { failing: [TCP()] })], true);
    expect(steps!.message).toMatch(/different steps \(dns, tcp\)/);
  });
});
