/**
 * Console API of port and visibility health: `GET /api/v1/health` (the
 * report plus open alerts), and the hook that records console sightings.
 * Registered by console-api.ts before its bearer-token hook, so that the
 * sighting hook sees refused requests too; the route itself stays behind
 * the token check (fastify applies every hook of the instance to every
 * route). Routes are listed in docs/api.md.
 */
import type { HttpsApp } from './http-common.js';
import type { ConsoleSightings } from './health/console-sightings.js';
import type { HealthReport } from './health/report-types.js';
import { alertView, type AlertView } from './health/alert-view.js';
import type { AlertsStore } from './storage/alerts-store.js';

/** The answer of `GET /api/v1/health`. */
export interface HealthAnswer extends HealthReport {
  readonly alerts: readonly AlertView[];
}

/** What the health routes need. */
export interface HealthApiDeps {
  readonly report: () => Promise<HealthReport>;
  readonly alerts: Pick<AlertsStore, 'open'>;
  readonly sightings: Pick<ConsoleSightings, 'note'>;
}


/** Registers the sighting hook and the health route. */
export function registerHealthRoutes(app: HttpsApp, deps: HealthApiDeps): void {
  app.addHook('onRequest', async (req) => {
    deps.sightings.note(req.socket.remoteAddress);
  });

  app.get('/api/v1/health', async (): Promise<HealthAnswer> => {
    const [report, open] = await Promise.all([deps.report(), deps.alerts.open()]);
    return { ...report, alerts: open.map(alertView) };
  });
}
