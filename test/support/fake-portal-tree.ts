/**
 * Builds MSP structures of any size for tests and benchmarks: one MSP
 * Manager (the account), managed MSPs below it, and customers spread over
 * the managed MSPs. Deterministic: the same spec always gives the same tree.
 */
import { EntityType, type PortalCompany, type PortalTree } from '../../server/msp/tree.js';

/** What to build. */
export interface TreeSpec {
  /** Managed MSPs below the account. */
  readonly managedMsps: number;
  /** Customers in all, spread round-robin over the managed MSPs (or given by `customersPerMsp`). */
  readonly customers: number;
  /** Exact number of customers under each managed MSP, in order; overrides the even spread. */
  readonly customersPerMsp?: readonly number[];
  /** Customers directly under the account (the manager), in addition to `customers`. */
  readonly directCustomers?: number;
}

/** A status that cycles through the known values and one unknown, so views see every case. */
function statusOf(n: number): string {
  if (n % 25 === 7) return 'WaitingForActivation';
  if (n % 10 === 3) return 'Suspended';
  if (n % 97 === 50) return 'UnknownFutureStatus';
  return 'Active';
}

function customer(n: number, parentId: string): PortalCompany {
  const id = `cust-${String(n).padStart(6, '0')}`;
  return { id, name: `Customer ${n}`, type: EntityType.CUSTOMER, parentId, status: statusOf(n), email: n % 4 === 0 ? null : `it@customer-${n}.example` };
}

/** Builds a tree from a spec. */
export function buildPortalTree(spec: TreeSpec): PortalTree {
  const account: PortalCompany = { id: 'acct-000001', name: 'Northwind MSP Manager', type: EntityType.MSP_MANAGER, parentId: null, status: 'Active', email: 'ops@northwind.example' };
  const companies: PortalCompany[] = [];
  const msps: PortalCompany[] = [];
  for (let i = 1; i <= spec.managedMsps; i += 1) {
    const msp: PortalCompany = { id: `msp-${String(i).padStart(4, '0')}`, name: `Managed MSP ${i}`, type: EntityType.MANAGED_MSP, parentId: account.id, status: 'Active', email: `admin@msp-${i}.example` };
    msps.push(msp);
    companies.push(msp);
  }
  let n = 0;
  for (let i = 0; i < (spec.directCustomers ?? 0); i += 1) companies.push(customer((n += 1), account.id));
  if (spec.customersPerMsp) {
    if (spec.customersPerMsp.length !== msps.length) throw new Error('customersPerMsp needs one number per managed MSP');
    spec.customersPerMsp.forEach((count, i) => {
      for (let k = 0; k < count; k += 1) companies.push(customer((n += 1), msps[i]!.id));
    });
  } else {
    const parents = msps.length > 0 ? msps : [account];
    for (let k = 0; k < spec.customers; k += 1) companies.push(customer((n += 1), parents[k % parents.length]!.id));
  }
  return { account, companies };
}

/** Children of every company, in a stable order (the order the fake portal pages through). */
export function childrenIndex(tree: PortalTree): Map<string, PortalCompany[]> {
  const index = new Map<string, PortalCompany[]>();
  for (const c of tree.companies) {
    const list = index.get(c.parentId!) ?? [];
    list.push(c);
    index.set(c.parentId!, list);
  }
  return index;
}
