/**
 * API tokens for automation, scoped like users: an admin token (no group)
 * sees everything; a token with a group sees that group's subtree only. A
 * customer-scoped user can make tokens only inside its own subtree, and
 * sees and revokes only those.
 */
import { Type, type Static } from '@sinclair/typebox';
import { httpError } from '../errors.js';
import type { HttpsApp } from '../http-common.js';
import type { Storage } from '../storage/index.js';
import type { ApiToken } from '../storage/tokens-store.js';
import { scopeOf } from './auth.js';
import { assertSeesGroup, type Scope } from './scope.js';

const CreateApiToken = Type.Object(
  { name: Type.String({ minLength: 1, maxLength: 128 }), group: Type.Optional(Type.String({ minLength: 1, maxLength: 1024 })) },
  { additionalProperties: false },
);
const IdParam = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) });

function view(t: ApiToken, paths: ReadonlyMap<string, string>) {
  return {
    id: t.id,
    name: t.name,
    scope: t.homeGroupId === null ? 'admin' : 'group',
    groupId: t.homeGroupId,
    groupPath: t.homeGroupId === null ? null : (paths.get(t.homeGroupId) ?? null),
    createdAt: new Date(t.createdAt).toISOString(),
    revokedAt: t.revokedAt === null ? null : new Date(t.revokedAt).toISOString(),
  };
}

const visibleToken = (scope: Scope, t: ApiToken): boolean => scope.admin || (t.homeGroupId !== null && scope.sees(t.homeGroupId));

/** Registers the API token routes. */
export function registerApiTokenRoutes(app: HttpsApp, deps: { storage: Storage; now: () => number; log: import('pino').Logger }): void {
  const { storage } = deps;
  const paths = async () => new Map((await storage.groups.list()).map((g) => [g.id, g.path]));
  const scoped = { access: 'scoped' } as const;

  app.get('/api/v1/api-tokens', { config: scoped }, async (req) => {
    const scope = await scopeOf(req, storage);
    const p = await paths();
    return { tokens: (await storage.apiTokens.list()).filter((t) => visibleToken(scope, t)).map((t) => view(t, p)) };
  });

  app.post<{ Body: Static<typeof CreateApiToken> }>('/api/v1/api-tokens', { schema: { body: CreateApiToken }, config: scoped }, async (req, reply) => {
    const scope = await scopeOf(req, storage);
    let groupId: string | null = null;
    if (req.body.group !== undefined) {
      const g = await storage.groups.resolve(req.body.group).catch(() => undefined);
      if (!g) throw httpError('GROUP_NOT_FOUND', `no group "${req.body.group}"`);
      assertSeesGroup(scope, g, req.body.group);
      groupId = g.parentId === null && scope.admin ? null : g.id;
    } else if (!scope.admin) {
      groupId = scope.homeGroupId;
    }
    const { token, secret } = await storage.apiTokens.create(req.body.name, deps.now(), groupId);
    deps.log.info({ tokenId: token.id, scope: groupId ?? 'admin', by: req.principal!.name }, 'API token created');
    return reply.code(201).send({ ...view(token, await paths()), token: secret });
  });

  app.post<{ Params: Static<typeof IdParam> }>('/api/v1/api-tokens/:id/revoke', { schema: { params: IdParam }, config: scoped }, async (req) => {
    const scope = await scopeOf(req, storage);
    const t = await storage.apiTokens.get(req.params.id);
    if (!t || !visibleToken(scope, t)) throw httpError('API_TOKEN_NOT_FOUND', `no API token "${req.params.id}"`);
    await storage.apiTokens.revoke(t.id, deps.now());
    deps.log.info({ tokenId: t.id, by: req.principal!.name }, 'API token revoked');
    return view((await storage.apiTokens.get(t.id))!, await paths());
  });
}
