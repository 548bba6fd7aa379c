import { afterEach, describe, expect, it } from 'vitest';
import { requestJson } from '../../common/https-json.js';
import { ConsoleClient } from '../../test/support/console-client.js';
import { Harness } from '../../test/support/harness.js';
import { DEFAULT_AUTH_SETTINGS, SESSION_COOKIE } from '../console/auth.js';

const h = new Harness();
afterEach(() => h.cleanup());

type Err = { error: { code: string; message: string } };
const PASSWORD = 'correct horse battery';

async function withUser(opts: Parameters<Harness['startServer']>[1] = {}) {
  const s = await h.startServer({}, opts);
  await s.server.storage.users.create({ username: 'alice', password: PASSWORD, role: 'admin', homeGroupId: null, now: Date.now() });
  return s;
}

describe('console login', () => {
  it('logs in with a scrypt password, sets a Secure HttpOnly SameSite=Strict cookie, and stores only the session hash', async () => {
    const s = await withUser();
    const c = new ConsoleClient(s);
    const res = await c.login('alice', PASSWORD);
    expect(res.status).toBe(200);
    expect(res.body.user).toMatchObject({ username: 'alice', role: 'admin' });
    const cookie = String(res.headers['set-cookie']);
    expect(cookie).toMatch(new RegExp(`^${SESSION_COOKIE}=[A-Za-z0-9_-]{43}; Path=/; Max-Age=86400; Secure; HttpOnly; SameSite=Strict$`));
    const sid = c.cookie!.split('=')[1]!;
    const rows = JSON.stringify(await s.server.storage.db.all('SELECT * FROM console_sessions'));
    expect(rows).not.toContain(sid);
    expect(JSON.stringify(await s.server.storage.db.all('SELECT password_hash FROM users'))).toMatch(/scrypt\$16384\$8\$1\$/);
    const me = await c.call<{ user: { username: string }; csrfToken: string }>('GET', '/api/v1/session');
    expect(me.body).toMatchObject({ user: { username: 'alice' }, csrfToken: c.csrf });
    expect((await c.call('GET', '/api/v1/devices')).status).toBe(200);
    expect(JSON.stringify(s.logs)).not.toContain(PASSWORD);
    expect(JSON.stringify(s.logs)).not.toContain(sid);
  });

  it('ends the session at logout, and refuses a made-up session cookie', async () => {
    const s = await withUser();
    const c = new ConsoleClient(s);
    await c.login('alice', PASSWORD);
    expect((await c.call('DELETE', '/api/v1/session')).status).toBe(204);
    expect((await c.call<Err>('GET', '/api/v1/devices')).body.error.code).toBe('UNAUTHORIZED');
    c.cookie = `${SESSION_COOKIE}=${'x'.repeat(43)}`;
    expect((await c.call<Err>('GET', '/api/v1/session')).status).toBe(401);
  });

  it('ends a session after its idle time and after its absolute lifetime', async () => {
    let t = Date.now();
    const s = await withUser({ now: () => t });
    const c = new ConsoleClient(s);
    await c.login('alice', PASSWORD);
    t += DEFAULT_AUTH_SETTINGS.session.idleMs - 60_000;
    expect((await c.call('GET', '/api/v1/session')).status).toBe(200);
    t += DEFAULT_AUTH_SETTINGS.session.idleMs - 60_000; // used in between: still alive
    expect((await c.call('GET', '/api/v1/session')).status).toBe(200);
    t += DEFAULT_AUTH_SETTINGS.session.idleMs + 1;
    expect((await c.call('GET', '/api/v1/session')).status).toBe(401);
    await c.login('alice', PASSWORD);
    for (let i = 0; i < 4; i += 1) {
      t += 7 * 3_600_000;
      const status = (await c.call('GET', '/api/v1/session')).status;
      expect(status).toBe(i < 3 ? 200 : 401); // 28 h > 24 h absolute, though never idle 8 h
    }
  });

  it('answers a wrong password and an unknown user alike, and locks a user after 5 wrong passwords in a row', async () => {
    const s = await withUser();
    const c = new ConsoleClient(s);
    const unknown = await c.login('nobody', PASSWORD);
    expect(unknown).toMatchObject({ status: 401, body: { error: { code: 'LOGIN_FAILED' } } });
    for (let i = 0; i < 4; i += 1) expect((await c.login('alice', `wrong ${i}`)).body.error?.code).toBe('LOGIN_FAILED');
    expect((await c.login('alice', PASSWORD)).status).toBe(200); // success clears the count
    for (let i = 0; i < 4; i += 1) await c.login('alice', `wrong ${i}`);
    const fifth = await c.login('alice', 'wrong 5');
    expect(fifth.status).toBe(429);
    expect(fifth.body.error?.code).toBe('LOGIN_LOCKED');
    expect(Number(fifth.headers['retry-after'])).toBeGreaterThan(800);
    expect((await c.login('alice', PASSWORD)).body.error?.code).toBe('LOGIN_LOCKED');
    expect(s.logs.filter((l) => l.msg === 'login refused' && l.reason === 'locked')).toHaveLength(2);
    expect(JSON.stringify(s.logs)).not.toContain('wrong 5');
  });

  it('limits failed logins per address: after 20 in the window even a right password waits', async () => {
    const s = await withUser();
    const c = new ConsoleClient(s);
    for (let i = 0; i < 20; i += 1) expect((await c.login(`user${i}`, 'nope-nope')).status).toBe(401);
    const limited = await c.login('alice', PASSWORD);
    expect(limited.status).toBe(429);
    expect(limited.body.error?.code).toBe('RATE_LIMITED');
    expect(Number(limited.headers['retry-after'])).toBeGreaterThan(0);
    // Automation with an API token is not affected.
    expect((await s.api('GET', '/api/v1/devices')).status).toBe(200);
  });

  it('refuses bad login bodies with BAD_REQUEST and keeps serving', async () => {
    const s = await withUser();
    const c = new ConsoleClient(s);
    for (const body of [{}, { username: 'alice' }, { username: 'alice', password: PASSWORD, extra: 1 }, { username: 5, password: PASSWORD }, 'text']) {
      const res = await c.call<Err>('POST', '/api/v1/session', body);
      expect(res.status).toBe(400);
      expect(res.body.error.code).toBe('BAD_REQUEST');
    }
    expect((await c.login('alice', PASSWORD)).status).toBe(200);
  });
});

describe('CSRF and headers', () => {
  it('needs the session CSRF token on every state change from a session, but not from an API token', async () => {
    const s = await withUser();
    const c = new ConsoleClient(s);
    await c.login('alice', PASSWORD);
    for (const csrf of [null, 'forged', `${c.csrf}x`]) {
      const res = await c.call<Err>('POST', '/api/v1/groups', { path: 'Acme' }, { csrf });
      expect(res.status).toBe(403);
      expect(res.body.error.code).toBe('CSRF_INVALID');
      expect((await c.call<Err>('DELETE', '/api/v1/session', undefined, { csrf })).status).toBe(403);
    }
    expect((await c.call('GET', '/api/v1/groups')).status).toBe(200);
    const foreign = await c.call<Err>('POST', '/api/v1/groups', { path: 'Acme' }, { origin: 'https://evil.example' });
    expect(foreign.body.error.code).toBe('CSRF_INVALID');
    expect((await c.call('POST', '/api/v1/groups', { path: 'Acme' }, { origin: `https://127.0.0.1:${s.server.consolePort}` })).status).toBe(201);
    expect((await s.api('POST', '/api/v1/groups', { path: 'Beta' })).status).toBe(201);
    const crossLogin = await c.call<Err>('POST', '/api/v1/session', { username: 'alice', password: PASSWORD }, { origin: 'https://evil.example' });
    expect(crossLogin.body.error.code).toBe('CSRF_INVALID');
  });

  it('sends the security headers on the page and on API answers, with a CSP that allows no inline script', async () => {
    const s = await withUser();
    for (const path of ['/', '/api/v1/devices', '/.well-known/rollcall']) {
      const res = await requestJson({ host: '127.0.0.1', port: s.server.consolePort, path, ca: s.server.pki.ca.certPem });
      const csp = String(res.headers['content-security-policy']);
      expect(csp).toContain("script-src 'self'");
      expect(csp).toContain("frame-ancestors 'none'");
      expect(csp).not.toContain('unsafe-inline');
      expect(res.headers).toMatchObject({ 'x-frame-options': 'DENY', 'x-content-type-options': 'nosniff', 'referrer-policy': 'no-referrer' });
      expect(String(res.headers['strict-transport-security'])).toMatch(/^max-age=\d+/);
    }
  });
});

describe('first admin', () => {
  it('is made once, with the password from the environment or a generated one', async () => {
    const s = await h.startServer({ adminPassword: 'from-the-environment' });
    const made = await s.server.createInitialAdminUser();
    expect(made).toEqual({ username: 'admin', password: null });
    expect(await s.server.createInitialAdminUser()).toBeUndefined();
    expect((await new ConsoleClient(s).login('admin', 'from-the-environment')).status).toBe(200);
    expect(JSON.stringify(s.logs)).not.toContain('from-the-environment');
    const t = await h.startServer();
    const generated = await t.server.createInitialAdminUser();
    expect(generated?.password).toMatch(/^[A-Za-z0-9_-]{24}$/);
    expect((await new ConsoleClient(t).login('admin', generated!.password!)).status).toBe(200);
  });

  it('refuses a first admin password shorter than 12 characters in the configuration', async () => {
    await expect(h.startServer({ adminPassword: 'short' })).rejects.toThrow(/ROLLCALL_ADMIN_PASSWORD/);
  });
});

describe('users', () => {
  it('changes a password: the old one stops working, every other session ends, this browser keeps a new one', async () => {
    const s = await withUser();
    const a = new ConsoleClient(s);
    const b = new ConsoleClient(s);
    await a.login('alice', PASSWORD);
    await b.login('alice', PASSWORD);
    const wrong = await a.call<Err>('POST', '/api/v1/session/password', { current: 'not it', password: 'a brand new password' });
    expect(wrong.body.error.code).toBe('LOGIN_FAILED');
    expect((await a.call<Err>('POST', '/api/v1/session/password', { current: PASSWORD, password: 'short' })).body.error.code).toBe('BAD_REQUEST');
    const changed = await a.call<{ csrfToken: string }>('POST', '/api/v1/session/password', { current: PASSWORD, password: 'a brand new password' });
    expect(changed.status).toBe(200);
    a.cookie = String(changed.headers['set-cookie']).split(';')[0]!;
    a.csrf = changed.body.csrfToken;
    expect((await a.call('GET', '/api/v1/session')).status).toBe(200);
    expect((await b.call('GET', '/api/v1/session')).status).toBe(401);
    expect((await new ConsoleClient(s).login('alice', PASSWORD)).status).toBe(401);
    expect((await new ConsoleClient(s).login('alice', 'a brand new password')).status).toBe(200);
  });

  it('lets admins make users (a generated password shown once) and disable them, which ends their sessions', async () => {
    const s = await withUser();
    await s.api('POST', '/api/v1/groups', { path: 'Acme' });
    const made = await s.api<{ id: string; password: string; homeGroupPath: string }>('POST', '/api/v1/users', { username: 'acme-ops', role: 'customer_admin', group: 'Acme' });
    expect(made.status).toBe(201);
    expect(made.body).toMatchObject({ homeGroupPath: 'All/Acme' });
    expect(made.body.password).toMatch(/^[A-Za-z0-9_-]{24}$/);
    const ops = new ConsoleClient(s);
    expect((await ops.login('acme-ops', made.body.password)).status).toBe(200);
    expect((await ops.call<Err>('GET', '/api/v1/users')).body.error.code).toBe('FORBIDDEN');
    const cases: [unknown, number, string][] = [
      [{ username: 'acme-ops', role: 'admin' }, 409, 'USER_EXISTS'],
      [{ username: 'Bad Name', role: 'admin' }, 400, 'USER_NAME_INVALID'],
      [{ username: 'x-ops', role: 'customer_admin' }, 400, 'BAD_REQUEST'],
      [{ username: 'y-ops', role: 'admin', group: 'Acme' }, 400, 'BAD_REQUEST'],
      [{ username: 'z-ops', role: 'customer_admin', group: 'Nowhere' }, 404, 'GROUP_NOT_FOUND'],
      [{ username: 'w-ops', role: 'root' }, 400, 'BAD_REQUEST'],
    ];
    for (const [body, status, code] of cases) {
      const res = await s.api<Err>('POST', '/api/v1/users', body);
      expect({ body, status: res.status, code: res.body.error.code }).toEqual({ body, status, code });
    }
    expect((await s.api<{ disabledAt: string }>('POST', `/api/v1/users/${made.body.id}/disable`, {})).body.disabledAt).not.toBeNull();
    expect((await ops.call('GET', '/api/v1/session')).status).toBe(401);
    expect((await new ConsoleClient(s).login('acme-ops', made.body.password)).body.error?.code).toBe('LOGIN_FAILED');
    expect((await s.api('POST', `/api/v1/users/${made.body.id}/enable`, {})).status).toBe(200);
    expect((await new ConsoleClient(s).login('acme-ops', made.body.password)).status).toBe(200);
    expect((await s.api<Err>('POST', '/api/v1/users/usr_nobody/disable', {})).body.error.code).toBe('USER_NOT_FOUND');
  });
});
