/**
 * Console users. Passwords are hashed with scrypt (N=16384, r=8, p=1,
 * 16-byte salt, 32-byte key) and stored as
 * `scrypt$N$r$p$<salt b64>$<key b64>`; verification is constant-time.
 * A customer-scoped admin has a home group and sees only its subtree.
 */
import crypto from 'node:crypto';
import { RollcallError } from '../../common/errors.js';
import type { Sql } from './db.js';

/** Roles of console users. */
export type UserRole = 'admin' | 'customer_admin';

/** A user as stored (never the hash). */
export interface User {
  readonly id: string;
  readonly username: string;
  readonly role: UserRole;
  readonly homeGroupId: string | null;
  readonly createdAt: number;
  readonly disabledAt: number | null;
}

const SCRYPT = { N: 16384, r: 8, p: 1, keyLen: 32 } as const;

function scrypt(password: string, salt: Buffer, n: number, r: number, p: number, keyLen: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    crypto.scrypt(password, salt, keyLen, { N: n, r, p, maxmem: 64 * 1024 * 1024 }, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

/** Hashes a password for storage. */
export async function hashPassword(password: string): Promise<string> {
  const salt = crypto.randomBytes(16);
  const key = await scrypt(password, salt, SCRYPT.N, SCRYPT.r, SCRYPT.p, SCRYPT.keyLen);
  return `scrypt$${SCRYPT.N}$${SCRYPT.r}$${SCRYPT.p}$${salt.toString('base64')}$${key.toString('base64')}`;
}

/** Checks a password against a stored hash. */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const parts = stored.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return false;
  const [n, r, p] = [Number(parts[1]), Number(parts[2]), Number(parts[3])];
  const salt = Buffer.from(parts[4]!, 'base64');
  const expected = Buffer.from(parts[5]!, 'base64');
  const key = await scrypt(password, salt, n, r, p, expected.length);
  return crypto.timingSafeEqual(key, expected);
}

/** Makes a random password that is easy to copy (24 base64url characters, 144 bits). */
export function randomPassword(): string {
  return crypto.randomBytes(18).toString('base64url');
}

type Row = {
  id: string;
  username: string;
  role: UserRole;
  home_group_id: string | null;
  created_at: number;
  disabled_at: number | null;
  password_hash: string;
  failed_logins: number;
  locked_until: number | null;
};

/** The outcome of a login attempt against the user table. */
export type LoginCheck =
  | { readonly ok: true; readonly user: User }
  | { readonly ok: false; readonly reason: 'unknown' | 'disabled' | 'bad_password' }
  | { readonly ok: false; readonly reason: 'locked'; readonly lockedUntil: number };

/** Lockout policy: this many failed passwords in a row lock the user for `lockMs`. */
export interface LockoutPolicy {
  readonly maxFailures: number;
  readonly lockMs: number;
}

/** A password that is never anyone's: unknown users cost one scrypt too, so timing does not tell them apart. */
const DUMMY_HASH = 'scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=';
const toUser = (r: Row): User => ({ id: r.id, username: r.username, role: r.role, homeGroupId: r.home_group_id, createdAt: r.created_at, disabledAt: r.disabled_at });

/** Storage of console users. */
export class UsersStore {
  constructor(private readonly sql: Sql) {}

  /** Creates a user; fails with USER_EXISTS when the name is taken. */
  async create(u: { username: string; password: string; role: UserRole; homeGroupId: string | null; now: number }, sql: Sql = this.sql): Promise<User> {
    if (!/^[a-z0-9][a-z0-9._-]{1,63}$/.test(u.username)) {
      throw new RollcallError('USER_NAME_INVALID', 'a user name is 2-64 lower-case letters, digits, ".", "_" or "-"');
    }
    const id = `usr_${crypto.randomBytes(6).toString('hex')}`;
    const hash = await hashPassword(u.password);
    try {
      await sql.run('INSERT INTO users (id, username, password_hash, role, home_group_id, created_at) VALUES (?, ?, ?, ?, ?, ?)', [
        id,
        u.username,
        hash,
        u.role,
        u.homeGroupId,
        u.now,
      ]);
    } catch (err) {
      if (/UNIQUE/.test(String(err))) throw new RollcallError('USER_EXISTS', `a user "${u.username}" already exists`, { cause: err });
      throw err;
    }
    return { id, username: u.username, role: u.role, homeGroupId: u.homeGroupId, createdAt: u.now, disabledAt: null };
  }

  /** Every user. */
  async list(): Promise<User[]> {
    return (await this.sql.all<Row>('SELECT * FROM users ORDER BY username')).map(toUser);
  }

  /** Checks a user name and password; returns the user when both match and it is not disabled. */
  async authenticate(username: string, password: string): Promise<User | undefined> {
    const row = await this.sql.get<Row>('SELECT * FROM users WHERE username = ?', [username]);
    if (!row || row.disabled_at !== null) return undefined;
    return (await verifyPassword(password, row.password_hash)) ? toUser(row) : undefined;
  }

  /** One user by id. */
  async get(id: string): Promise<User | undefined> {
    const row = await this.sql.get<Row>('SELECT * FROM users WHERE id = ?', [id]);
    return row && toUser(row);
  }

  /** True when some enabled admin (not customer-scoped) exists. */
  async hasAdmin(): Promise<boolean> {
    return !!(await this.sql.get("SELECT 1 FROM users WHERE role = 'admin' AND disabled_at IS NULL"));
  }

  /**
   * Checks a login and keeps the lockout count: a wrong password counts one
   * failure, `maxFailures` in a row lock the user for `lockMs` (a locked
   * user is refused even with the right password), a success clears it.
   */
  async checkLogin(username: string, password: string, now: number, policy: LockoutPolicy): Promise<LoginCheck> {
    const row = await this.sql.get<Row>('SELECT * FROM users WHERE username = ?', [username]);
    if (!row) {
      await verifyPassword(password, DUMMY_HASH);
      return { ok: false, reason: 'unknown' };
    }
    if (row.locked_until !== null && row.locked_until > now) return { ok: false, reason: 'locked', lockedUntil: row.locked_until };
    const good = await verifyPassword(password, row.password_hash);
    if (row.disabled_at !== null) return { ok: false, reason: 'disabled' };
    if (good) {
      if (row.failed_logins !== 0 || row.locked_until !== null) await this.sql.run('UPDATE users SET failed_logins = 0, locked_until = NULL WHERE id = ?', [row.id]);
      return { ok: true, user: toUser(row) };
    }
    const failures = (row.locked_until !== null ? 0 : row.failed_logins) + 1;
    const lockedUntil = failures >= policy.maxFailures ? now + policy.lockMs : null;
    await this.sql.run('UPDATE users SET failed_logins = ?, locked_until = ? WHERE id = ?', [lockedUntil === null ? failures : 0, lockedUntil, row.id]);
    return lockedUntil === null ? { ok: false, reason: 'bad_password' } : { ok: false, reason: 'locked', lockedUntil };
  }

  /** Replaces a user's password (and clears its lockout); false when the user is unknown. */
  async setPassword(id: string, password: string): Promise<boolean> {
    const hash = await hashPassword(password);
    return (await this.sql.run('UPDATE users SET password_hash = ?, failed_logins = 0, locked_until = NULL WHERE id = ?', [hash, id])).changes === 1;
  }

  /** Disables a user (it can no longer log in) or enables it again; false when unknown. */
  async setDisabled(id: string, disabledAt: number | null): Promise<boolean> {
    return (await this.sql.run('UPDATE users SET disabled_at = ? WHERE id = ?', [disabledAt, id])).changes === 1;
  }

  /** Checks a user's current password by id (for a password change). */
  async checkPassword(id: string, password: string): Promise<boolean> {
    const row = await this.sql.get<Row>('SELECT * FROM users WHERE id = ?', [id]);
    return !!row && (await verifyPassword(password, row.password_hash));
  }

  /** True when a user name is free. */
  async isFree(username: string, sql: Sql = this.sql): Promise<boolean> {
    return !(await sql.get('SELECT 1 FROM users WHERE username = ?', [username]));
  }
}
