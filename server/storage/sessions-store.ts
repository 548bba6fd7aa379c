/**
 * Console login sessions. The session id is a random secret held only in
 * the browser's cookie; the database keeps its SHA-256, so a copy of the
 * database opens no sessions. Each session carries its CSRF token
 * (synchronizer pattern), an idle expiry that moves on use, and a hard end.
 */
import crypto from 'node:crypto';
import type { Sql } from './db.js';
import { hashToken } from './tokens-store.js';

/** A live session as stored. */
export interface ConsoleSession {
  readonly userId: string;
  readonly csrfToken: string;
  readonly createdAt: number;
  readonly lastSeenAt: number;
  readonly expiresAt: number;
}

/** Lifetimes of sessions. */
export interface SessionLifetimes {
  /** A session unused this long ends. */
  readonly idleMs: number;
  /** A session ends this long after login, used or not. */
  readonly absoluteMs: number;
}

type Row = { user_id: string; csrf_token: string; created_at: number; last_seen_at: number; expires_at: number };

/** Storage of console sessions. */
export class SessionsStore {
  constructor(private readonly sql: Sql) {}

  /** Opens a session for a user; returns the secret session id (for the cookie) and the session. */
  async create(userId: string, address: string | null, now: number, life: SessionLifetimes): Promise<{ id: string; session: ConsoleSession }> {
    const id = crypto.randomBytes(32).toString('base64url');
    const session: ConsoleSession = {
      userId,
      csrfToken: crypto.randomBytes(24).toString('base64url'),
      createdAt: now,
      lastSeenAt: now,
      expiresAt: Math.min(now + life.idleMs, now + life.absoluteMs),
    };
    await this.sql.run('DELETE FROM console_sessions WHERE expires_at <= ?', [now]);
    await this.sql.run(
      'INSERT INTO console_sessions (id_hash, user_id, csrf_token, address, created_at, last_seen_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)',
      [hashToken(id), userId, session.csrfToken, address, now, now, session.expiresAt],
    );
    return { id, session };
  }

  /**
   * The live session with this secret id, its idle expiry moved forward
   * (never past the absolute end); undefined when unknown or expired.
   */
  async touch(id: string, now: number, life: SessionLifetimes): Promise<ConsoleSession | undefined> {
    const hash = hashToken(id);
    const row = await this.sql.get<Row>('SELECT user_id, csrf_token, created_at, last_seen_at, expires_at FROM console_sessions WHERE id_hash = ?', [hash]);
    if (!row) return undefined;
    if (row.expires_at <= now) {
      await this.sql.run('DELETE FROM console_sessions WHERE id_hash = ?', [hash]);
      return undefined;
    }
    const expiresAt = Math.min(now + life.idleMs, row.created_at + life.absoluteMs);
    // Written at most once a minute per session: reads stay reads.
    if (now - row.last_seen_at >= 60_000) {
      await this.sql.run('UPDATE console_sessions SET last_seen_at = ?, expires_at = ? WHERE id_hash = ?', [now, expiresAt, hash]);
    }
    return { userId: row.user_id, csrfToken: row.csrf_token, createdAt: row.created_at, lastSeenAt: now, expiresAt };
  }

  /** Ends one session. */
  async delete(id: string): Promise<void> {
    await this.sql.run('DELETE FROM console_sessions WHERE id_hash = ?', [hashToken(id)]);
  }

  /** Ends every session of a user (password change, lockout, disable). */
  async deleteForUser(userId: string): Promise<number> {
    return (await this.sql.run('DELETE FROM console_sessions WHERE user_id = ?', [userId])).changes;
  }
}
