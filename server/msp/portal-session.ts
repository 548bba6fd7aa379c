/**
 * A logged-in session with the MSP portal: the token lifecycle and the
 * retry rules, shared by every concurrent call of one fetch.
 *
 * - The access token is renewed ahead of expiry (Token/Renew), once for all
 *   concurrent callers; when renewal is refused, a new session starts
 *   (Token/Get).
 * - A call answered 401 re-authenticates and is retried: first by renewing
 *   (or logging in, when renewal is refused), then, if still 401, by a fresh
 *   login; a third 401 is `SYNC_PORTAL_UNAUTHORIZED`.
 * - 503 (maintenance) is retried with exponential backoff and full jitter,
 *   then fails as `SYNC_PORTAL_MAINTENANCE` (retryable).
 *
 * Tokens and the password never appear in an error message.
 */
import type { Agent } from 'node:http';
import { backoffDelay, type BackoffPolicy } from '../../common/backoff.js';
import { RollcallError } from '../../common/errors.js';
import { callName, postJson, type PortalResponse } from './portal-http.js';
import { MAINTENANCE_STATUS, parseTokenPair, PortalCall, REFUSED_STATUSES, type TokenPair } from './portal-shapes.js';

/** Maintenance (503) retry policy. */
export interface MaintenancePolicy extends BackoffPolicy {
  /** Attempts in all, the first included. */
  readonly attempts: number;
}

/** Everything a session needs; resolved and frozen by the caller. */
export interface SessionSettings {
  readonly base: URL;
  readonly username: string;
  readonly password: string;
  readonly requestTimeoutMs: number;
  readonly maxResponseBytes: number;
  readonly tokenRenewAfterMs: number;
  readonly maintenance: MaintenancePolicy;
  readonly signal: AbortSignal;
  /** Keep-alive connections shared by the session's calls. */
  readonly agent?: Agent;
  readonly now: () => number;
  readonly sleep: (ms: number, signal: AbortSignal) => Promise<void>;
  readonly random: () => number;
}

interface Tokens extends TokenPair {
  /** `now()` when the pair was issued. */
  readonly issuedAt: number;
}

/** A portal session; create with {@link PortalSession.login}. */
export class PortalSession {
  private tokens: Tokens;
  /** The renewal or login in progress, shared by everyone who needs it. */
  private pending: Promise<void> | null = null;

  private constructor(
    private readonly s: SessionSettings,
    first: Tokens,
  ) {
    this.tokens = first;
  }

  /** Logs in with Token/Get; wrong credentials are `SYNC_PORTAL_UNAUTHORIZED`. */
  static async login(settings: SessionSettings): Promise<PortalSession> {
    return new PortalSession(settings, await newTokens(settings));
  }

  /**
   * Makes an authorized call and returns its 2xx JSON body (unparsed).
   * `what` names the subject for messages, e.g. `for company "c-1"`.
   */
  async call(call: PortalCall, body: unknown, what = ''): Promise<unknown> {
    if (this.s.now() - this.tokens.issuedAt >= this.s.tokenRenewAfterMs) await this.refresh(this.tokens, false);
    let steps = 0;
    for (;;) {
      const used = this.tokens;
      const res = await send(this.s, call, body, used.accessToken);
      if (res.status !== 401) return expectOk(call, res, what);
      if (steps >= 2) {
        const subject = what ? ` ${what}` : '';
        throw new RollcallError('SYNC_PORTAL_UNAUTHORIZED', `the MSP portal refused ${callName(call)}${subject} even after a new login; check that user "${this.s.username}" may use the API`);
      }
      // First step: renew (login when renewal is refused). Second step: a fresh login.
      await this.refresh(used, steps === 1);
      steps += 1;
    }
  }

  /** Replaces `stale` by renewing or logging in, once for all concurrent callers. */
  private async refresh(stale: Tokens, forceLogin: boolean): Promise<void> {
    while (this.pending) await this.pending;
    if (this.tokens !== stale) return; // someone else already replaced it
    this.pending = (async () => {
      this.tokens = forceLogin ? await newTokens(this.s) : await this.renewOrLogin(stale);
    })().finally(() => {
      this.pending = null;
    });
    await this.pending;
  }

  private async renewOrLogin(stale: Tokens): Promise<Tokens> {
    const res = await send(this.s, PortalCall.TOKEN_RENEW, { refreshToken: stale.refreshToken }, stale.accessToken);
    if (REFUSED_STATUSES.has(res.status)) return newTokens(this.s); // session over: start a new one
    return { ...parseTokenPair(PortalCall.TOKEN_RENEW, expectOk(PortalCall.TOKEN_RENEW, res, '')), issuedAt: this.s.now() };
  }
}

async function newTokens(s: SessionSettings): Promise<Tokens> {
  const res = await send(s, PortalCall.TOKEN_GET, { username: s.username, password: s.password }, undefined);
  if (REFUSED_STATUSES.has(res.status)) {
    throw new RollcallError('SYNC_PORTAL_UNAUTHORIZED', `the MSP portal at ${s.base.origin} refused the username "${s.username}" and its password (HTTP ${res.status}); check the credentials of the API user`);
  }
  return { ...parseTokenPair(PortalCall.TOKEN_GET, expectOk(PortalCall.TOKEN_GET, res, '')), issuedAt: s.now() };
}

/** One request, with 503 retried under the maintenance policy. */
async function send(s: SessionSettings, call: PortalCall, body: unknown, accessToken: string | undefined): Promise<PortalResponse> {
  for (let attempt = 1; ; attempt += 1) {
    const res = await postJson({
      base: s.base,
      call,
      body,
      timeoutMs: s.requestTimeoutMs,
      maxResponseBytes: s.maxResponseBytes,
      signal: s.signal,
      ...(s.agent === undefined ? {} : { agent: s.agent }),
      ...(accessToken === undefined ? {} : { accessToken }),
    });
    if (res.status !== MAINTENANCE_STATUS) return res;
    if (attempt >= s.maintenance.attempts) {
      throw new RollcallError('SYNC_PORTAL_MAINTENANCE', `the MSP portal is in maintenance (HTTP 503 to ${callName(call)} ${attempt} times); try again later`, { retryable: true });
    }
    const advised = Math.min(res.retryAfterMs ?? 0, s.maintenance.capMs);
    await s.sleep(backoffDelay(s.maintenance, attempt - 1, s.random, advised), s.signal);
  }
}

/** Returns a 2xx body, or the error for any other status (401 and 503 are handled before). */
function expectOk(call: PortalCall, res: PortalResponse, what: string): unknown {
  if (res.status >= 200 && res.status <= 299) return res.body;
  const name = callName(call);
  if (res.status >= 300 && res.status <= 399) {
    throw new RollcallError('SYNC_PORTAL_HTTP_ERROR', `the MSP portal answered ${name} with a redirect (HTTP ${res.status}); set the portal URL to the final address`);
  }
  const retryable = res.status === 429 || res.status >= 500;
  const subject = what ? ` ${what}` : '';
  throw new RollcallError('SYNC_PORTAL_HTTP_ERROR', `the MSP portal answered ${name}${subject} with HTTP ${res.status}`, { retryable });
}
