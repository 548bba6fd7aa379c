/**
 * Console API of port and visibility health: `GET /api/v1/health` (the
 * report plus open alerts), and the hook that records console sightings.
 * Registered by console-api.ts before its bearer-token hook, so that the
 * sighting hook sees refused requests too; the route itself stays behind
 * the token check (fastify applies every hook of the instance to every
 * route). Routes are listed in docs/api.md.
 */
import type { FastifyRequest } from 'fastify';
import type { HttpsApp } from './http-common.js';
import type { Scope } from './console/scope.js';
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


/**
 * The health answer for a customer-scoped caller: its own customers' rows only, the server's ports
 * without the counts over all customers, its certificates, and no alerts (they name other customers).
 */
export function scopedHealth(answer: HealthAnswer, scope: Scope): HealthAnswer {
  if (scope.admin) return answer;
  const customers = answer.customers.filter((c) => scope.sees(c.groupId));
  return {
    ...answer,
    ports: answer.ports.map((p) => ({
      ...p,
      observed: { customersReaching: 0, customersFailing: 0, customersPartlyFailing: 0, failingSince: null },
      seen: { addresses: 0, customers: 0 },
      flag: null,
    })),
    publicHosts: [],
    agentCertificatesExpiring: 0,
    totals: { ...answer.totals, customers: customers.length, customersWithProblems: customers.filter((c) => c.problems > 0).length },
    customers,
    alerts: [],
  };
}

/** Registers the sighting hook and the health route (scoped through `scopeOf`: see {@link scopedHealth}). */
export function registerHealthRoutes(app: HttpsApp, deps: HealthApiDeps, scopeOf?: (req: FastifyRequest) => Promise<Scope>): void {
  app.addHook('onRequest', async (req) => {
    deps.sightings.note(req.socket.remoteAddress);
  });

  app.get('/api/v1/health', { config: { access: scopeOf ? 'scoped' : 'admin' } }, async (req): Promise<HealthAnswer> => {
    const [report, open] = await Promise.all([deps.report(), deps.alerts.open()]);
    const answer = { ...report, alerts: open.map(alertView) };
    return scopeOf ? scopedHealth(answer, await scopeOf(req)) : answer;
  });
}
