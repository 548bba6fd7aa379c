/**
 * `GET /api/v1/feed`: the live feed as server-sent events, for a session
 * (the browser's EventSource sends the cookie) or an API token. The
 * subscriber sees only devices in its scope, optionally narrowed to one
 * customer's (or any visible group's) subtree. Its visible groups are
 * re-resolved every few seconds, so moves of groups and devices are
 * followed.
 */
import { Type, type Static } from '@sinclair/typebox';
import { httpError } from '../errors.js';
import type { HttpsApp } from '../http-common.js';
import type { Storage } from '../storage/index.js';
import { scopeOf } from './auth.js';
import type { LiveFeed } from './live-feed.js';
import { assertSeesGroup, scopeFor, subtreeIds, type Principal } from './scope.js';

const FeedQuery = Type.Object({ customer: Type.Optional(Type.String({ minLength: 1, maxLength: 1024 })) }, { additionalProperties: false });

/** How often a subscriber's visible groups are re-resolved. */
const RESCOPE_MS = 2000;

/** Registers the feed route. */
export function registerFeedRoute(app: HttpsApp, deps: { storage: Storage; feed: LiveFeed }): void {
  const { storage, feed } = deps;
  app.get<{ Querystring: Static<typeof FeedQuery> }>('/api/v1/feed', { schema: { querystring: FeedQuery }, config: { access: 'scoped' } }, async (req, reply) => {
    const scope = await scopeOf(req, storage);
    const principal: Principal = req.principal!;
    let rootId: string | null = null;
    if (req.query.customer) {
      const g = await storage.groups.resolve(req.query.customer).catch(() => undefined);
      if (!g) throw httpError('GROUP_NOT_FOUND', `no group "${req.query.customer}"`);
      assertSeesGroup(scope, g, req.query.customer);
      rootId = g.id;
    }
    const resolve = async (): Promise<ReadonlySet<string> | null> => {
      const groups = await storage.groups.list();
      const s = scopeFor(principal, groups);
      if (rootId === null) return s.groupIds;
      return new Set(subtreeIds(groups, rootId).filter((id) => s.sees(id)));
    };
    let visible = await resolve();
    let resolvedAt = Date.now();
    let resolving = false;
    const visibleGroups = (): ReadonlySet<string> | null => {
      if (!resolving && Date.now() - resolvedAt >= RESCOPE_MS) {
        resolving = true;
        resolve()
          .then((v) => {
            visible = v;
            resolvedAt = Date.now();
          })
          .catch((err: Error) => req.log.warn({ err: err.message }, 'live feed scope refresh failed'))
          .finally(() => (resolving = false));
      }
      return visible;
    };
    reply.hijack();
    req.log.info({ user: principal.name, customer: rootId }, 'live feed opened');
    feed.subscribe(reply.raw, { visibleGroups, admin: scope.admin });
  });
}
