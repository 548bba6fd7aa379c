/**
 * The OpenAPI 3.1 document of the console port, built from the routes as
 * they are registered (their TypeBox schemas are JSON Schema already) and
 * served at `/api/openapi.json`.
 */
import type { RouteOptions } from 'fastify';
import type { HttpsApp } from '../http-common.js';

interface Operation {
  readonly method: string;
  readonly path: string;
  readonly schema: RouteOptions['schema'];
  readonly access: string;
}

/** Turns `/api/v1/devices/:id` into `/api/v1/devices/{id}`. */
export function openApiPath(url: string): string {
  return url.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
}

function parameters(schema: RouteOptions['schema'], where: 'path' | 'query'): unknown[] {
  const s = (where === 'path' ? schema?.params : schema?.querystring) as { properties?: Record<string, unknown>; required?: string[] } | undefined;
  if (!s?.properties) return [];
  return Object.entries(s.properties).map(([name, sch]) => ({ name, in: where, required: where === 'path' || (s.required ?? []).includes(name), schema: sch }));
}

/** Collects routes from now on (call before registering them); `document()` builds the OpenAPI document. */
export function collectOpenApi(app: HttpsApp, info: { title: string; version: string }): { document: () => Record<string, unknown> } {
  const ops: Operation[] = [];
  app.addHook('onRoute', (r) => {
    const methods = (Array.isArray(r.method) ? r.method : [r.method]).filter((m) => m !== 'HEAD');
    // Only /api/ routes pass the access check (console/auth.ts); the page and the probe are open.
    const access = r.url.startsWith('/api/') ? ((r.config as { access?: string } | undefined)?.access ?? 'admin') : 'public';
    for (const m of methods) ops.push({ method: m.toLowerCase(), path: r.url, schema: r.schema, access });
  });
  const document = () => {
    const paths: Record<string, Record<string, unknown>> = {};
    for (const op of ops) {
      const p = openApiPath(op.path);
      const body = op.schema?.body as Record<string, unknown> | undefined;
      (paths[p] ??= {})[op.method] = {
        operationId: `${op.method}${p.replace(/[^A-Za-z0-9]+(.)?/g, (_m, c: string | undefined) => (c ? c.toUpperCase() : ''))}`,
        'x-rollcall-access': op.access,
        ...(op.access === 'public' ? { security: [] } : {}),
        parameters: [...parameters(op.schema, 'path'), ...parameters(op.schema, 'query')],
        ...(body ? { requestBody: { required: true, content: { 'application/json': { schema: body } } } } : {}),
        responses: {
          '200': { description: 'success (201 for creations, 204 without a body)' },
          default: { description: 'an error: { error: { code, message } } (docs/errors.md)' },
        },
      };
    }
    return {
      openapi: '3.1.0',
      info: { ...info, description: 'Rollcall console API. Routes marked x-rollcall-access "admin" need an admin; "scoped" ones answer within the caller\'s scope.' },
      components: {
        securitySchemes: {
          bearer: { type: 'http', scheme: 'bearer', description: 'API token (rca_…)' },
          session: { type: 'apiKey', in: 'cookie', name: '__Host-rollcall_session', description: 'console login session; state changes also need the x-csrf-token header' },
        },
      },
      security: [{ bearer: [] }, { session: [] }],
      paths,
    };
  };
  return { document };
}
