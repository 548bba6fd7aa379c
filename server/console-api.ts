/**
 * The console port: the web console, the REST API for people (cookie
 * sessions) and automation (bearer API tokens), the live feed, the OpenAPI
 * document and the identification probe. Every `/api/` route passes the
 * access check of console/auth.ts and narrows to the caller's scope
 * (console/scope.ts). Routes are listed in docs/api.md.
 */
import Fastify, { LogController, type FastifyBaseLogger } from 'fastify';
import type { Logger } from 'pino';
import { Type, type Static } from '@sinclair/typebox';
import type { KeyedCert } from '../common/pki.js';
import { httpError } from './errors.js';
import { DEFAULT_AUTH_SETTINGS, installAuth, scopeOf, type AuthSettings } from './console/auth.js';
import { registerApiTokenRoutes } from './console/api-token-routes.js';
import { registerDeviceRoutes } from './console/device-routes.js';
import { registerFeedRoute } from './console/feed-route.js';
import type { LiveFeed } from './console/live-feed.js';
import { collectOpenApi } from './console/openapi.js';
import { assertSeesGroup, visibleGroups } from './console/scope.js';
import { registerStaticUi } from './console/static-ui.js';
import { registerUserRoutes } from './console/user-routes.js';
import { addIdentifyRoute, installErrorHandling, type HttpsApp } from './http-common.js';
import type { GroupAdmin } from './group-admin.js';
import type { Customers } from './msp/customers.js';
import type { MspSync } from './msp/sync-service.js';
import { registerMspRoutes } from './msp-api.js';
import { registerHealthRoutes, type HealthApiDeps } from './health-api.js';
import { registerInstallerRoutes } from './installer-api.js';
import type { Installers } from './installer/installers.js';
import type { Questions } from './questions.js';
import { registerQuestionRoutes } from './questions-api.js';
import { registerCaRoutes } from './ca-api.js';
import type { CaRotation } from './ca-rotation.js';
import type { SessionRegistry } from './session-registry.js';
import type { Storage } from './storage/index.js';
import type { EnrollmentToken } from './storage/tokens-store.js';

/** Facts about this server that the API reports. */
export interface ServerFacts {
  readonly instanceId: string;
  readonly version: string;
  readonly caPin: string;
  readonly publicHosts: readonly string[];
  readonly agentPort: () => number;
  readonly consolePort: () => number;
  readonly checkinIntervalSec: number;
}

/** What the console API needs. */
export interface ConsoleApiDeps {
  readonly tls: { readonly server: KeyedCert; readonly caCertPem: string; readonly handshakeTimeoutMs: number };
  readonly storage: Storage;
  readonly groupAdmin: GroupAdmin;
  readonly msp: MspSync;
  readonly customers: Customers;
  readonly registry: SessionRegistry;
  readonly facts: ServerFacts;
  readonly health: HealthApiDeps;
  readonly installers: Installers;
  readonly questions: Questions;
  /** The live feed the agent listener publishes into. */
  readonly feed: LiveFeed;
  /** Login and session numbers (default {@link DEFAULT_AUTH_SETTINGS}). */
  readonly auth?: AuthSettings;
  /** CA rotation (routes /api/v1/ca…). */
  readonly ca?: CaRotation;
  readonly now: () => number;
  readonly log: Logger;
}

const IdParam = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) });
const CreateToken = Type.Object(
  {
    group: Type.String({ minLength: 1, maxLength: 1024 }),
    ttlSec: Type.Optional(Type.Integer({ minimum: 60, maximum: 10 * 365 * 86_400 })),
    maxUses: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000 })),
    note: Type.Optional(Type.String({ maxLength: 256 })),
  },
  { additionalProperties: false },
);
const CreateGroup = Type.Object({ path: Type.String({ minLength: 1, maxLength: 1024 }) }, { additionalProperties: false });
const RenameGroup = Type.Object({ name: Type.String({ minLength: 1, maxLength: 128 }) }, { additionalProperties: false });
const MoveGroup = Type.Object({ parent: Type.String({ minLength: 1, maxLength: 1024 }) }, { additionalProperties: false });
const GroupParam = Type.Object({ id: Type.String({ minLength: 1, maxLength: 1024 }) });

/** The ready-to-paste agent command lines for an enrollment token. */
export function agentCommand(facts: ServerFacts, secret: string): string {
  const host = facts.publicHosts[0] ?? 'localhost';
  return `rollcall-agent enroll --server ${host}:${facts.agentPort()} --ca-pin ${facts.caPin} --token ${secret} && rollcall-agent run`;
}

function tokenView(t: EnrollmentToken, groupPaths: ReadonlyMap<string, string>) {
  return {
    id: t.id,
    groupId: t.groupId,
    groupPath: t.groupId ? (groupPaths.get(t.groupId) ?? null) : null,
    createdAt: new Date(t.createdAt).toISOString(),
    expiresAt: t.expiresAt === null ? null : new Date(t.expiresAt).toISOString(),
    maxUses: t.maxUses,
    uses: t.uses,
    revokedAt: t.revokedAt === null ? null : new Date(t.revokedAt).toISOString(),
    note: t.note,
  };
}

/** Builds (but does not start) the console listener. */
export async function buildConsoleApi(deps: ConsoleApiDeps): Promise<HttpsApp> {
  const { storage, registry } = deps;
  const app = Fastify({
    loggerInstance: deps.log as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: false } },
    bodyLimit: 64 * 1024,
    https: { key: deps.tls.server.keyPem, cert: deps.tls.server.certPem + deps.tls.caCertPem, minVersion: 'TLSv1.2', handshakeTimeout: deps.tls.handshakeTimeoutMs },
  });
  installErrorHandling(app);
  const openApi = collectOpenApi(app, { title: 'Rollcall console API', version: deps.facts.version });
  addIdentifyRoute(app, 'console', deps.facts.instanceId);
  registerHealthRoutes(app, deps.health, (req) => scopeOf(req, storage)); // before the access hook, so that its sighting hook also sees refused requests
  installAuth(app, { storage, settings: deps.auth ?? DEFAULT_AUTH_SETTINGS, now: deps.now, log: deps.log });
  const scoped = { access: 'scoped' } as const;

  app.get('/api/openapi.json', { config: { access: 'public' } }, async () => openApi.document());
  registerStaticUi(app);

  app.get('/api/v1/server', { config: scoped }, async () => ({
    instanceId: deps.facts.instanceId,
    version: deps.facts.version,
    caPin: deps.facts.caPin,
    publicHosts: deps.facts.publicHosts,
    agentPort: deps.facts.agentPort(),
    consolePort: deps.facts.consolePort(),
    checkinIntervalSec: deps.facts.checkinIntervalSec,
    connectedAgents: registry.size,
  }));

  registerDeviceRoutes(app, {
    storage,
    registry,
    groupAdmin: deps.groupAdmin,
    checkinIntervalSec: deps.facts.checkinIntervalSec,
    onMoved: (id) => deps.feed.forget(id),
    now: deps.now,
    log: deps.log,
  });
  registerFeedRoute(app, { storage, feed: deps.feed });
  registerApiTokenRoutes(app, { storage, now: deps.now, log: deps.log });
  registerUserRoutes(app, { storage, settings: deps.auth ?? DEFAULT_AUTH_SETTINGS, now: deps.now, log: deps.log });

  app.get('/api/v1/groups', { config: scoped }, async (req) => {
    const scope = await scopeOf(req, storage);
    const counts = await storage.devices.countByGroup();
    return { groups: visibleGroups(scope, await storage.groups.list()).map((g) => ({ ...g, createdAt: new Date(g.createdAt).toISOString(), devices: counts.get(g.id) ?? 0 })) };
  });

  app.post<{ Body: Static<typeof CreateGroup> }>('/api/v1/groups', { schema: { body: CreateGroup } }, async (req, reply) => {
    const group = await deps.groupAdmin.create(req.body.path);
    deps.log.info({ group: group.path }, 'group created');
    return reply.code(201).send({ ...group, createdAt: new Date(group.createdAt).toISOString(), devices: 0 });
  });

  app.delete<{ Params: Static<typeof GroupParam> }>('/api/v1/groups/:id', { schema: { params: GroupParam } }, async (req, reply) => {
    const group = await deps.groupAdmin.delete(req.params.id);
    deps.log.info({ group: group.path }, 'group deleted');
    return reply.code(204).send();
  });

  const groupOut = async (id: string) => {
    const counts = await storage.devices.countByGroup();
    const g = (await storage.groups.get(id))!;
    return { ...g, createdAt: new Date(g.createdAt).toISOString(), devices: counts.get(g.id) ?? 0 };
  };
  app.post<{ Params: Static<typeof GroupParam>; Body: Static<typeof RenameGroup> }>(
    '/api/v1/groups/:id/rename',
    { schema: { params: GroupParam, body: RenameGroup } },
    async (req) => {
      const group = await deps.groupAdmin.rename(req.params.id, req.body.name);
      deps.log.info({ group: group.path }, 'group renamed');
      return groupOut(group.id);
    },
  );
  app.post<{ Params: Static<typeof GroupParam>; Body: Static<typeof MoveGroup> }>(
    '/api/v1/groups/:id/move',
    { schema: { params: GroupParam, body: MoveGroup } },
    async (req) => {
      const group = await deps.groupAdmin.move(req.params.id, req.body.parent);
      deps.log.info({ group: group.path }, 'group moved');
      return groupOut(group.id);
    },
  );

  app.get('/api/v1/enrollment-tokens', { config: scoped }, async (req) => {
    const scope = await scopeOf(req, storage);
    const paths = new Map((await storage.groups.list()).map((g) => [g.id, g.path]));
    return { tokens: (await storage.enrollTokens.list()).filter((t) => scope.sees(t.groupId)).map((t) => tokenView(t, paths)) };
  });

  app.post<{ Body: Static<typeof CreateToken> }>('/api/v1/enrollment-tokens', { schema: { body: CreateToken }, config: scoped }, async (req, reply) => {
    const scope = await scopeOf(req, storage);
    const group = await storage.groups.resolve(req.body.group).catch(() => undefined);
    if (!group) throw httpError('GROUP_NOT_FOUND', `no group "${req.body.group}"`);
    assertSeesGroup(scope, group, req.body.group);
    await deps.groupAdmin.assertCanHoldDevices(group);
    const now = deps.now();
    const { token, secret } = await storage.enrollTokens.create({
      groupId: group.id,
      expiresAt: req.body.ttlSec === undefined ? now + 7 * 86_400_000 : now + req.body.ttlSec * 1000,
      maxUses: req.body.maxUses ?? null,
      note: req.body.note,
      now,
    });
    deps.log.info({ tokenId: token.id, group: group.path, maxUses: token.maxUses }, 'enrollment token created');
    const paths = new Map([[group.id, group.path]]);
    return reply.code(201).send({ ...tokenView(token, paths), token: secret, agentCommand: agentCommand(deps.facts, secret) });
  });

  app.post<{ Params: Static<typeof IdParam> }>('/api/v1/enrollment-tokens/:id/revoke', { schema: { params: IdParam }, config: scoped }, async (req) => {
    const scope = await scopeOf(req, storage);
    const existing = await storage.enrollTokens.get(req.params.id);
    if (!existing || !scope.sees(existing.groupId)) throw httpError('TOKEN_NOT_FOUND', `no enrollment token "${req.params.id}"`);
    await storage.enrollTokens.revoke(existing.id, deps.now());
    const paths = new Map((await storage.groups.list()).map((g) => [g.id, g.path]));
    return tokenView((await storage.enrollTokens.get(existing.id))!, paths);
  });

  registerInstallerRoutes(app, { installers: deps.installers, log: deps.log });
  registerQuestionRoutes(app, { questions: deps.questions, storage, now: deps.now });
  app.addHook('preClose', async () => deps.feed.close()); // open streams would hold the close up
  registerMspRoutes(app, { storage, msp: deps.msp, customers: deps.customers, registry, instanceId: deps.facts.instanceId, now: deps.now, log: deps.log });
  if (deps.ca) registerCaRoutes(app, deps.ca);
  return app;
}
