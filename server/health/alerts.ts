/**
 * Health alerts: evaluated on a timer from the health report, deduplicated
 * through the `alerts` table (each fires once when raised and once when
 * resolved), logged, and sent to the webhook in the background.
 *
 * Kinds:
 * - `customer_dark`: a customer that had connected agents has none online
 *   or late (not in the grace period after start, while agents reconnect;
 *   one alert for all when many customers go dark at once, which points at
 *   our side);
 * - `port_unreachable`: a required port fails from a customer's network
 *   (one alert for all when the cause is server-wide) for at least the
 *   configured minutes;
 * - `restricted_port_reachable`: a port declared restricted is reached from
 *   customers' networks;
 * - `certificate_expiring`: the server or CA certificate expires within 30
 *   days.
 */
import type { Logger } from 'pino';
import type { AlertsStore, NewAlert, StoredAlert } from '../storage/alerts-store.js';
import { alertView } from './alert-view.js';
import type { HealthReport } from './report-types.js';

/** Alert kinds, iterable. */
export const ALERT_KINDS = ['customer_dark', 'port_unreachable', 'restricted_port_reachable', 'certificate_expiring'] as const;
/** An alert kind. */
export type AlertKind = (typeof ALERT_KINDS)[number];

/** Version of the webhook payload; bumped on any incompatible change. */
export const WEBHOOK_PAYLOAD_VERSION = 1;

/** Dark customers that make one `customer_dark:many` alert instead of one each: at least this many … */
const MANY_DARK = 5;
/** … and more than this share of the customers with agents. */
const MANY_DARK_SHARE = 0.25;

/** When the conditions hold. */
export interface AlertTiming {
  readonly now: number;
  readonly portAlertAfterMs: number;
  /** False during the grace period after start: no `customer_dark` yet. */
  readonly darkAlerts: boolean;
}

type Add = (kind: AlertKind, id: string, subject: string, message: string, details: Record<string, unknown>) => void;

/** Server-wide port failures and restricted ports reached; returns the roles alerted for all customers at once. */
function portAlerts(report: HealthReport, opts: AlertTiming, add: Add): Set<string> {
  const serverWide = new Set<string>();
  for (const p of report.ports) {
    if (p.required && p.serverWide && opts.now - Date.parse(p.serverWide.since) >= opts.portAlertAfterMs) {
      serverWide.add(p.role);
      add('port_unreachable', `all:${p.role}`, `${p.role} port ${p.port}`, `the ${p.role} port ${p.port} fails from every customer since ${p.serverWide.since}: ${p.serverWide.message}`, {
        role: p.role,
        port: p.port,
        cause: 'server_wide',
        customers: p.observed.customersFailing,
        step: p.serverWide.step,
        failureClass: p.serverWide.failureClass,
        since: p.serverWide.since,
        remedy: p.serverWide.remedy,
      });
    }
    if (p.flag) add('restricted_port_reachable', p.role, `${p.role} port ${p.port}`, p.flag.message, { role: p.role, port: p.port, customers: p.flag.customers, since: p.flag.since });
  }
  return serverWide;
}

/** Dark customers: one alert each, or one for all when many went dark at once. Returns the customers alerted one by one. */
function darkAlerts(report: HealthReport, opts: AlertTiming, add: Add): Set<string> {
  const dark = opts.darkAlerts ? report.customers.filter((c) => c.dark && c.status !== 'unlinked') : [];
  const withAgents = report.customers.filter((c) => c.devices.online + c.devices.late + c.devices.offline > 0).length;
  if (dark.length >= MANY_DARK && dark.length > MANY_DARK_SHARE * withAgents) {
    add('customer_dark', 'many', `${dark.length} customers`, `${dark.length} of ${withAgents} customers have no agent online: most likely our side (the server, its network or its certificate)`, {
      customers: dark.length,
      of: withAgents,
      sample: dark.slice(0, 10).map((c) => c.name),
    });
    return new Set();
  }
  return new Set(dark.map((c) => c.groupId));
}

/** The alert conditions a report shows now. Pure. */
export function alertsFrom(report: HealthReport, opts: AlertTiming): NewAlert[] {
  const alerts: NewAlert[] = [];
  const add: Add = (kind, id, subject, message, details) => alerts.push({ key: `${kind}:${id}`, kind, subject, message, details });
  const serverWide = portAlerts(report, opts, add);
  const dark = darkAlerts(report, opts, add);
  for (const c of report.customers) {
    if (c.problems === 0) continue;
    if (dark.has(c.groupId)) {
      add('customer_dark', c.groupId, c.name, `every agent of customer "${c.name}" is offline (${c.devices.offline} offline; last check-in ${c.lastCheckinAt ?? 'never'})`, {
        customer: c.name,
        groupId: c.groupId,
        groupPath: c.groupPath,
        devices: c.devices,
        lastCheckinAt: c.lastCheckinAt,
      });
    }
    for (const u of c.unreachable) {
      if (!u.required || u.cause === 'single_device' || (u.cause === 'server_wide' && serverWide.has(u.role))) continue;
      if (opts.now - Date.parse(u.since) < opts.portAlertAfterMs) continue;
      const { role, port, cause, step, failureClass, since, remedy } = u;
      const message = `the ${role} port ${port} is unreachable from customer "${c.name}" since ${since}: ${u.message}`;
      add('port_unreachable', `${c.groupId}:${role}`, c.name, message, { customer: c.name, groupId: c.groupId, role, port, cause, step, failureClass, since, remedy });
    }
  }
  for (const cert of report.certificates) {
    if (!cert.expiringSoon) continue;
    const label = cert.name === 'ca' ? 'CA certificate' : 'server certificate';
    const when = cert.daysLeft < 0 ? `expired on ${cert.notAfter}` : `expires on ${cert.notAfter} (in ${cert.daysLeft} days)`;
    add('certificate_expiring', cert.name, label, `the ${label} (${cert.subject}) ${when}`, { certificate: cert.name, notAfter: cert.notAfter, daysLeft: cert.daysLeft });
  }
  return alerts;
}

/** Where alerts go besides the log. */
export interface AlertSink {
  send(payload: unknown): boolean;
}

/** What the monitor needs. */
export interface AlertMonitorDeps {
  readonly report: () => Promise<HealthReport>;
  readonly store: Pick<AlertsStore, 'open' | 'raise' | 'resolve'>;
  readonly webhook: AlertSink | null;
  readonly instanceId: string;
  readonly log: Logger;
  readonly now: () => number;
  readonly intervalMs: number;
  readonly portAlertAfterMs: number;
  /** No `customer_dark` until this long after the monitor was made (agents reconnect after a restart). */
  readonly darkGraceMs: number;
  /** Housekeeping run after each evaluation (pruning old port states). */
  readonly afterEvaluation?: () => Promise<unknown>;
}

/** The outcome of one evaluation. */
export interface Evaluation {
  readonly raised: readonly StoredAlert[];
  readonly resolved: readonly StoredAlert[];
}

/** Evaluates the alert conditions periodically. */
export class AlertMonitor {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<Evaluation> | null = null;
  private closed = false;
  private readonly since: number;

  constructor(private readonly deps: AlertMonitorDeps) {
    this.since = deps.now();
  }

  /** Starts the timer (unref'd: it never keeps the process alive). */
  start(): void {
    if (this.timer || this.closed) return;
    this.timer = setInterval(() => {
      if (!this.running) void this.evaluate().catch((err: unknown) => this.deps.log.error({ err: (err as Error).message }, 'alert evaluation failed'));
    }, this.deps.intervalMs);
    this.timer.unref();
  }

  /** Evaluates now (joining an evaluation already running). */
  evaluate(): Promise<Evaluation> {
    if (!this.running) {
      this.running = this.run().finally(() => {
        this.running = null;
      });
    }
    return this.running;
  }

  /** Stops the timer and waits for a running evaluation. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.running?.catch(() => undefined);
  }

  private async run(): Promise<Evaluation> {
    const { deps } = this;
    const now = deps.now();
    const timing = { now, portAlertAfterMs: deps.portAlertAfterMs, darkAlerts: now - this.since >= deps.darkGraceMs };
    const current = new Map(alertsFrom(await deps.report(), timing).map((a) => [a.key, a]));
    const open = new Map((await deps.store.open()).map((a) => [a.key, a]));
    const raised: StoredAlert[] = [];
    const resolved: StoredAlert[] = [];
    for (const [key, a] of current) {
      if (open.has(key) || this.closed) continue;
      const stored = await deps.store.raise(a, now);
      raised.push(stored);
      deps.log.warn({ alert: a.kind, key, subject: a.subject, details: a.details }, a.message);
      this.notify('raised', stored);
    }
    for (const [key] of open) {
      if (current.has(key) || this.closed) continue;
      const stored = await deps.store.resolve(key, now);
      if (!stored) continue;
      resolved.push(stored);
      deps.log.info({ alert: stored.kind, key, subject: stored.subject }, `resolved: ${stored.message}`);
      this.notify('resolved', stored);
    }
    await deps.afterEvaluation?.();
    return { raised, resolved };
  }

  private notify(event: 'raised' | 'resolved', a: StoredAlert): void {
    this.deps.webhook?.send({
      version: WEBHOOK_PAYLOAD_VERSION,
      event,
      instanceId: this.deps.instanceId,
      sentAt: new Date(this.deps.now()).toISOString(),
      alert: alertView(a),
    });
  }
}
