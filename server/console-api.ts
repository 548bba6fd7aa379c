/**
 * The console port: the REST API for admins and automation, behind bearer
 * API tokens, plus the identification probe. (The web UI joins it later.)
 * Routes are listed in docs/api.md.
 */
import Fastify, { LogController, type FastifyBaseLogger } from 'fastify';
import type { Logger } from 'pino';
import { Type, type Static } from '@sinclair/typebox';
import { CloseCode } from '../common/close-codes.js';
import type { KeyedCert } from '../common/pki.js';
import { deviceView, type ViewContext } from './device-view.js';
import { httpError } from './errors.js';
import { addIdentifyRoute, installErrorHandling, type HttpsApp } from './http-common.js';
import type { AgentSession } from './agent-session.js';
import type { GroupAdmin } from './group-admin.js';
import type { Customers } from './msp/customers.js';
import type { MspSync } from './msp/sync-service.js';
import { registerMspRoutes } from './msp-api.js';
import { registerHealthRoutes, type HealthApiDeps } from './health-api.js';
import { registerCaRoutes } from './ca-api.js';
import type { CaRotation } from './ca-rotation.js';
import type { SessionRegistry } from './session-registry.js';
import type { Storage } from './storage/index.js';
import type { Device } from './storage/devices-store.js';
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
  readonly registry: SessionRegistry<AgentSession>;
  readonly facts: ServerFacts;
  readonly health: HealthApiDeps;
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
const MoveDevice = Type.Object({ group: Type.String({ minLength: 1, maxLength: 1024 }) }, { additionalProperties: false });
const DeviceQuery = Type.Object({ group: Type.Optional(Type.String({ maxLength: 1024 })) }, { additionalProperties: false });

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
  addIdentifyRoute(app, 'console', deps.facts.instanceId);
  registerHealthRoutes(app, deps.health); // before the token hook, so that its sighting hook also sees refused requests

  app.addHook('onRequest', async (req) => {
    if (!req.url.startsWith('/api/')) return;
    const m = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '');
    const token = m ? await storage.apiTokens.verify(m[1]!) : undefined;
    if (!token) {
      deps.log.warn({ reason: 'UNAUTHORIZED', address: req.socket.remoteAddress, url: req.url.split('?')[0] }, 'API request refused');
      throw httpError('UNAUTHORIZED', 'a valid API token is required (Authorization: Bearer …)');
    }
  });

  const viewContext = async (): Promise<ViewContext> => ({
    groupPaths: new Map((await storage.groups.list()).map((g) => [g.id, g.path])),
    isConnected: (id) => registry.get(id) !== undefined,
    lastDisconnect: (id) => registry.lastDisconnect(id),
    defaultIntervalSec: deps.facts.checkinIntervalSec,
    now: deps.now(),
  });
  const mustGetDevice = async (id: string): Promise<Device> => {
    const d = await storage.devices.get(id);
    if (!d) throw httpError('DEVICE_NOT_FOUND', `no device "${id}"`);
    return d;
  };

  app.get('/api/v1/server', async () => ({
    instanceId: deps.facts.instanceId,
    version: deps.facts.version,
    caPin: deps.facts.caPin,
    publicHosts: deps.facts.publicHosts,
    agentPort: deps.facts.agentPort(),
    consolePort: deps.facts.consolePort(),
    checkinIntervalSec: deps.facts.checkinIntervalSec,
    connectedAgents: registry.size,
  }));

  app.get<{ Querystring: Static<typeof DeviceQuery> }>('/api/v1/devices', { schema: { querystring: DeviceQuery } }, async (req) => {
    let groupIds: string[] | undefined;
    if (req.query.group) {
      const root = await storage.groups.resolve(req.query.group);
      const all = await storage.groups.list();
      groupIds = all.filter((g) => g.path === root.path || g.path.startsWith(`${root.path}/`)).map((g) => g.id);
    }
    const ctx = await viewContext();
    return { devices: (await storage.devices.list(groupIds)).map((d) => deviceView(d, ctx)) };
  });

  app.get<{ Params: Static<typeof IdParam> }>('/api/v1/devices/:id', { schema: { params: IdParam } }, async (req) =>
    deviceView(await mustGetDevice(req.params.id), await viewContext()),
  );

  app.post<{ Params: Static<typeof IdParam> }>('/api/v1/devices/:id/revoke', { schema: { params: IdParam } }, async (req) => {
    const device = await mustGetDevice(req.params.id);
    const changed = await storage.devices.revoke(device.id, deps.now());
    registry.get(device.id)?.close(CloseCode.REVOKED, 'the device was revoked');
    deps.log.info({ deviceId: device.id, alreadyRevoked: !changed }, 'device revoked');
    return deviceView((await storage.devices.get(device.id))!, await viewContext());
  });

  app.post<{ Params: Static<typeof IdParam>; Body: Static<typeof MoveDevice> }>(
    '/api/v1/devices/:id/move',
    { schema: { params: IdParam, body: MoveDevice } },
    async (req) => {
      const device = await mustGetDevice(req.params.id);
      const group = await storage.groups.resolve(req.body.group);
      await deps.groupAdmin.assertCanHoldDevices(group);
      await storage.devices.move(device.id, group.id);
      deps.log.info({ deviceId: device.id, group: group.path }, 'device moved');
      return deviceView((await storage.devices.get(device.id))!, await viewContext());
    },
  );

  app.get('/api/v1/groups', async () => {
    const counts = await storage.devices.countByGroup();
    return { groups: (await storage.groups.list()).map((g) => ({ ...g, createdAt: new Date(g.createdAt).toISOString(), devices: counts.get(g.id) ?? 0 })) };
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

  app.get('/api/v1/enrollment-tokens', async () => {
    const paths = new Map((await storage.groups.list()).map((g) => [g.id, g.path]));
    return { tokens: (await storage.enrollTokens.list()).map((t) => tokenView(t, paths)) };
  });

  app.post<{ Body: Static<typeof CreateToken> }>('/api/v1/enrollment-tokens', { schema: { body: CreateToken } }, async (req, reply) => {
    const group = await storage.groups.resolve(req.body.group);
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

  app.post<{ Params: Static<typeof IdParam> }>('/api/v1/enrollment-tokens/:id/revoke', { schema: { params: IdParam } }, async (req) => {
    const existing = await storage.enrollTokens.get(req.params.id);
    if (!existing) throw httpError('TOKEN_NOT_FOUND', `no enrollment token "${req.params.id}"`);
    await storage.enrollTokens.revoke(existing.id, deps.now());
    const paths = new Map((await storage.groups.list()).map((g) => [g.id, g.path]));
    return tokenView((await storage.enrollTokens.get(existing.id))!, paths);
  });

  registerMspRoutes(app, { storage, msp: deps.msp, customers: deps.customers, registry, instanceId: deps.facts.instanceId, now: deps.now, log: deps.log });
  if (deps.ca) registerCaRoutes(app, deps.ca);
  return app;
}
