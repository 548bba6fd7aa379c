/**
 * Enrollment tokens and console API tokens. Both are random secrets shown
 * once; only their SHA-256 is stored (they carry 256 bits of entropy, so a
 * slow hash adds nothing).
 */
import crypto from 'node:crypto';
import type { Sql } from './db.js';

/** Prefixes make a leaked secret recognisable by secret scanners. */
export const ENROLL_TOKEN_PREFIX = 'rce_';
export const API_TOKEN_PREFIX = 'rca_';

/** Hashes a secret token for storage and lookup. */
export function hashToken(token: string): string {
  return crypto.createHash('sha256').update(token, 'utf8').digest('hex');
}

/** Makes a new random token with the given prefix. */
export function newSecret(prefix: string): string {
  return `${prefix}${crypto.randomBytes(32).toString('base64url')}`;
}

/** An enrollment token as stored (never the secret itself). */
export interface EnrollmentToken {
  readonly id: string;
  readonly groupId: string | null;
  readonly createdAt: number;
  readonly expiresAt: number | null;
  readonly maxUses: number | null;
  readonly uses: number;
  readonly revokedAt: number | null;
  readonly note: string | null;
}

interface TokenRow {
  id: string;
  group_id: string | null;
  created_at: number;
  expires_at: number | null;
  max_uses: number | null;
  uses: number;
  revoked_at: number | null;
  note: string | null;
}

const toToken = (r: TokenRow): EnrollmentToken => ({
  id: r.id,
  groupId: r.group_id,
  createdAt: r.created_at,
  expiresAt: r.expires_at,
  maxUses: r.max_uses,
  uses: r.uses,
  revokedAt: r.revoked_at,
  note: r.note,
});

/** Storage of enrollment tokens. */
export class EnrollmentTokensStore {
  constructor(private readonly sql: Sql) {}

  /** Stores a new token and returns its record and its secret (shown once). */
  async create(opts: { groupId: string; expiresAt: number | null; maxUses: number | null; note?: string; now: number }): Promise<{
    token: EnrollmentToken;
    secret: string;
  }> {
    const secret = newSecret(ENROLL_TOKEN_PREFIX);
    const id = `tok_${crypto.randomBytes(6).toString('hex')}`;
    await this.sql.run(
      'INSERT INTO enrollment_tokens (id, hash, group_id, created_at, expires_at, max_uses, note) VALUES (?, ?, ?, ?, ?, ?, ?)',
      [id, hashToken(secret), opts.groupId, opts.now, opts.expiresAt, opts.maxUses, opts.note ?? null],
    );
    return { token: (await this.get(id))!, secret };
  }

  /** One token by id. */
  async get(id: string, sql: Sql = this.sql): Promise<EnrollmentToken | undefined> {
    const row = await sql.get<TokenRow>('SELECT * FROM enrollment_tokens WHERE id = ?', [id]);
    return row && toToken(row);
  }

  /** The token whose secret is `secret`, if any. */
  async findBySecret(secret: string, sql: Sql = this.sql): Promise<EnrollmentToken | undefined> {
    const row = await sql.get<TokenRow>('SELECT * FROM enrollment_tokens WHERE hash = ?', [hashToken(secret)]);
    return row && toToken(row);
  }

  /** Every token, newest first. */
  async list(): Promise<EnrollmentToken[]> {
    return (await this.sql.all<TokenRow>('SELECT * FROM enrollment_tokens ORDER BY created_at DESC')).map(toToken);
  }

  /**
   * Counts one use if the token is still usable at `now`; returns false
   * (and changes nothing) when it is expired, used up or revoked. Atomic.
   */
  async consume(id: string, now: number, sql: Sql = this.sql): Promise<boolean> {
    const r = await sql.run(
      `UPDATE enrollment_tokens SET uses = uses + 1 WHERE id = ? AND revoked_at IS NULL
         AND (expires_at IS NULL OR expires_at > ?) AND (max_uses IS NULL OR uses < max_uses)`,
      [id, now],
    );
    return r.changes === 1;
  }

  /** Revokes a token; returns false when unknown or already revoked. */
  async revoke(id: string, now: number): Promise<boolean> {
    const r = await this.sql.run('UPDATE enrollment_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL', [now, id]);
    return r.changes === 1;
  }
}

/** A console API token as stored. */
export interface ApiToken {
  readonly id: string;
  readonly name: string;
  readonly createdAt: number;
  readonly lastUsedAt: number | null;
  readonly revokedAt: number | null;
  /** Null: an admin token; else the token sees only this group's subtree, like a customer-scoped user. */
  readonly homeGroupId: string | null;
}

type ApiTokenRow = { id: string; name: string; created_at: number; last_used_at: number | null; revoked_at: number | null; home_group_id: string | null };
const toApiToken = (r: ApiTokenRow): ApiToken => ({
  id: r.id,
  name: r.name,
  createdAt: r.created_at,
  lastUsedAt: r.last_used_at,
  revokedAt: r.revoked_at,
  homeGroupId: r.home_group_id,
});

/** Storage of console API tokens. */
export class ApiTokensStore {
  constructor(private readonly sql: Sql) {}

  /** Stores a new API token (scoped to a home group, or an admin token); the secret is returned once. */
  async create(name: string, now: number, homeGroupId: string | null = null): Promise<{ token: ApiToken; secret: string }> {
    const secret = newSecret(API_TOKEN_PREFIX);
    const id = `api_${crypto.randomBytes(6).toString('hex')}`;
    await this.sql.run('INSERT INTO api_tokens (id, hash, name, created_at, home_group_id) VALUES (?, ?, ?, ?, ?)', [id, hashToken(secret), name, now, homeGroupId]);
    return { token: { id, name, createdAt: now, lastUsedAt: null, revokedAt: null, homeGroupId }, secret };
  }

  /** The live (non-revoked) token with this secret, if any. */
  async verify(secret: string): Promise<ApiToken | undefined> {
    const row = await this.sql.get<ApiTokenRow>('SELECT * FROM api_tokens WHERE hash = ? AND revoked_at IS NULL', [hashToken(secret)]);
    return row && toApiToken(row);
  }

  /** Every API token, newest first (never the secrets). */
  async list(): Promise<ApiToken[]> {
    return (await this.sql.all<ApiTokenRow>('SELECT * FROM api_tokens ORDER BY created_at DESC, id')).map(toApiToken);
  }

  /** One token by id. */
  async get(id: string): Promise<ApiToken | undefined> {
    const row = await this.sql.get<ApiTokenRow>('SELECT * FROM api_tokens WHERE id = ?', [id]);
    return row && toApiToken(row);
  }

  /** Revokes a token; returns false when unknown or already revoked. */
  async revoke(id: string, now: number): Promise<boolean> {
    return (await this.sql.run('UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL', [now, id])).changes === 1;
  }

  /** Number of API tokens ever made (0 on a fresh install). */
  async count(): Promise<number> {
    return (await this.sql.get<{ n: number }>('SELECT count(*) AS n FROM api_tokens'))?.n ?? 0;
  }
}
