/**
 * Wires port and visibility health for one server: the report builder,
 * public host resolution, console sightings, the alert monitor and its
 * webhook. buildServer makes one and hands `api` to the console API.
 */
import type { Logger } from 'pino';
import { systemResolve } from '../../common/portcheck/dns-step.js';
import type { ServerConfig } from '../config.js';
import type { HealthApiDeps } from '../health-api.js';
import type { Presence } from '../presence.js';
import { AlertsStore } from '../storage/alerts-store.js';
import { openDatabase, type Database } from '../storage/db.js';
import { HealthQueries, prunePortStates, type DevicePresenceFacts } from '../storage/health-queries.js';
import type { Storage } from '../storage/index.js';
import { AlertMonitor } from './alerts.js';
import { ConsoleSightings } from './console-sightings.js';
import { PublicHosts, type HostResolver } from './public-hosts.js';
import { HealthReporter } from './report.js';
import type { ListenerState } from './report-types.js';
import { WebhookSender } from './webhook.js';

/** What health needs from the server. */
export interface HealthServiceDeps {
  readonly config: Pick<ServerConfig, 'publicHosts' | 'consoleExposure' | 'alertWebhookUrl' | 'portAlertAfterMin' | 'alertIntervalMs' | 'alertGraceMs'>;
  readonly storage: Pick<Storage, 'db' | 'evidence' | 'events' | 'instanceId'>;
  /** The database file, for the report's own reader connections. */
  readonly dbFile: string;
  readonly certificates: () => readonly { readonly name: 'server' | 'ca'; readonly certPem: string }[];
  readonly listeners: () => readonly ListenerState[];
  readonly presenceOf: (d: DevicePresenceFacts) => Presence;
  /** Resolves public host names (default: the system resolver). */
  readonly resolveHost?: HostResolver;
  readonly now: () => number;
  readonly log: Logger;
}

/** Health of one server. */
export interface HealthService {
  readonly reporter: HealthReporter;
  readonly monitor: AlertMonitor;
  readonly alerts: AlertsStore;
  readonly webhook: WebhookSender | null;
  /** What the console API's health routes need. */
  readonly api: HealthApiDeps;
  /** Starts the alert timer. */
  start(): void;
  /** Stops the alert timer and the webhook. */
  close(): Promise<void>;
}

/** Reader connections of the report: its queries run in parallel, apart from check-in writes. */
const READERS = 3;

/** Builds the health service (nothing runs until start()). */
export async function buildHealthService(deps: HealthServiceDeps): Promise<HealthService> {
  const { config, storage, now } = deps;
  const log = deps.log.child({ component: 'health' });
  const readers: Database[] = [];
  for (let i = 0; i < READERS; i += 1) readers.push(await openDatabase(deps.dbFile));
  const queries = new HealthQueries(readers);
  const alerts = new AlertsStore(storage.db);
  const reporter = new HealthReporter({
    queries,
    consoleExposure: config.consoleExposure,
    listeners: deps.listeners,
    certificates: deps.certificates,
    publicHosts: new PublicHosts({ hosts: config.publicHosts, resolve: deps.resolveHost ?? systemResolve, now }),
    presenceOf: deps.presenceOf,
    now,
  });
  let lastPrune = -Infinity;
  const webhook = config.alertWebhookUrl ? new WebhookSender({ url: config.alertWebhookUrl, log }) : null;
  const monitor = new AlertMonitor({
    report: () => reporter.build(),
    store: alerts,
    webhook,
    instanceId: storage.instanceId,
    log,
    now,
    intervalMs: config.alertIntervalMs,
    portAlertAfterMs: config.portAlertAfterMin * 60_000,
    darkGraceMs: config.alertGraceMs,
    afterEvaluation: async () => {
      if (now() - lastPrune < 3_600_000) return;
      lastPrune = now();
      await prunePortStates(storage.db, now() - 2 * 86_400_000);
      // Raw evidence is kept a week: the report looks at 24 h, the rest is for people looking back.
      await storage.evidence.prune(now() - 7 * 86_400_000);
      // Outbox events too: their effects are in the evidence; each device's newest row stays for dedupe.
      await storage.events.prune(now() - 7 * 86_400_000);
    },
  });
  const sightings = new ConsoleSightings({ evidence: storage.evidence, log, now });
  return {
    reporter,
    monitor,
    alerts,
    webhook,
    api: { report: () => reporter.build(), alerts, sightings },
    start: () => monitor.start(),
    async close() {
      await monitor.close();
      await webhook?.close();
      await Promise.all(readers.map((r) => r.close()));
    },
  };
}
