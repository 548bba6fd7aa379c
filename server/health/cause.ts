/**
 * Probable cause of a port failing from customers' networks. Pure: it sees,
 * for one listener port, what every customer's observers (devices and port
 * checks) last saw of it within the window, and says for each failing
 * customer whether the fault is most likely ours, theirs, or one device's.
 *
 * The rules, in order, for a customer with failing observers:
 * 1. some of its observers reach the port → `single_device`;
 * 2. every observer fails, and no other customer has evidence → `unknown`;
 * 3. every observer fails, and another customer reaches the port →
 *    `customer_wide` when the evidence is enough (at least two observers,
 *    a port check, or every enrolled device of the customer fails),
 *    otherwise `unknown`;
 * 4. every customer with evidence fails, all at the same step →
 *    `server_wide` (our firewall, NAT, DNS record or certificate);
 *    at different steps → `unknown`.
 */
import { PORTCHECK_FAILURES, PORTCHECK_STEPS, type PortcheckFailure } from '../../common/portcheck/types.js';

/** Probable causes, iterable. */
export const PROBABLE_CAUSES = ['server_wide', 'customer_wide', 'single_device', 'unknown'] as const;
/** A probable cause. */
export type ProbableCause = (typeof PROBABLE_CAUSES)[number];

/** Observers of one customer that failed the same way. */
export interface FailingGroup {
  readonly failureClass: string | null;
  readonly step: string | null;
  /** Failing observers in this group. */
  readonly observers: number;
  /** How many of them are devices (the rest are port checks run from the network). */
  readonly devices: number;
  /** When the earliest of them started failing. */
  readonly since: number;
  /** A few observer ids (device ids, or `addr:` + address for port checks). */
  readonly sample: readonly string[];
}

/** What one customer's network showed of one port. */
export interface CustomerPortEvidence {
  readonly customerId: string;
  /** Enrolled, unrevoked devices of the customer. */
  readonly devices: number;
  /** Observers whose latest look reached the port. */
  readonly ok: number;
  /** Devices that checked in within the window; for the agent port, each is proof that it is reachable from there. */
  readonly connected: number;
  readonly failing: readonly FailingGroup[];
}

/** The verdict for one failing customer. */
export interface CauseVerdict {
  readonly customerId: string;
  readonly cause: ProbableCause;
  readonly step: string | null;
  readonly failureClass: string | null;
  readonly since: number;
  /** Failing observers, and all observers with a recent look. */
  readonly failing: number;
  readonly observers: number;
  /** Device ids (or `addr:` port-check sources) of a few failing observers. */
  readonly sample: readonly string[];
  /** One sentence for people. */
  readonly message: string;
  /** What to do about the failure class, when it is known. */
  readonly remedy: string | null;
}

const OUR_SIDE: Readonly<Record<string, string>> = {
  dns: 'the public DNS record of the server',
  tcp: 'our firewall or the NAT port forwarding',
  tls: 'our server certificate, or something in front of the server that answers TLS',
  identify: 'the port forwarding, which reaches another service',
  websocket: 'the server refusing agent channels',
};

const sum = (groups: readonly FailingGroup[], pick: (g: FailingGroup) => number): number => groups.reduce((n, g) => n + pick(g), 0);
const stepRank = (step: string | null): number => (step === null ? -1 : PORTCHECK_STEPS.indexOf(step as (typeof PORTCHECK_STEPS)[number]));

/** The failure group that speaks for a customer: the largest, and of equals the one that got furthest. */
function mainGroup(groups: readonly FailingGroup[]): FailingGroup {
  return [...groups].sort((a, b) => b.observers - a.observers || stepRank(b.step) - stepRank(a.step))[0]!;
}

function remedyOf(failureClass: string | null): string | null {
  return failureClass !== null && failureClass in PORTCHECK_FAILURES ? PORTCHECK_FAILURES[failureClass as PortcheckFailure].remedy : null;
}

function what(g: FailingGroup): string {
  return `${g.failureClass ?? 'an unclassified failure'} at the ${g.step ?? 'unknown'} step`;
}

/** True when some observer of the customer reaches the port (a connected device counts when it is not one of the failing ones). */
export function reachesPort(c: CustomerPortEvidence, agentPort: boolean): boolean {
  return c.ok > 0 || (agentPort && c.connected > sum(c.failing, (g) => g.devices));
}

const hasEvidence = (c: CustomerPortEvidence, agentPort: boolean): boolean => c.ok > 0 || c.failing.length > 0 || (agentPort && c.connected > 0);

/**
 * Decides the probable cause for every customer with failing observers of
 * one port. `agentPort` says whether check-ins count as reaching it.
 */
export function probableCauses(customers: readonly CustomerPortEvidence[], agentPort: boolean): CauseVerdict[] {
  const withEvidence = customers.filter((c) => hasEvidence(c, agentPort));
  const reaching = new Set(withEvidence.filter((c) => reachesPort(c, agentPort)).map((c) => c.customerId));
  const steps = new Set(withEvidence.map((c) => (c.failing.length > 0 ? (mainGroup(c.failing).step ?? 'unknown') : '(none)')));
  const allFailSameStep = reaching.size === 0 && withEvidence.length >= 2 && steps.size === 1;
  const classCounts = new Map<string | null, number>();
  for (const c of withEvidence) for (const g of c.failing) classCounts.set(g.failureClass, (classCounts.get(g.failureClass) ?? 0) + g.observers);
  const commonClass = [...classCounts.entries()].sort((a, b) => b[1] - a[1])[0]?.[0] ?? null;

  const verdicts: CauseVerdict[] = [];
  for (const c of customers) {
    if (c.failing.length === 0) continue;
    const failing = sum(c.failing, (g) => g.observers);
    const observers = c.ok + failing;
    const main = mainGroup(c.failing);
    const base = {
      customerId: c.customerId,
      step: main.step,
      failureClass: main.failureClass,
      since: Math.min(...c.failing.map((g) => g.since)),
      failing,
      observers,
      sample: c.failing.flatMap((g) => g.sample).slice(0, 5),
    };
    const verdict = (cause: ProbableCause, message: string, failureClass = main.failureClass): CauseVerdict => ({ ...base, cause, failureClass, message, remedy: remedyOf(failureClass) });
    if (reaching.has(c.customerId)) {
      const others = c.ok > 0 ? `${c.ok} other observer${c.ok === 1 ? '' : 's'}` : `${c.connected} checked-in device${c.connected === 1 ? '' : 's'}`;
      verdicts.push(verdict('single_device', `${failing} of the customer's observers fail (${what(main)}) while ${others} in the same network reach the port: most likely that device's own firewall, proxy or security software.`));
      continue;
    }
    const otherReaching = reaching.size > 0; // c itself does not reach (handled above)
    if (allFailSameStep) {
      const side = OUR_SIDE[main.step ?? ''] ?? 'our firewall, NAT or certificate';
      const mostly = commonClass === null ? '' : ` (mostly ${commonClass})`;
      verdicts.push(verdict('server_wide', `every customer with evidence (${withEvidence.length}) fails at the ${main.step ?? 'same'} step${mostly}: most likely on our side, ${side}.`, commonClass));
      continue;
    }
    if (!otherReaching) {
      const alone = withEvidence.length === 1;
      verdicts.push(
        verdict(
          'unknown',
          alone
            ? `every observer fails (${what(main)}), but no other customer has evidence for this port, so our side cannot be told from theirs.`
            : `every customer with evidence fails, but at different steps (${[...steps].sort().join(', ')}): no single cause stands out.`,
        ),
      );
      continue;
    }
    const portChecks = failing - sum(c.failing, (g) => g.devices);
    const enough = failing >= 2 || portChecks > 0 || (c.devices > 0 && sum(c.failing, (g) => g.devices) >= c.devices);
    verdicts.push(
      enough
        ? verdict('customer_wide', `all ${failing} of the customer's observers fail (${what(main)}) while other customers reach the port: most likely the customer's network, firewall or proxy.`)
        : verdict('unknown', `one of the customer's ${c.devices} devices fails (${what(main)}) and the others have not been heard from: too little evidence to tell the device from the network.`),
    );
  }
  return verdicts;
}
