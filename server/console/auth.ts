/**
 * Authentication on the console port: cookie sessions for people (login,
 * logout, CSRF), bearer API tokens for automation, the access check every
 * `/api/` route passes through, login rate limiting and user lockout, and
 * the security headers of every answer. Numbers are in docs/console.md.
 *
 * Access is denied by default: a route is admin-only unless it says
 * `config: { access: 'scoped' }` (any principal; the route narrows by
 * scope) or `config: { access: 'public' }` (no principal needed).
 */
import crypto from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { Type, type Static } from '@sinclair/typebox';
import { httpError } from '../errors.js';
import { FailureLimiter } from '../failure-limiter.js';
import type { HttpsApp } from '../http-common.js';
import type { Storage } from '../storage/index.js';
import type { LockoutPolicy } from '../storage/users-store.js';
import type { SessionLifetimes } from '../storage/sessions-store.js';
import { scopeFor, type Principal, type Scope } from './scope.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Who may call the route: anyone, any principal (narrowed by scope), or admins (the default). */
    access?: 'public' | 'scoped' | 'admin';
  }
  interface FastifyRequest {
    principal: Principal | null;
  }
}

/** The session cookie: `__Host-` pins it to this origin, path / and Secure. */
export const SESSION_COOKIE = '__Host-rollcall_session';
/** The header that carries the CSRF token on state-changing requests from a session. */
export const CSRF_HEADER = 'x-csrf-token';

/** Login and session numbers (defaults in {@link DEFAULT_AUTH_SETTINGS}). */
export interface AuthSettings {
  readonly session: SessionLifetimes;
  readonly lockout: LockoutPolicy;
  /** Failed logins allowed per source address per window, then 429. */
  readonly addressFailures: number;
  readonly addressWindowMs: number;
}

/** Defaults: sessions idle out after 8 h and end after 24 h; 5 wrong passwords lock a user for 15 min; 20 failures per address per 15 min. */
export const DEFAULT_AUTH_SETTINGS: AuthSettings = Object.freeze({
  session: Object.freeze({ idleMs: 8 * 3_600_000, absoluteMs: 24 * 3_600_000 }),
  lockout: Object.freeze({ maxFailures: 5, lockMs: 15 * 60_000 }),
  addressFailures: 20,
  addressWindowMs: 15 * 60_000,
});

/** The security headers of every console answer. The page runs no inline script or style. */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'strict-transport-security': 'max-age=31536000',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
  'permissions-policy': 'camera=(), microphone=(), geolocation=()',
});

/** What the auth layer needs. */
export interface AuthDeps {
  readonly storage: Pick<Storage, 'users' | 'sessions' | 'apiTokens' | 'groups'>;
  readonly settings: AuthSettings;
  readonly now: () => number;
  readonly log: Logger;
}

const LoginBody = Type.Object(
  { username: Type.String({ minLength: 1, maxLength: 64 }), password: Type.String({ minLength: 1, maxLength: 1024 }) },
  { additionalProperties: false },
);

const UNSAFE = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

function cookieValue(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const i = part.indexOf('=');
    if (i > 0 && part.slice(0, i).trim() === name) return part.slice(i + 1).trim();
  }
  return undefined;
}

function sameToken(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && crypto.timingSafeEqual(x, y);
}

/** True when a browser's Origin header (if any) names this server, as reached. */
function originMatches(req: FastifyRequest): boolean {
  const origin = req.headers.origin;
  if (origin === undefined) return true;
  return origin === `https://${req.headers.host ?? ''}`;
}

/** Resolves the scope of the request's principal against the current groups. */
export async function scopeOf(req: FastifyRequest, storage: Pick<Storage, 'groups'>): Promise<Scope> {
  if (!req.principal) throw httpError('UNAUTHORIZED', 'log in or send an API token');
  return scopeFor(req.principal, await storage.groups.list());
}

/** Installs the security headers, the access check of every `/api/` route and the session routes. */
export function installAuth(app: HttpsApp, deps: AuthDeps): void {
  const { storage, settings, log } = deps;
  const addressLimiter = new FailureLimiter(settings.addressFailures, settings.addressWindowMs);
  app.decorateRequest('principal', null);

  app.addHook('onSend', async (_req, reply, payload) => {
    for (const [k, v] of Object.entries(SECURITY_HEADERS)) void reply.header(k, v);
    return payload;
  });

  const fromToken = async (secret: string): Promise<Principal | undefined> => {
    const t = await storage.apiTokens.verify(secret);
    if (!t) return undefined;
    return { kind: 'token', id: t.id, name: t.name, role: t.homeGroupId ? 'customer_admin' : 'admin', homeGroupId: t.homeGroupId, csrfToken: null };
  };
  const fromSession = async (sid: string): Promise<Principal | undefined> => {
    const s = await storage.sessions.touch(sid, deps.now(), settings.session);
    if (!s) return undefined;
    const u = await storage.users.get(s.userId);
    if (!u || u.disabledAt !== null) return undefined;
    return { kind: 'session', id: u.id, name: u.username, role: u.role, homeGroupId: u.role === 'admin' ? null : u.homeGroupId, csrfToken: s.csrfToken };
  };

  app.addHook('onRequest', async (req) => {
    if (!req.url.startsWith('/api/')) return;
    const access = req.routeOptions.config?.access ?? 'admin';
    if (access === 'public') {
      if (UNSAFE.has(req.method) && !originMatches(req)) throw httpError('CSRF_INVALID', 'cross-origin request refused');
      return;
    }
    const bearer = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '');
    const sid = bearer ? undefined : cookieValue(req.headers.cookie, SESSION_COOKIE);
    const principal = bearer ? await fromToken(bearer[1]!) : sid ? await fromSession(sid) : undefined;
    if (!principal) {
      log.warn({ reason: 'UNAUTHORIZED', address: req.socket.remoteAddress, url: req.url.split('?')[0], via: bearer ? 'token' : sid ? 'session' : 'none' }, 'API request refused');
      throw httpError('UNAUTHORIZED', bearer ? 'a valid API token is required (Authorization: Bearer …)' : 'log in first (or send Authorization: Bearer <API token>)');
    }
    if (principal.csrfToken !== null && UNSAFE.has(req.method)) {
      const sent = req.headers[CSRF_HEADER];
      if (!originMatches(req) || typeof sent !== 'string' || !sameToken(sent, principal.csrfToken)) {
        log.warn({ reason: 'CSRF_INVALID', user: principal.name, url: req.url.split('?')[0] }, 'API request refused');
        throw httpError('CSRF_INVALID', `a state-changing request from a session needs the ${CSRF_HEADER} header of that session, from this origin`);
      }
    }
    if (access === 'admin' && principal.role !== 'admin') {
      log.warn({ reason: 'FORBIDDEN', user: principal.name, url: req.url.split('?')[0] }, 'API request refused');
      throw httpError('FORBIDDEN', 'this needs an admin; a customer-scoped user or token cannot do it');
    }
    req.principal = principal;
  });

  registerSessionRoutes(app, deps, addressLimiter);
}

function setCookie(reply: FastifyReply, value: string, maxAgeSec: number): void {
  void reply.header('set-cookie', `${SESSION_COOKIE}=${value}; Path=/; Max-Age=${maxAgeSec}; Secure; HttpOnly; SameSite=Strict`);
}

function registerSessionRoutes(app: HttpsApp, deps: AuthDeps, addressLimiter: FailureLimiter): void {
  const { storage, settings, log } = deps;
  const sessionView = async (p: Principal) => {
    const home = p.homeGroupId ? await storage.groups.get(p.homeGroupId) : undefined;
    return { user: { id: p.id, username: p.name, role: p.role, homeGroupId: p.homeGroupId, homeGroupPath: home?.path ?? null }, csrfToken: p.csrfToken };
  };

  app.post<{ Body: Static<typeof LoginBody> }>('/api/v1/session', { schema: { body: LoginBody }, config: { access: 'public' } }, async (req, reply) => {
    const address = req.socket.remoteAddress ?? 'unknown';
    const now = deps.now();
    const blockedMs = addressLimiter.blockedFor(address, now);
    if (blockedMs > 0) {
      log.warn({ reason: 'RATE_LIMITED', address }, 'login refused');
      void reply.header('retry-after', String(Math.ceil(blockedMs / 1000)));
      throw httpError('RATE_LIMITED', 'too many failed logins from this address; retry later');
    }
    const check = await storage.users.checkLogin(req.body.username, req.body.password, now, settings.lockout);
    if (!check.ok) {
      addressLimiter.fail(address, now);
      log.warn({ reason: check.reason, user: req.body.username.slice(0, 64), address }, 'login refused');
      if (check.reason === 'locked') {
        void reply.header('retry-after', String(Math.max(1, Math.ceil((check.lockedUntil - now) / 1000))));
        throw httpError('LOGIN_LOCKED', 'this user is locked after too many wrong passwords; retry later');
      }
      throw httpError('LOGIN_FAILED', 'wrong user name or password');
    }
    const { id, session } = await storage.sessions.create(check.user.id, address, now, settings.session);
    setCookie(reply, id, Math.floor(settings.session.absoluteMs / 1000));
    log.info({ user: check.user.username, role: check.user.role, address }, 'console login');
    const u = check.user;
    return sessionView({ kind: 'session', id: u.id, name: u.username, role: u.role, homeGroupId: u.role === 'admin' ? null : u.homeGroupId, csrfToken: session.csrfToken });
  });

  app.get('/api/v1/session', { config: { access: 'scoped' } }, async (req) => sessionView(req.principal!));

  app.delete('/api/v1/session', { config: { access: 'scoped' } }, async (req, reply) => {
    const sid = cookieValue(req.headers.cookie, SESSION_COOKIE);
    if (req.principal!.kind === 'session' && sid) await storage.sessions.delete(sid);
    setCookie(reply, '', 0);
    log.info({ user: req.principal!.name }, 'console logout');
    return reply.code(204).send();
  });
}
