/**
 * The shape of the health report, as `GET /api/v1/health` and
 * `rollcall health --json` return it (documented in docs/health.md). Times
 * are ISO 8601 UTC strings or null.
 */
import type { ListenerRole } from '../../common/portcheck/types.js';
import type { CustomerStatus } from '../msp/customers.js';
import type { Presence } from '../presence.js';
import type { ProbableCause } from './cause.js';
import type { HostResolution } from './public-hosts.js';

/** One listener of this server and whether it is bound. */
export interface ListenerState {
  readonly role: ListenerRole;
  readonly port: number;
  readonly host: string;
  readonly listening: boolean;
}

/** How a listener is meant to be reached. */
export type Exposure = 'public' | 'restricted';

/** A failure that every customer shares: most likely on our side. */
export interface ServerWideFailure {
  readonly step: string | null;
  readonly failureClass: string | null;
  readonly since: string;
  readonly message: string;
  readonly remedy: string | null;
}

/** One listener port: bound, meant to be reachable, and what customers' networks saw of it. */
export interface PortHealth {
  readonly role: ListenerRole;
  readonly port: number;
  readonly host: string;
  readonly listening: boolean;
  readonly expectedExposure: Exposure;
  /** Agents need it: its failures raise alerts. */
  readonly required: boolean;
  readonly observed: {
    /** Customers with at least one observer (or, for the agent port, a check-in) reaching the port. */
    readonly customersReaching: number;
    /** Customers whose every observer fails. */
    readonly customersFailing: number;
    /** Customers where only some observers fail. */
    readonly customersPartlyFailing: number;
    /** When the earliest of the failing customers started failing. */
    readonly failingSince: string | null;
  };
  /** Distinct public addresses and customers that connected to it in the window. */
  readonly seen: { readonly addresses: number; readonly customers: number };
  readonly serverWide: ServerWideFailure | null;
  /** Set when a restricted port is reached from customers' networks. */
  readonly flag: { readonly kind: 'restricted_port_reachable'; readonly customers: number; readonly since: string; readonly message: string } | null;
}

/** A port that a customer's network could not reach, with the probable cause. */
export interface UnreachablePort {
  readonly role: ListenerRole;
  readonly port: number;
  readonly required: boolean;
  readonly since: string;
  readonly cause: ProbableCause;
  readonly step: string | null;
  readonly failureClass: string | null;
  readonly failing: number;
  readonly observers: number;
  /** A few failing observers: device ids, or `addr:<address>` for port checks. */
  readonly sample: readonly string[];
  readonly message: string;
  readonly remedy: string | null;
}

/** One customer's health. */
export interface CustomerHealth {
  readonly groupId: string;
  readonly name: string;
  readonly groupPath: string;
  readonly status: CustomerStatus;
  readonly devices: Readonly<Record<Presence | 'total', number>>;
  readonly lastCheckinAt: string | null;
  /** It had agents that connected, and none is online or late now. */
  readonly dark: boolean;
  readonly unreachable: readonly UnreachablePort[];
  /** Restricted ports its network reached, and since when. */
  readonly reachesRestricted: readonly { readonly role: ListenerRole; readonly port: number; readonly since: string }[];
  /** Number of problems above (dark counts as one); customers with problems come first. */
  readonly problems: number;
}

/** A certificate of this server. */
export interface CertificateHealth {
  readonly name: 'server' | 'ca';
  readonly subject: string;
  readonly notAfter: string;
  readonly daysLeft: number;
  /** Expires within 30 days (or has expired). */
  readonly expiringSoon: boolean;
}

/** The whole report. */
export interface HealthReport {
  readonly generatedAt: string;
  /** Evidence older than this many hours is ignored. */
  readonly windowHours: number;
  readonly ports: readonly PortHealth[];
  readonly publicHosts: readonly HostResolution[];
  readonly certificates: readonly CertificateHealth[];
  /** Unrevoked agents whose certificate expires within 30 days. */
  readonly agentCertificatesExpiring: number;
  readonly totals: Readonly<Record<Presence | 'total', number>> & { readonly customers: number; readonly customersWithProblems: number };
  /** Customers with problems first, then by group path. */
  readonly customers: readonly CustomerHealth[];
}
