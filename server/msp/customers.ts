/**
 * The "Managed customers" view and customer setup.
 *
 * A customer's status: `unlinked` when it was removed upstream or its
 * account was unlinked; otherwise `normal` once it was set up or its setup
 * was skipped, and `not_set_up` before that. Setting a customer up makes an
 * enrollment token bound to its group (with a ready install command) and a
 * customer-scoped admin user whose home group is the customer's group.
 */
import { RollcallError } from '../../common/errors.js';
import type { Presence } from '../presence.js';
import type { Storage } from '../storage/index.js';
import type { Device } from '../storage/devices-store.js';
import type { MspCompany } from '../storage/msp-store.js';
import { randomPassword } from '../storage/users-store.js';
import { EntityType } from './tree.js';

/** Customer statuses, iterable. */
export const CUSTOMER_STATUSES = ['not_set_up', 'normal', 'unlinked'] as const;
export type CustomerStatus = (typeof CUSTOMER_STATUSES)[number];

/** One row of the Managed customers view. */
export interface CustomerView {
  readonly id: string;
  readonly groupId: string;
  readonly externalId: string;
  readonly name: string;
  readonly groupPath: string;
  readonly accountId: string;
  readonly status: CustomerStatus;
  readonly setup: 'done' | 'skipped' | null;
  readonly upstreamStatus: string;
  readonly email: string | null;
  readonly devices: Record<Presence | 'total', number>;
}

/** What the customers service needs. */
export interface CustomersDeps {
  readonly storage: Pick<Storage, 'db' | 'groups' | 'msp' | 'users' | 'enrollTokens' | 'devices'>;
  readonly presenceOf: (d: Device) => Presence;
  readonly agentCommand: (secret: string) => string;
  readonly now: () => number;
}

/** The result of a setup; the secrets are shown once. */
export interface SetupResult {
  readonly customer: CustomerView;
  readonly token: { readonly id: string; readonly secret: string; readonly expiresAt: string; readonly agentCommand: string };
  readonly user: { readonly username: string; readonly password: string } | { readonly username: string; readonly existed: true };
}

/** A customer's status from its company row and whether its account is linked (also used by the health report). */
export function statusOf(c: Pick<MspCompany, 'present' | 'setup'>, accountLinked: boolean): CustomerStatus {
  if (!c.present || !accountLinked) return 'unlinked';
  return c.setup ? 'normal' : 'not_set_up';
}

/** The admin user name made for a customer: its name in lower-case ASCII words, then `-admin`. */
export function adminUserName(customerName: string): string {
  return `${slug(customerName)}-admin`;
}

function slug(name: string): string {
  return (
    name
      .normalize('NFKD')
      .replace(/\p{M}+/gu, '')
      .toLowerCase()
      .replace(/[^a-z0-9]+/g, '-')
      .replace(/^-+|-+$/g, '')
      .slice(0, 40) || 'customer'
  );
}

/** The Managed customers view and the setup actions. */
export class Customers {
  constructor(private readonly deps: CustomersDeps) {}

  /** Every synced customer with status and device counts. */
  async list(): Promise<CustomerView[]> {
    const { storage } = this.deps;
    const [companies, accounts, groups, devices] = await Promise.all([storage.msp.companies(), storage.msp.accounts(), storage.groups.list(), storage.devices.list()]);
    const linked = new Map(accounts.map((a) => [a.id, a.linked]));
    const paths = new Map(groups.map((g) => [g.id, g.path]));
    const counts = new Map<string, Record<Presence | 'total', number>>();
    for (const d of devices) {
      const c = counts.get(d.groupId) ?? { online: 0, late: 0, offline: 0, never_connected: 0, total: 0 };
      c[this.deps.presenceOf(d)] += 1;
      c.total += 1;
      counts.set(d.groupId, c);
    }
    return companies
      .filter((c) => c.type === EntityType.CUSTOMER)
      .map((c) => ({
        id: c.groupId,
        groupId: c.groupId,
        externalId: c.externalId,
        name: c.upstreamName,
        groupPath: paths.get(c.groupId) ?? '',
        accountId: c.accountId,
        status: statusOf(c, linked.get(c.accountId) ?? false),
        setup: c.setup,
        upstreamStatus: c.status,
        email: c.email,
        devices: counts.get(c.groupId) ?? { online: 0, late: 0, offline: 0, never_connected: 0, total: 0 },
      }))
      .sort((a, b) => a.groupPath.localeCompare(b.groupPath));
  }

  /** Finds one customer by group id, portal id, exact name or group path. */
  async find(ref: string): Promise<CustomerView> {
    const all = await this.list();
    const exact = all.filter((c) => c.groupId === ref || c.externalId === ref || c.groupPath === ref || c.groupPath === `All/${ref}`);
    const matches = exact.length > 0 ? exact : all.filter((c) => c.name === ref);
    if (matches.length === 0) throw new RollcallError('CUSTOMER_NOT_FOUND', `no customer "${ref}"`);
    if (matches.length > 1) {
      throw new RollcallError('CUSTOMER_AMBIGUOUS', `"${ref}" names ${matches.length} customers (${matches.slice(0, 3).map((m) => m.groupPath).join('; ')}); use the group path or id`);
    }
    return matches[0]!;
  }

  /** Sets a customer up: enrollment token, customer-scoped admin user, status normal. */
  async setup(ref: string, opts: { ttlMs?: number } = {}): Promise<SetupResult> {
    const { storage, now } = this.deps;
    const customer = await this.find(ref);
    if (customer.status === 'unlinked') throw new RollcallError('GROUP_UNLINKED', `customer "${customer.name}" is unlinked and cannot be set up`);
    const t = now();
    const expiresAt = t + (opts.ttlMs ?? 30 * 86_400_000);
    const { token, secret } = await storage.enrollTokens.create({ groupId: customer.groupId, expiresAt, maxUses: null, note: `setup of ${customer.name}`, now: t });
    const base = adminUserName(customer.name);
    const existing = (await storage.users.list()).find((u) => u.role === 'customer_admin' && u.homeGroupId === customer.groupId);
    let user: SetupResult['user'];
    if (existing) {
      user = { username: existing.username, existed: true };
    } else {
      let username = base;
      for (let n = 2; !(await storage.users.isFree(username)); n += 1) username = `${base}-${n}`;
      const password = randomPassword();
      await storage.users.create({ username, password, role: 'customer_admin', homeGroupId: customer.groupId, now: t });
      user = { username, password };
    }
    await storage.msp.setSetup(customer.groupId, 'done', t);
    return {
      customer: await this.find(customer.groupId),
      token: { id: token.id, secret, expiresAt: new Date(expiresAt).toISOString(), agentCommand: this.deps.agentCommand(secret) },
      user,
    };
  }

  /** Marks setup skipped (status normal) for one customer, or for every customer not set up yet. */
  async skip(ref: string | { allNew: true }): Promise<CustomerView[]> {
    const targets = typeof ref === 'string' ? [await this.find(ref)] : (await this.list()).filter((c) => c.status === 'not_set_up');
    for (const c of targets) {
      if (c.status === 'unlinked') throw new RollcallError('GROUP_UNLINKED', `customer "${c.name}" is unlinked`);
      if (c.setup === null) await this.deps.storage.msp.setSetup(c.groupId, 'skipped', this.deps.now());
    }
    const ids = new Set(targets.map((c) => c.groupId));
    return (await this.list()).filter((c) => ids.has(c.groupId));
  }
}
